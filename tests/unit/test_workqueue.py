"""The work queue: each object once (newest body), first come first served, no more than `workers` at a time."""

from __future__ import annotations

import asyncio
from typing import Any

from disync_operator.controller.workqueue import WorkQueue, older, trimmed


def body(uid: str, rv: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": rv, **extra}}


async def test_an_object_waits_once_with_its_newest_body() -> None:
    queue = WorkQueue()
    queue.add("a", body("a", "5"), "event")
    queue.add("b", body("b", "6"), "event")
    queue.add("a", body("a", "9"), "requeue")
    queue.add("a", body("a", "7"), "event")  # older than what waits: kept out
    assert len(queue) == 2
    queue.discard("b")
    assert "b" not in queue
    assert "a" in queue
    served: list[tuple[str, str]] = []
    done = asyncio.Event()

    async def work(raw: dict[str, Any], source: str) -> None:
        served.append((raw["metadata"]["resourceVersion"], source))
        done.set()

    runner = asyncio.create_task(queue.run(1, work))
    await asyncio.wait_for(done.wait(), timeout=5)
    runner.cancel()
    assert served == [("9", "requeue")]  # once, and with the newest body
    assert len(queue) == 0


def test_versions_compare_as_numbers_and_never_otherwise() -> None:
    assert older("9", "10")
    assert not older("10", "10")
    assert not older("x", "10")
    assert not older(None, "10")
    assert not older("9", None)


def test_managed_fields_are_dropped_and_nothing_else() -> None:
    raw = body("a", "1", managedFields=[{"manager": "kubectl"}], name="n")
    raw["spec"] = {"fileId": 1}
    slim = trimmed(raw)
    assert slim["metadata"] == {"uid": "a", "resourceVersion": "1", "name": "n"}
    assert slim["spec"] is raw["spec"]
    assert "managedFields" in raw["metadata"]  # the caller's body is left as it was


async def test_workers_serve_in_order_and_never_more_at_once() -> None:
    queue = WorkQueue()
    running = peak = 0
    served: list[tuple[str, str, str]] = []
    done = asyncio.Event()

    async def work(raw: dict[str, Any], source: str) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        served.append((raw["metadata"]["uid"], raw["metadata"]["resourceVersion"], source))
        running -= 1
        if len(served) == 5:
            done.set()

    for i in range(6):
        queue.add(f"o{i}", body(f"o{i}", "1"), "event")
    queue.discard("o3")
    queue.add("o1", body("o1", "2"), "requeue")
    runner = asyncio.create_task(queue.run(2, work))
    await asyncio.wait_for(done.wait(), timeout=5)
    runner.cancel()
    assert peak == 2
    assert sorted(served) == [
        ("o0", "1", "event"),
        ("o1", "2", "requeue"),
        ("o2", "1", "event"),
        ("o4", "1", "event"),
        ("o5", "1", "event"),
    ]
    assert [uid for uid, _, _ in served[:2]] in (["o0", "o1"], ["o1", "o0"])  # first come, first served
