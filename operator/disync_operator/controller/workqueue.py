"""Objects waiting for a reconcile, served by a fixed pool of workers: what client-go calls a work queue.

kopf calls the event handler at once for every event, one task per object. In a burst of thousands of new CRs, most
of them waiting for the DataWorks rate limit, that meant thousands of reconciles in flight, each holding its body,
models and frames. bench/ P2 measured this as most of the operator's memory, and pymalloc kept it afterwards as
fragmented arenas. So the handler only queues the object and returns. An object is queued at most once, however many
events it gets (the newest body wins), and `workers` reconciles run at a time.

What waits is one body per object, trimmed and kept as compact JSON: about a fifth of the parsed body's memory, in
one block that goes back to the allocator whole (parsed bodies are thousands of small objects, which pymalloc keeps
as fragmented arenas after a burst; bench/ P2 measured 25 MiB less at 10,000 CRs).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Work = Callable[[dict[str, Any], str], Awaitable[None]]


def older(version: str | None, than: str | None) -> bool:
    """Is resourceVersion `version` older than `than`? Compared as numbers, which the API server's etcd storage makes
    them; anything else (or a missing one) is never called older."""
    if version is None or than is None:
        return False
    try:
        return int(version) < int(than)
    except ValueError:
        return False


def trimmed(raw: dict[str, Any]) -> dict[str, Any]:
    """The body without metadata.managedFields: the API server's bookkeeping, often half the object, never read here."""
    meta = raw.get("metadata") or {}
    if "managedFields" not in meta:
        return raw
    return {**raw, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _packed(body: dict[str, Any]) -> bytes:
    return json.dumps(trimmed(body), separators=(",", ":")).encode()


class WorkQueue:
    def __init__(self) -> None:
        # uid -> (resourceVersion, newest body as JSON, what brought it)
        self._waiting: dict[str, tuple[str | None, bytes, str]] = {}
        self._order: asyncio.Queue[str] = asyncio.Queue()  # may hold uids no longer waiting; `_waiting` is the truth

    def __len__(self) -> int:
        return len(self._waiting)

    def __contains__(self, uid: str) -> bool:
        return uid in self._waiting

    def add(self, uid: str, body: dict[str, Any], source: str) -> None:
        """Queue the object for a reconcile; if it is already waiting, keep its place and the newer body."""
        known = self._waiting.get(uid)
        version = (body.get("metadata") or {}).get("resourceVersion")
        if known is None:
            self._waiting[uid] = (version, _packed(body), source)
            self._order.put_nowait(uid)
        elif not older(version, known[0]):
            self._waiting[uid] = (version, _packed(body), source)

    def discard(self, uid: str) -> None:
        self._waiting.pop(uid, None)

    async def run(self, workers: int, work: Work) -> None:
        """Call `work(body, source)` for each queued object, first come first served, `workers` at a time."""

        async def worker() -> None:
            while True:
                uid = await self._order.get()
                entry = self._waiting.pop(uid, None)
                if entry is None:
                    continue  # discarded, or already taken under an earlier place in the line
                _, packed, source = entry
                try:
                    await work(json.loads(packed), source)
                except Exception:
                    log.exception("reconcile of %s failed unexpectedly", uid)

        await asyncio.gather(*(worker() for _ in range(workers)))
