"""Hostile answers: over-long and dirty text fields, huge bodies, gzip bombs (the HTTP side, trickling, is in
``_server``).

Everything here is deterministic (the same options give the same bytes) and holds a bounded amount of memory
whatever size it is asked for: long texts are capped by ``FaultConfig`` (1 M characters), and bodies are generated
chunk by chunk from constants (64 KiB of whitespace; 1 MiB of whitespace and its deflated form, about 1 KiB, computed
once). The padding is JSON whitespace after the answer's document, so a reader without a size limit would parse a
valid answer: refusing it must come from the size alone.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterator

__all__ = [
    "CLEAN_TEXT",
    "DIRTY_TEXT",
    "GzipBomb",
    "long_header_value",
    "long_request_id",
    "long_text",
    "padded_body",
]

# A realistic long message: a Java stack trace, as a backend error would quote it.
CLEAN_TEXT = "java.lang.IllegalStateException: boom\n\tat com.example.Frame.call(Frame.java:42)\n"
# What must never reach a terminal through `kubectl get`/`describe`: colour, OSC title, bell, NUL, carriage return,
# backspace, DEL, the 8-bit CSI (C1), a clear-screen.
DIRTY_TEXT = "\x1b[31mred\x1b[0m \x07bell \x1b]0;owned\x07 \x00nul \rCR \x08BS \x7fDEL \x9b2J \x1b[2Jclear\n"
_CLEAN_ID = "0123456789ABCDEF"
_DIRTY_ID = "\x1b[7mREV\x1b[0m\x07\x00\x9b1m-"
# A header value may hold visible ASCII and obs-text (0x80-0xFF) only, no spaces at its ends: the C1 CSI (0x9B) is
# the one terminal escape that fits.
_CLEAN_HEADER = _CLEAN_ID
_DIRTY_HEADER = "\x9b31mRED\x9b0m-"

_PAD_CHUNK = 64 * 1024
_BLOCK = 1 << 20  # inflated bytes per precomputed deflate block
_BLOCKS_PER_WRITE = 16  # about 16 KiB on the wire per chunk of a bomb


def _cycle(prefix: str, filler: str, length: int) -> str:
    if length <= len(prefix):
        return prefix[:length]
    left = length - len(prefix)
    return prefix + (filler * (left // len(filler) + 1))[:left]


def long_text(length: int, *, dirty: bool) -> str:
    """A Data.Message (or error Message) of exactly `length` characters."""
    return _cycle("", DIRTY_TEXT if dirty else CLEAN_TEXT, length)


def long_request_id(request_id: str, length: int, *, dirty: bool) -> str:
    """A body RequestId of exactly `length` characters, starting with the real one (so logs still correlate)."""
    return _cycle(request_id + "-", _DIRTY_ID if dirty else _CLEAN_ID, length)


def long_header_value(request_id: str, length: int, *, dirty: bool) -> str:
    """An x-acs-request-id header value of exactly `length` characters that HTTP can carry."""
    return _cycle(request_id + "-", _DIRTY_HEADER if dirty else _CLEAN_HEADER, length)


@functools.cache
def _spaces(size: int) -> bytes:
    return b" " * size


def padded_body(payload: bytes, total: int) -> Iterator[bytes]:
    """`payload`, then spaces up to `total` bytes in all (none if it is already that long), 64 KiB at a time."""
    yield payload
    left = total - len(payload)
    pad = _spaces(_PAD_CHUNK)
    while left > 0:
        size = min(_PAD_CHUNK, left)
        yield pad if size == _PAD_CHUNK else pad[:size]
        left -= size


def padded_length(payload: bytes, total: int) -> int:
    return max(total, len(payload))


def _raw_deflater() -> zlib._Compress:
    return zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)


@functools.cache
def _deflated_block() -> bytes:
    """1 MiB of spaces as raw deflate blocks ending in a full flush. A full flush resets the compressor's history,
    so these bytes are the same wherever they stand in a stream after another full flush: they can be repeated."""
    deflater = _raw_deflater()
    return deflater.compress(_spaces(_BLOCK)) + deflater.flush(zlib.Z_FULL_FLUSH)


@functools.cache
def _deflated_group() -> bytes:
    return _deflated_block() * _BLOCKS_PER_WRITE


# ID1 ID2, CM deflate, no flags, MTIME 0 (deterministic), XFL 0, OS unknown.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


class GzipBomb:
    """One gzip member whose content is `payload` followed by spaces, `inflated` bytes in all.

    On the wire: the header, `payload` deflated and fully flushed, the precomputed block once per MiB of spaces,
    the remaining spaces deflated with the final block, then CRC-32 and ISIZE. Only the head and the tail are
    compressed per answer (at most 1 MiB of input); the CRC is computed as the blocks are sent, so a reader that
    gives up early costs nothing more.
    """

    def __init__(self, payload: bytes, inflated: int) -> None:
        self.payload = payload
        self.inflated = max(inflated, len(payload))
        self.blocks, self.remainder = divmod(self.inflated - len(payload), _BLOCK)
        head = _raw_deflater()
        self._head = _GZIP_HEADER + head.compress(payload) + head.flush(zlib.Z_FULL_FLUSH)
        tail = _raw_deflater()
        self._tail = tail.compress(_spaces(_BLOCK)[: self.remainder]) + tail.flush(zlib.Z_FINISH)

    @property
    def length(self) -> int:
        """Bytes on the wire (the Content-Length, when it is declared)."""
        return len(self._head) + self.blocks * len(_deflated_block()) + len(self._tail) + 8

    def __iter__(self) -> Iterator[bytes]:
        spaces = _spaces(_BLOCK)
        crc = zlib.crc32(self.payload)
        yield self._head
        groups, single = divmod(self.blocks, _BLOCKS_PER_WRITE)
        for _ in range(groups):
            for _ in range(_BLOCKS_PER_WRITE):
                crc = zlib.crc32(spaces, crc)
            yield _deflated_group()
        for _ in range(single):
            crc = zlib.crc32(spaces, crc)
            yield _deflated_block()
        crc = zlib.crc32(spaces[: self.remainder], crc)
        yield self._tail + struct.pack("<II", crc, self.inflated & 0xFFFFFFFF)
