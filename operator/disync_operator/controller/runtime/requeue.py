"""Come back to an object later: one timer task for every object, what controller-runtime calls RequeueAfter.

A reconcile that has to wait (a backoff, a start intent's lease, a conflict) asks to be called again after a delay.
The body it had is kept until then, and replaced whenever a newer event reconciles the object first (each reconcile
schedules afresh, or cancels). Only objects that are waiting are kept: a Ready object costs nothing here.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable
from typing import Any

Fire = Callable[[dict[str, Any]], None]


class Requeue:
    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock
        self._due: dict[str, tuple[float, dict[str, Any]]] = {}  # uid -> (when, body)
        self._heap: list[tuple[float, str]] = []  # may hold superseded entries; `_due` is the truth
        self._changed = asyncio.Event()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, uid: str) -> bool:
        return uid in self._due

    def schedule(self, uid: str, body: dict[str, Any], delay: float) -> None:
        """Reconcile `body` again after `delay` seconds (replacing any earlier request for this object)."""
        when = self._now() + max(0.0, delay)
        self._due[uid] = (when, body)
        heapq.heappush(self._heap, (when, uid))
        self._changed.set()

    def due_in(self, uid: str) -> float | None:
        """Seconds until the object is looked at again, or None if it is not waiting."""
        entry = self._due.get(uid)
        return None if entry is None else max(0.0, entry[0] - self._now())

    def hurry(self, uid: str) -> None:
        """Look at a waiting object now rather than at its time (something it waits for has changed)."""
        entry = self._due.get(uid)
        if entry is not None:
            self.schedule(uid, entry[1], 0.0)

    def cancel(self, uid: str) -> None:
        self._due.pop(uid, None)  # its heap entry is skipped when it comes up

    def pop_due(self) -> list[dict[str, Any]]:
        """Bodies whose time has come (each once), earliest first."""
        now = self._now()
        bodies: list[dict[str, Any]] = []
        while self._heap and self._heap[0][0] <= now:
            when, uid = heapq.heappop(self._heap)
            entry = self._due.get(uid)
            if entry is not None and entry[0] == when:
                del self._due[uid]
                bodies.append(entry[1])
        return bodies

    def next_in(self) -> float | None:
        """Seconds until the earliest live request, or None when nothing waits."""
        while self._heap:
            when, uid = self._heap[0]
            entry = self._due.get(uid)
            if entry is not None and entry[0] == when:
                return max(0.0, when - self._now())
            heapq.heappop(self._heap)  # superseded or cancelled
        return None

    async def run(self, fire: Fire) -> None:
        """Call `fire(body)` for each request when it is due (it hands the body on, e.g. to the work queue, and must not
        block); runs until cancelled."""
        while True:
            for body in self.pop_due():
                fire(body)
            wait = self.next_in()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait)
