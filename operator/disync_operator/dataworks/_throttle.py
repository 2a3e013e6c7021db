"""Client-side rate limiting: a token bucket that spaces calls evenly.

Implemented as virtual scheduling (GCRA): each caller reserves the next free send slot synchronously (no await
between reading and updating the schedule, so asyncio needs no lock) and then sleeps until that slot. Callers are
served in arrival order, and sleeping holds no lock. A cancelled waiter's slot is simply lost, which can only make
us slower than the limit, never faster.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

__all__ = ["CallBudget", "TokenBucket"]


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._interval = 1.0 / rate
        # How far ahead of "now" the schedule may run before callers must wait: burst-1 extra slots.
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._next_slot = float("-inf")

    @property
    def interval(self) -> float:
        return self._interval

    def reserve(self) -> float:
        """Book the next slot; return how many seconds the caller must wait before using it."""
        now = self._clock()
        slot = max(self._next_slot, now - self._tolerance)
        self._next_slot = slot + self._interval
        return max(0.0, slot - now)

    def try_reserve(self) -> bool:
        """Book the next slot only if it is due now (within the burst); for callers that drop rather than wait."""
        now = self._clock()
        slot = max(self._next_slot, now - self._tolerance)
        if slot > now + 1e-9:  # sums of the interval drift by rounding; a due slot must not look a hair late
            return False
        self._next_slot = slot + self._interval
        return True

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await self._sleep(delay)


class CallBudget:
    """A QPS limit and a concurrency cap that several clients share: DataWorks throttles per account, so a process
    talking to many regions (one client per endpoint) must still hold one budget. `slot()` waits for both."""

    def __init__(self, qps: float | None, max_concurrency: int) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._bucket = TokenBucket(qps) if qps is not None else None

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self._semaphore:
            if self._bucket is not None:
                await self._bucket.acquire()
            yield

    async def token(self) -> None:
        """Wait for the QPS limit only (a call that has work to do before it may take a concurrency slot)."""
        if self._bucket is not None:
            await self._bucket.acquire()

    @contextlib.asynccontextmanager
    async def cap(self, until: float | None) -> AsyncIterator[bool]:
        """A concurrency slot, if one frees up before the monotonic time `until` (None: however long it takes).
        Yields False, holding nothing, when it did not."""
        if until is None:
            async with self._semaphore:
                yield True
            return
        try:
            await asyncio.wait_for(self._semaphore.acquire(), max(0.0, until - time.monotonic()))
        except TimeoutError:
            yield False
            return
        try:
            yield True
        finally:
            self._semaphore.release()
