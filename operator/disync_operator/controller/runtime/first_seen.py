"""Ages on this process's own clock: how long ago this process first saw a thing another process wrote.

A record another process wrote carries that process's wall-clock time, and two nodes' clocks can disagree by
minutes (an NTP step on one of them). Timing such a record by its own date would let a reader with a clock ahead
think it old, and act on it too early. So, as client-go's leader election does with a Lease's renewTime, a record's
date is never compared with ours: its age is how long *this* process has seen it, on the monotonic clock. What this
process wrote itself is seen when it is written, so its own records age from their writing.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class FirstSeen:
    """Keys (e.g. an intent's id) -> when this process first saw them, on its monotonic clock.

    Memory stays bounded: once the table has doubled since its last pruning, entries older than `horizon` seconds
    go. A pruned key seen again ages from zero again, which only ever makes a reader wait longer, never shorter."""

    def __init__(self, *, horizon: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._first: dict[str, float] = {}
        self._horizon = horizon
        self._clock = clock
        self._pruned_at_size = 1024

    def __len__(self) -> int:
        return len(self._first)

    def age(self, key: str) -> float:
        """Seconds since this process first saw `key` (0.0 the first time, which starts its clock)."""
        now = self._clock()
        first = self._first.setdefault(key, now)
        if len(self._first) >= 2 * self._pruned_at_size:
            self._prune(now)
        return now - first

    def _prune(self, now: float) -> None:
        self._first = {key: at for key, at in self._first.items() if now - at < self._horizon}
        self._pruned_at_size = max(1024, len(self._first))
