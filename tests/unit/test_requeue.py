"""The requeue timer: pure logic, on a fake clock."""

from __future__ import annotations

import asyncio

from disync_operator.controller.runtime.requeue import Requeue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def body(uid: str, rv: str = "1") -> dict[str, object]:
    return {"metadata": {"uid": uid, "resourceVersion": rv}}


def test_due_bodies_come_out_once_in_time_order() -> None:
    clock = Clock()
    requeue = Requeue(clock)
    requeue.schedule("b", body("b"), 2.0)
    requeue.schedule("a", body("a"), 1.0)
    assert requeue.pop_due() == []
    assert requeue.next_in() == 1.0
    clock.now += 2.5
    assert [b["metadata"]["uid"] for b in requeue.pop_due()] == ["a", "b"]  # type: ignore[index]
    assert requeue.pop_due() == []
    assert len(requeue) == 0
    assert requeue.next_in() is None


def test_a_later_schedule_replaces_the_earlier_one_with_its_body() -> None:
    clock = Clock()
    requeue = Requeue(clock)
    requeue.schedule("a", body("a", "1"), 1.0)
    requeue.schedule("a", body("a", "7"), 5.0)  # a newer event reconciled it and asked again
    clock.now += 1.5
    assert requeue.pop_due() == []
    assert requeue.next_in() == 3.5
    clock.now += 4
    assert requeue.pop_due() == [body("a", "7")]


def test_cancel_drops_the_request() -> None:
    clock = Clock()
    requeue = Requeue(clock)
    requeue.schedule("a", body("a"), 1.0)
    requeue.cancel("a")
    assert "a" not in requeue
    clock.now += 2
    assert requeue.pop_due() == []
    assert requeue.next_in() is None


async def test_run_fires_each_due_body() -> None:
    requeue = Requeue()
    fired: list[object] = []
    done = asyncio.Event()

    def fire(raw: dict[str, object]) -> None:
        fired.append(raw["metadata"])
        if len(fired) == 2:
            done.set()

    runner = asyncio.create_task(requeue.run(fire))
    requeue.schedule("a", body("a"), 0.01)
    requeue.schedule("b", body("b"), 0.0)
    await asyncio.wait_for(done.wait(), timeout=5)
    runner.cancel()
    assert [m["uid"] for m in fired] == ["b", "a"]  # type: ignore[index]
