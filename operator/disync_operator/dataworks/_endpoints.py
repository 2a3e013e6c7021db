"""Endpoint resolution: which host the operator's credentials are sent to.

The region comes from a custom resource, i.e. from a tenant, so it must never be able to name an arbitrary host.
Building ``dataworks.<region>.aliyuncs.com`` from any well-formed string is not enough: ``aliyuncs.com`` also hosts
names that customers own (``oss-cn-hangzhou`` as a "region" gives ``dataworks.oss-cn-hangzhou.aliyuncs.com``, an
OSS bucket anyone can create). So a host is only ever

* taken from ``REGION_ENDPOINTS``, the official SDK's region -> host map kept as data (see ``_regions``); some
  regions there use the central ``dataworks.aliyuncs.com``, exactly as the SDK sends them;
* or built from a region id the operator's own configuration allows (``extra_regions``, for regions newer than the
  SDK pin), checked against a strict region-id pattern;
* or given verbatim by the operator's configuration (``override``: the emulator, a private endpoint).

Inside a VPC, DataWorks documents ``dataworks-vpc.<region>.aliyuncs.com``; that form is used for regions whose public
host is regional. Regions the map sends to the central host keep it, whatever the network: the SDK does the same (a
region in its map always gets the mapped host), and no VPC name is documented for them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from itertools import groupby

from ._regions import REGION_ENDPOINTS

__all__ = ["CENTRAL_HOST", "REGION_ENDPOINTS", "UnknownRegionError", "allowed_regions", "resolve_endpoint"]

CENTRAL_HOST = "dataworks.aliyuncs.com"

# An extra region id: an area code (cn, ap, us, eu, me, rus...), a place, then at most three more parts
# (ap-southeast-7, cn-beijing-finance-1). Lowercase letters and digits only, so it is one DNS label and cannot
# carry dots, slashes, ports or a user-info part into the host name. Every region of the SDK map fits it.
_EXTRA_REGION_RE = re.compile(r"[a-z]{2,3}-[a-z]+[0-9]*(?:-[a-z0-9]+){0,3}")
_MAX_REGION_LENGTH = 48
# A tenant's region is quoted in the error, so it is cut short: it is not secret, but it is untrusted.
_QUOTED_REGION_LIMIT = 64


# Ids in the SDK's map that no customer can pick: Alibaba's own test, internal and cell regions. Still accepted (the
# map is the allow-list); only left out of the list an error shows, which would otherwise be 59 ids and 1.4 KB.
_NOT_PUBLIC = re.compile(
    r"-(internal|test|inner|pop|nebula|oxs)\b|-[a-z]{2}[0-9]*-[a-z][0-9]{2}$|^cn-(edge-1|yushanfang|fujian|zhangbei)$"
)


def public_regions(regions: Iterable[str]) -> list[str]:
    return sorted(region for region in regions if not _NOT_PUBLIC.search(region))


class UnknownRegionError(ValueError):
    """The region is not one DataWorks serves (per the SDK's map) nor one the operator's configuration adds."""

    def __init__(self, region: str, allowed: Iterable[str]) -> None:
        self.region = region
        self.allowed = tuple(allowed)
        quoted = region if len(region) <= _QUOTED_REGION_LIMIT else region[: _QUOTED_REGION_LIMIT - 1] + "…"
        public = public_regions(self.allowed)
        nearest = difflib.get_close_matches(region[:_QUOTED_REGION_LIMIT], public, n=1, cutoff=0.75)
        hint = f"did you mean {nearest[0]!r}? " if nearest else ""
        super().__init__(f"{quoted!r} is not a DataWorks region; {hint}public regions: {_compact(public)}")


def _compact(regions: Iterable[str]) -> str:
    """Sorted ids grouped by area, shell-brace style (``cn-{beijing,shanghai} us-east-1``): the full list of about
    sixty ids is over 1 KB, more than a Kubernetes Event message holds, and this text ends up in one."""
    groups: list[str] = []
    for area, members in groupby(sorted(regions), key=lambda region: region.split("-", 1)[0]):
        rests = [region.split("-", 1)[1] if "-" in region else "" for region in members]
        groups.append(f"{area}-{rests[0]}" if len(rests) == 1 else f"{area}-{{{','.join(rests)}}}")
    return " ".join(groups)


def _valid_extra_regions(extra_regions: Iterable[str]) -> set[str]:
    if isinstance(extra_regions, str):
        # A lone string would be taken apart into one-letter "regions"; say what went wrong instead.
        raise TypeError("extra_regions must be a collection of region ids, not a string")
    regions: set[str] = set()
    for raw in extra_regions:
        region = raw.strip()
        if len(region) > _MAX_REGION_LENGTH or not _EXTRA_REGION_RE.fullmatch(region):
            # Operator configuration, not tenant input: quoting it helps the administrator fix it.
            raise ValueError(
                f"invalid extra DataWorks region id {raw[:_QUOTED_REGION_LIMIT]!r} in the operator configuration "
                "(expected something like 'ap-southeast-7')"
            )
        regions.add(region)
    return regions


def allowed_regions(extra_regions: Iterable[str] = ()) -> list[str]:
    """Sorted region ids :func:`resolve_endpoint` accepts; ValueError if an extra region id is malformed (call it
    at start-up to validate the configuration)."""
    return sorted(REGION_ENDPOINTS.keys() | _valid_extra_regions(extra_regions))


def resolve_endpoint(
    region: str | None,
    *,
    vpc: bool = False,
    override: str | None = None,
    extra_regions: Iterable[str] = (),
) -> str:
    """Base URL of the DataWorks OpenAPI for ``region``; ``override`` (a host or URL) wins when given.

    Raises :class:`UnknownRegionError` for a region that is neither in ``REGION_ENDPOINTS`` nor in
    ``extra_regions``, and ValueError for a missing region or a malformed extra region id.
    """
    if override is not None and override.strip():
        value = override.strip().rstrip("/")
        return value if "://" in value else f"https://{value}"
    if region is None or not region.strip():
        raise ValueError(
            "cannot resolve the DataWorks endpoint: no region given (set the region, e.g. 'cn-shanghai', "
            "or an explicit endpoint override)"
        )
    region = region.strip()
    extra = _valid_extra_regions(extra_regions)
    # The host below comes from the map, or is built from ``region`` only once it is known to equal an allowed id.
    host = REGION_ENDPOINTS.get(region)
    if host is None:
        if region not in extra:
            raise UnknownRegionError(region, sorted(REGION_ENDPOINTS.keys() | extra))
        host = f"dataworks.{region}.aliyuncs.com"
    if vpc and host == f"dataworks.{region}.aliyuncs.com":
        host = f"dataworks-vpc.{region}.aliyuncs.com"
    return f"https://{host}"
