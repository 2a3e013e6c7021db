"""Helpers for tests that talk raw HTTP to the emulator (httpx, curl) instead of going through a client.

They sign with :mod:`disync_operator.dataworks._signing` exactly as a V3 client would, and expose every knob a
negative test needs (date, nonce, extra or unsigned headers, body) so a test can break one thing at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from disync_operator.dataworks._signing import authorization, canonical_query, new_nonce, utc_timestamp
from disync_operator.emulator._config import API_VERSION


@dataclass
class RawRequest:
    """A signed request: POST ``url`` with ``headers`` and ``body``."""

    url: str
    headers: dict[str, str]
    body: bytes = b""
    nonce: str = ""
    date: str = ""


def sign_request(
    base_url: str,
    action: str,
    params: Mapping[str, str | int],
    *,
    access_key_id: str,
    access_key_secret: str,
    security_token: str | None = None,
    date: str | None = None,
    nonce: str | None = None,
    body: bytes = b"",
    version: str = API_VERSION,
    extra_signed_headers: Mapping[str, str] | None = None,
    wire_query: str | None = None,
) -> RawRequest:
    """Build a V3-signed POST. ``wire_query`` replaces the query put on the wire (the signature still covers the
    canonical form of ``params``), to mimic clients that encode differently."""
    query = {key: str(value) for key, value in params.items()}
    host = urlsplit(base_url).netloc
    date = date or utc_timestamp()
    nonce = nonce or new_nonce()
    headers: dict[str, str] = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": version,
        "x-acs-date": date,
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    if security_token is not None:
        headers["x-acs-security-token"] = security_token
    headers.update(extra_signed_headers or {})
    headers["Authorization"] = authorization(
        method="POST",
        path="/",
        query=query,
        headers=headers,
        payload_sha256=hashlib.sha256(body).hexdigest(),
        access_key_id=access_key_id,
        access_key_secret=access_key_secret,
    )
    on_wire = canonical_query(query) if wire_query is None else wire_query
    url = base_url.rstrip("/") + "/" + (f"?{on_wire}" if on_wire else "")
    return RawRequest(url=url, headers=headers, body=body, nonce=nonce, date=date)
