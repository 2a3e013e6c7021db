"""Endpoint resolution.

DataWorks serves its OpenAPI per region at ``dataworks.<region>.aliyuncs.com``, and inside a VPC at
``dataworks-vpc.<region>.aliyuncs.com``. We derive that name from the region ourselves rather than copying the SDK's
endpoint map, which sends some regions to a global endpoint and builds ``dataworks-public.<region>`` names instead:
one rule, the same for every region, and a region id checked before it becomes part of a host name. Anything
unusual (the emulator, a private endpoint) is handled by an explicit override.
"""

from __future__ import annotations

import re

__all__ = ["resolve_endpoint"]

_REGION_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def resolve_endpoint(region: str | None, *, vpc: bool = False, override: str | None = None) -> str:
    """Base URL of the DataWorks OpenAPI for ``region``; ``override`` (a host or URL) wins when given."""
    if override is not None and override.strip():
        value = override.strip().rstrip("/")
        return value if "://" in value else f"https://{value}"
    if region is None or not region.strip():
        raise ValueError(
            "cannot resolve the DataWorks endpoint: no region given (set the region, e.g. 'cn-shanghai', "
            "or an explicit endpoint override)"
        )
    region = region.strip()
    if not _REGION_RE.fullmatch(region):
        raise ValueError(f"invalid Alibaba Cloud region id {region!r} (expected something like 'cn-shanghai')")
    return f"https://dataworks{'-vpc' if vpc else ''}.{region}.aliyuncs.com"
