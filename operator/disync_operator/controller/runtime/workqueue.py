"""Objects waiting for a reconcile, served by a fixed pool of workers: client-go's work queue, plus what this process
last wrote to each object.

Why not kopf's own per-object handler tasks: kopf calls the event handler at once for every event, one task per
object. In a burst of thousands of new CRs, most of them waiting for the DataWorks rate limit, that meant thousands
of reconciles in flight, each holding its body, models and frames; bench/ P2 measured this as most of the operator's
memory (528 -> 160 MiB at 10,000 CRs once queued). So the event handler only queues the object and returns.

The semantics are client-go's:
- an object waits at most once, however many times it is added (the newest body wins);
- an object is never reconciled by two workers at once: one added while it is being reconciled waits until that
  reconcile is done, and is reconciled once more after it. This is the per-object lock; there is no other.

And what this process wrote (`wrote`): a body older than our last write to the object predates it (acting on it
would only fail the intent's precondition) and is dropped; so is a watch event that merely echoes a write whose
reconcile ran to its end. The record stays until the object is gone (`forget`), because the watch may deliver an old
body after our write's own event.

What waits is one body per object, trimmed and kept as compact JSON: about a fifth of the parsed body's memory, in one
block that goes back to the allocator whole (bench/ P2 measured 25 MiB less at 10,000 CRs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Source(StrEnum):
    """What brought an object to the queue (the `source` label of disync_reconciles_total)."""

    EVENT = "event"  # a watch event
    REQUEUE = "requeue"  # a reconcile asked to look again later (backoff, lease, conflict)
    SWEEP = "sweep"  # the sweep found a generation no event brought (a missed event)
    OBSERVE = "observe"  # the sweep's live-state follow-up
    DELETED = "deleted"  # the object is gone


@dataclass(frozen=True)
class Work:
    """One queued object: its newest body, what brought it, and whether its live state is to be read too."""

    body: dict[str, Any]
    source: Source
    observe: bool


Reconcile = Callable[[Work], Awaitable[None]]


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


@dataclass(frozen=True)
class _Waiting:
    version: str | None
    packed: bytes
    source: Source
    observe: bool
    since: float  # when the object began to wait (monotonic); a newer body keeps its place and this


class QueueObserver(Protocol):
    """What the queue reports (controller/metrics.py): client-go's work-queue metrics."""

    def added(self) -> None: ...  # an object began to wait (one already waiting is not counted again)

    def taken(self, waited: float) -> None: ...  # a worker took an object after it waited this long

    def worked(self, seconds: float) -> None: ...  # a worker was done with an object after this long


class _Unobserved:
    def added(self) -> None:
        pass

    def taken(self, waited: float) -> None:
        pass

    def worked(self, seconds: float) -> None:
        pass


class WorkQueue:
    def __init__(self) -> None:
        self._waiting: dict[str, _Waiting] = {}  # client-go's "dirty" set, with each object's newest body
        self._processing: set[str] = set()
        # Two lines, both may repeat uids or hold gone ones (`_waiting` is the truth): everything else goes before the
        # sweep's live-state visits, which take at most `_observe_cap` workers at once, so a burst of new objects never
        # waits behind a pass over thousands of Ready ones (bench/ P5).
        self._order: asyncio.Queue[str] = asyncio.Queue()
        self._later: asyncio.Queue[str] = asyncio.Queue()
        self._ready = asyncio.Event()
        self._observing = 0
        self._observe_cap = 1
        self._taken_at: dict[str, float] = {}  # uid -> when a worker took it (monotonic), while it is reconciled
        self.workers = 0  # how many reconciles may run at once (run())
        self._closed = False  # drain(): no more reconciles from this process
        self._paused = False  # pause(): none handed out until resumed (the Lease could not be confirmed)
        self._written: dict[str, tuple[str, bool]] = {}  # uid -> (resourceVersion of our last write, settled)
        self._done = asyncio.Condition()
        self.observer: QueueObserver = _Unobserved()
        self.reconciled = 0  # reconciles run so far

    @property
    def idle(self) -> bool:
        """Nothing waits and nothing is being reconciled."""
        return not self._waiting and not self._processing

    def __len__(self) -> int:
        return len(self._waiting)

    @property
    def active(self) -> int:
        """Reconciles running now."""
        return len(self._processing)

    def unfinished_seconds(self) -> float:
        """How long the reconciles running now have run, added up (client-go's unfinished work)."""
        now = time.monotonic()
        return sum(now - taken for taken in self._taken_at.values())

    def longest_running_seconds(self) -> float:
        """How long the oldest reconcile running now has run: a stuck one shows here."""
        return time.monotonic() - min(self._taken_at.values()) if self._taken_at else 0.0

    def __contains__(self, uid: str) -> bool:
        return uid in self._waiting

    def add(self, uid: str, body: dict[str, Any], source: Source, *, observe: bool = False) -> None:
        """Queue the object for a reconcile; if it is already waiting, keep its place and the newer body. Bodies this
        process has already acted on are dropped (see the module's docstring)."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        if source is not Source.DELETED and self.already_handled(uid, version, echo=source is Source.EVENT):
            return
        known = self._waiting.get(uid)
        if known is not None and source is not Source.DELETED:
            if known.source is Source.DELETED:
                return  # nothing comes after the object is gone
            if older(version, known.version):
                if observe and not known.observe:  # what waits is newer, but the live state is to be read too
                    self._waiting[uid] = replace(known, observe=True)
                return
            observe = observe or known.observe
            if source is Source.OBSERVE:
                source = known.source  # a live-state visit never takes the place of what else brought the object
        if known is None:
            self.observer.added()
        self._waiting[uid] = _Waiting(
            version,
            json.dumps(trimmed(body), separators=(",", ":")).encode(),
            source,
            observe,
            known.since if known is not None else time.monotonic(),
        )
        if uid not in self._processing and (
            known is None or (known.source is Source.OBSERVE) != (source is Source.OBSERVE)
        ):
            self._line(source).put_nowait(uid)  # new, or it moved to the other line (a queued visit now has an event)
            self._ready.set()

    def _line(self, source: Source) -> asyncio.Queue[str]:
        return self._later if source is Source.OBSERVE else self._order

    # -- what this process wrote --------------------------------------------------------------------------------

    def wrote(self, uid: str, resource_version: str | None, *, settled: bool) -> None:
        """Our write left the object at `resource_version`; `settled`: the reconcile that made it ran to its end."""
        if resource_version:
            self._written[uid] = (resource_version, settled)

    def already_handled(self, uid: str, resource_version: str | None, *, echo: bool) -> bool:
        """Older than our last write to the object; or, with `echo` (a watch event), that write's own event after its
        reconcile ran to its end (it left the object as it wanted, or asked for a requeue, which is never an echo)."""
        known = self._written.get(uid)
        if known is None or resource_version is None:
            return False
        written, settled = known
        if older(resource_version, written):
            return True
        return echo and settled and resource_version == written

    def forget(self, uid: str) -> None:
        """The object is gone: drop what was kept about it."""
        self._written.pop(uid, None)
        self._waiting.pop(uid, None)

    # -- workers ------------------------------------------------------------------------------------------------

    async def run(self, workers: int, reconcile: Reconcile) -> None:
        """Call `reconcile(work)` for each queued object, first come first served, `workers` at a time; the sweep's
        live-state visits only when nothing else waits, on at most a quarter of the workers."""
        self._observe_cap = max(1, workers // 4)
        self.workers = workers
        await asyncio.gather(*(self._worker(reconcile) for _ in range(workers)))

    def pause(self, paused: bool) -> None:
        """Hand out no reconcile while `paused` (what waits keeps its place); the ones in flight go on."""
        self._paused = paused
        self._ready.set()

    async def drain(self, grace: float) -> bool:
        """Hand out nothing more, and wait up to `grace` s for the reconciles in flight to end (before a handover:
        the next leader must not find this process still writing). True if none is left."""
        self._closed = True
        self._ready.set()
        try:
            async with self._done:
                await asyncio.wait_for(self._done.wait_for(lambda: not self._processing), grace)
        except TimeoutError:
            return False
        return True

    async def _next(self) -> str | None:
        while True:
            if self._closed:
                return None
            if self._paused:
                self._ready.clear()
                await self._ready.wait()
                continue
            if not self._order.empty():
                return self._order.get_nowait()
            if self._observing < self._observe_cap and not self._later.empty():
                return self._later.get_nowait()
            self._ready.clear()
            await self._ready.wait()

    async def _worker(self, reconcile: Reconcile) -> None:
        while True:
            uid = await self._next()
            if uid is None:
                self._ready.set()  # wake the next idle worker, so that it ends too
                return
            if uid in self._processing:
                continue  # queued again meanwhile: it goes back in line when its reconcile is done
            entry = self._waiting.pop(uid, None)
            if entry is None:
                continue  # discarded, or already taken under an earlier place in the line
            if entry.source is not Source.DELETED and self.already_handled(uid, entry.version, echo=False):
                continue  # queued while its last reconcile ran, and that reconcile's write made it stale
            self._processing.add(uid)
            visit = entry.source is Source.OBSERVE
            self._observing += visit
            taken = time.monotonic()
            self._taken_at[uid] = taken
            self.observer.taken(taken - entry.since)
            try:
                await reconcile(Work(json.loads(entry.packed), entry.source, entry.observe))
            except Exception:
                log.exception("reconcile of %s failed unexpectedly", uid)
            finally:
                self.observer.worked(time.monotonic() - taken)
                self.reconciled += 1
                self._processing.discard(uid)
                self._taken_at.pop(uid, None)
                self._observing -= visit
                again = self._waiting.get(uid)
                if again is not None:
                    self._line(again.source).put_nowait(uid)  # added while it was reconciled: once more
                self._ready.set()
                async with self._done:
                    self._done.notify_all()

    async def settled(self, uids: Iterable[str]) -> None:
        """Wait until none of `uids` waits or is being reconciled (the sweep paces itself with this)."""
        pending = set(uids)
        async with self._done:
            await self._done.wait_for(lambda: not any(u in self._waiting or u in self._processing for u in pending))
