"""ACS3-HMAC-SHA256 ("signature V3") for Alibaba Cloud OpenAPI requests.

The algorithm, from the V3 request-structure document:

    CanonicalRequest = METHOD \\n URI \\n CanonicalQuery \\n CanonicalHeaders \\n SignedHeaders \\n HashedPayload
    StringToSign     = "ACS3-HMAC-SHA256" \\n hex(sha256(CanonicalRequest))
    Signature        = hex(hmac_sha256(AccessKeySecret, StringToSign))

Both the client (signing) and the emulator (verifying) use these functions; the client's output is cross-checked
against the official SDK in the tests, so the emulator cannot silently agree with a wrong client.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

ALGORITHM = "ACS3-HMAC-SHA256"
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as the V3 spec wants it: only A-Z a-z 0-9 - _ . ~ stay literal, space is %20."""
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(query: Mapping[str, str]) -> str:
    """Sorted ``key=value`` pairs, values percent-encoded; this exact string is also what goes on the wire."""
    return "&".join(f"{key}={percent_encode(query[key])}" for key in sorted(query))


def canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """Return (canonical header block, signed-headers list) over every header given."""
    merged: dict[str, list[str]] = {}
    for name, value in headers.items():
        merged.setdefault(name.lower(), []).append(str(value).strip())
    names = sorted(merged)
    block = "".join(f"{name}:{','.join(sorted(merged[name]))}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], payload_sha256: str
) -> tuple[str, str]:
    """Return (canonical request, signed-headers list)."""
    header_block, signed = canonical_headers(headers)
    text = "\n".join([method.upper(), path or "/", canonical_query(query), header_block, signed, payload_sha256])
    return text, signed


def signature(secret: str, canonical: str) -> str:
    string_to_sign = f"{ALGORITHM}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    return hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256).hexdigest()


def authorization(
    *,
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    payload_sha256: str,
    access_key_id: str,
    access_key_secret: str,
) -> str:
    """The Authorization header value for a request whose every header in ``headers`` is signed."""
    canonical, signed = canonical_request(method, path, query, headers, payload_sha256)
    sig = signature(access_key_secret, canonical)
    return f"{ALGORITHM} Credential={access_key_id},SignedHeaders={signed},Signature={sig}"


_AUTH_RE = re.compile(
    r"^(?P<algorithm>\S+)\s+Credential=(?P<credential>[^,\s]+),\s*SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<signature>[0-9a-fA-F]+)$"
)


@dataclass(frozen=True)
class ParsedAuthorization:
    algorithm: str
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization | None:
    """Parse an ACS3 Authorization header; None when it does not have the V3 shape."""
    match = _AUTH_RE.match(value.strip())
    if not match:
        return None
    return ParsedAuthorization(
        algorithm=match["algorithm"],
        access_key_id=match["credential"],
        signed_headers=tuple(match["signed"].split(";")),
        signature=match["signature"].lower(),
    )


def utc_timestamp(now: float | None = None) -> str:
    """x-acs-date: ISO 8601 UTC with second precision, e.g. 2023-10-26T10:22:32Z."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if now is None else now))


def new_nonce() -> str:
    """x-acs-signature-nonce: unique per attempt; the server rejects a reused nonce."""
    return secrets.token_hex(16)
