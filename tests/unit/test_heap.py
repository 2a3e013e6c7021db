"""After a burst, memory goes back to the system once, when the work queue has stayed idle (runtime/heap.py)."""

from __future__ import annotations

import asyncio
import platform

import pytest

from disync_operator.controller.runtime import heap


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_trim_is_found_and_release_runs() -> None:
    assert heap._TRIM is not None  # else the release would silently be a garbage collection only
    assert heap.release() >= 0


async def test_releases_once_per_burst_and_only_after_a_whole_idle_check(monkeypatch: pytest.MonkeyPatch) -> None:
    released: list[int] = []
    state = {"reconciled": 0, "idle": True}
    monkeypatch.setattr(heap, "release", lambda: released.append(state["reconciled"]) or 0.0)
    ticks: asyncio.Queue[None] = asyncio.Queue()
    asleep: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(_: float) -> None:  # each check waits for the test's tick
        await asleep.put(None)
        await ticks.get()

    async def check(**now: object) -> list[int]:
        state.update(now)  # type: ignore[arg-type]
        await ticks.put(None)
        await asleep.get()  # the check ran and the loop sleeps again
        return list(released)

    task = asyncio.create_task(heap.release_when_idle(lambda: state["reconciled"], lambda: state["idle"], sleep=sleep))
    try:
        await asleep.get()
        assert await check() == []  # idle, but nothing ran: nothing to give back
        assert await check(reconciled=10, idle=False) == []  # a burst
        assert await check(idle=True) == []  # idle for one check only
        assert await check() == [10]
        assert await check() == [10]  # once per burst
        assert await check(reconciled=12) == [10, 12]
    finally:
        task.cancel()
