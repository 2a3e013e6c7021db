"""Reading a response body within a byte budget, counted both as received and as decoded.

A DataWorks answer is a few KiB. ``httpx.Response.aread()`` keeps whatever arrives, and its decoders inflate each
received chunk without an output limit (one 64 KiB gzip chunk can become 64 MiB), so a broken or hostile endpoint
could make the operator hold hundreds of MiB. Here the raw stream is counted as it arrives, and decompressed with
zlib's ``max_length`` so that no step ever produces more than one byte past the budget: reading stops at the first
byte beyond it, whichever count crosses first.
"""

from __future__ import annotations

import zlib

import httpx

__all__ = ["ACCEPT_ENCODING", "read_limited"]

# Only what this module can decode within the budget. Pinned because httpx advertises "br" and "zstd" as soon as
# brotli or zstandard happen to be installed, and those would then arrive without a bounded decoder.
ACCEPT_ENCODING = "gzip, deflate"

_WBITS = {"gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class _OverLimit(Exception):
    """Internal signal: the budget is spent. Never leaves this module."""


class _Inflater:
    """One decoding stage (gzip or deflate) whose total output may not exceed ``limit``."""

    def __init__(self, coding: str, limit: int) -> None:
        self._zlib = zlib.decompressobj(_WBITS[coding])
        # "deflate" is meant to be zlib-wrapped, but servers also send raw deflate; like httpx, a failure on the
        # first bytes switches to raw once.
        self._may_be_raw = coding == "deflate"
        self._limit = limit
        self._produced = 0

    def feed(self, data: bytes) -> bytes:
        if not data:
            return b""
        # One byte past what is left: producing that byte proves the limit crossed, without inflating further.
        # Output shorter than the cap means zlib consumed all of `data` (it stops only at the cap or at the end).
        cap = self._limit - self._produced + 1
        try:
            out = self._zlib.decompress(data, cap)
        except zlib.error:
            if not self._may_be_raw:
                raise httpx.DecodingError("invalid compressed data") from None
            self._may_be_raw = False
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self.feed(data)
        self._may_be_raw = False
        return self._count(out)

    def flush(self) -> bytes:
        try:
            out = self._zlib.flush()
        except zlib.error:
            raise httpx.DecodingError("invalid compressed data") from None
        return self._count(out)

    def _count(self, out: bytes) -> bytes:
        self._produced += len(out)
        if self._produced > self._limit:
            raise _OverLimit
        return out


def _inflaters(headers: httpx.Headers, limit: int) -> list[_Inflater]:
    """Decoding stages in the order to apply them (the reverse of the header's). Codings other than gzip and
    deflate are passed through undecoded, as httpx does when it has no decoder for them."""
    codings = [value.strip().lower() for value in headers.get_list("content-encoding", split_commas=True)]
    return [_Inflater(coding, limit) for coding in reversed(codings) if coding in _WBITS]


def _declared_length(headers: httpx.Headers) -> int | None:
    raw = headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None  # h11 refuses a malformed one before we get here; the counting below still bounds the read


async def read_limited(response: httpx.Response, limit: int) -> bytes | None:
    """The decoded body of a streamed ``response``, or None as soon as it proves longer than ``limit`` bytes,
    received or decoded. A ``Content-Length`` above ``limit`` is refused before any byte of the body is read.

    The caller closes the response (also on None). Corrupt compressed data raises ``httpx.DecodingError``;
    transport failures while reading propagate as httpx raises them.
    """
    declared = _declared_length(response.headers)
    if declared is not None and declared > limit:
        return None
    if response.is_stream_consumed:
        # Handed over already read (httpx.MockTransport with a content= response): nothing is left to stream and
        # the memory is spent, but the caller still gets the same answer for the same body.
        return response.content if len(response.content) <= limit else None
    stages = _inflaters(response.headers, limit)
    parts: list[bytes] = []
    received = 0
    try:
        async for chunk in response.aiter_raw():
            received += len(chunk)
            if received > limit:
                raise _OverLimit
            for stage in stages:
                chunk = stage.feed(chunk)
            parts.append(chunk)
        # End of stream: what each stage still holds goes through the stages after it.
        for index, stage in enumerate(stages):
            tail = stage.flush()
            for later in stages[index + 1 :]:
                tail = later.feed(tail)
            parts.append(tail)
    except _OverLimit:
        return None
    return b"".join(parts)
