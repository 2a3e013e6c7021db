"""The work queue: client-go's semantics (each object once, newest body; never two workers on one object; an object
added while it is reconciled is reconciled once more after), and the record of our own writes."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import pytest

from disync_operator.controller.runtime.workqueue import Source, Work, WorkQueue, older, trimmed


def body(uid: str, rv: str, **extra: Any) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "resourceVersion": rv, **extra}}


def served_as(work: Work) -> tuple[str, str]:
    return work.body["metadata"]["resourceVersion"], work.source.value


async def drain(queue: WorkQueue, workers: int, reconcile: Any, until: asyncio.Event) -> None:
    runner = asyncio.create_task(queue.run(workers, reconcile))
    try:
        await asyncio.wait_for(until.wait(), timeout=5)
    finally:
        runner.cancel()


async def test_an_object_waits_once_with_its_newest_body() -> None:
    queue = WorkQueue()
    queue.add("a", body("a", "5"), Source.EVENT)
    queue.add("b", body("b", "6"), Source.EVENT)
    queue.add("a", body("a", "9"), Source.REQUEUE)
    queue.add("a", body("a", "7"), Source.EVENT)  # older than what waits: kept out
    assert len(queue) == 2
    queue.forget("b")
    assert "b" not in queue
    assert "a" in queue
    served: list[tuple[str, str]] = []
    done = asyncio.Event()

    async def reconcile(work: Work) -> None:
        served.append(served_as(work))
        done.set()

    await drain(queue, 1, reconcile, done)
    assert served == [("9", "requeue")]  # once, and with the newest body
    assert len(queue) == 0


@pytest.mark.parametrize(
    "observed_version",
    [
        "7",  # older than what waits: the newer body stays, but the live state is to be read too
        "9",  # the sweep lists the same version: it never takes the place of the event
    ],
)
async def test_a_live_state_visit_joins_what_waits(observed_version: str) -> None:
    queue = WorkQueue()
    queue.add("a", body("a", "9"), Source.EVENT)
    queue.add("a", body("a", observed_version), Source.OBSERVE, observe=True)
    served: list[Work] = []
    done = asyncio.Event()

    async def reconcile(work: Work) -> None:
        served.append(work)
        done.set()

    await drain(queue, 1, reconcile, done)
    assert [(served_as(w), w.observe) for w in served] == [(("9", "event"), True)]


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
    served: list[str] = []
    done = asyncio.Event()

    async def reconcile(work: Work) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        served.append(work.body["metadata"]["uid"])
        running -= 1
        if len(served) == 6:
            done.set()

    for i in range(6):
        queue.add(f"o{i}", body(f"o{i}", "1"), Source.EVENT)
    await drain(queue, 2, reconcile, done)
    assert sorted(served) == [f"o{i}" for i in range(6)]
    assert served[:2] == ["o0", "o1"] or served[:2] == ["o1", "o0"]
    assert peak == 2


async def test_an_object_is_never_reconciled_twice_at_once_and_once_more_after() -> None:
    """client-go's rule: added while its reconcile runs, it waits for that reconcile, then runs once, newest body."""
    queue = WorkQueue()
    inside = asyncio.Event()
    release = asyncio.Event()
    done = asyncio.Event()
    running = peak = 0
    served: list[tuple[str, str]] = []

    async def reconcile(work: Work) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        served.append(served_as(work))
        if len(served) == 1:
            inside.set()
            await release.wait()
        running -= 1
        if len(served) == 2:
            done.set()

    queue.add("a", body("a", "1"), Source.EVENT)
    runner = asyncio.create_task(queue.run(4, reconcile))
    await asyncio.wait_for(inside.wait(), timeout=5)
    for rv in ("2", "3", "4"):  # three events while the first reconcile runs, with 3 idle workers
        queue.add("a", body("a", rv), Source.EVENT)
    await asyncio.sleep(0)  # give idle workers every chance to (wrongly) take it
    assert served == [("1", "event")]
    release.set()
    await asyncio.wait_for(done.wait(), timeout=5)
    runner.cancel()
    assert served == [("1", "event"), ("4", "event")]
    assert peak == 1


async def test_settled_waits_for_queued_and_running_objects() -> None:
    queue = WorkQueue()
    served: list[str] = []

    async def reconcile(work: Work) -> None:
        await asyncio.sleep(0.01)
        served.append(work.body["metadata"]["uid"])

    queue.add("a", body("a", "1"), Source.SWEEP)
    queue.add("b", body("b", "1"), Source.SWEEP)
    runner = asyncio.create_task(queue.run(1, reconcile))
    await asyncio.wait_for(queue.settled(["a", "b"]), timeout=5)
    runner.cancel()
    assert sorted(served) == ["a", "b"]


def test_events_up_to_our_own_settled_write_are_already_handled() -> None:
    queue = WorkQueue()
    handled = functools.partial(queue.already_handled, "u", echo=True)
    assert not handled("5")  # nothing written: nothing is handled
    queue.wrote("u", "10", settled=True)
    assert handled("7")  # predates our write at 10, which is the one to act on
    assert handled("10")  # our write's own event: the reconcile that made it already acted
    assert handled("8")  # still stale after our write's event: a queued body may come late
    queue.wrote("u", "12", settled=False)
    assert handled("11")
    assert not handled("12")  # that reconcile failed part-way: its own event is a new look
    queue.wrote("u", "13", settled=True)
    assert not handled("14")  # someone else's change after ours
    assert not handled("opaque")  # non-numeric versions are never called older
    queue.forget("u")
    assert not handled("3")


def test_stale_bodies_and_echoes_are_not_queued_but_requeues_and_deletions_are() -> None:
    queue = WorkQueue()
    queue.wrote("u", "10", settled=True)
    queue.add("u", body("u", "9"), Source.EVENT)
    queue.add("u", body("u", "10"), Source.EVENT)  # the echo of our own write
    queue.add("u", body("u", "9"), Source.REQUEUE)  # older than our write: still stale
    assert "u" not in queue
    queue.add("u", body("u", "10"), Source.REQUEUE)  # the body our write left, brought back on purpose
    assert "u" in queue
    queue.add("u", body("u", "11"), Source.DELETED)
    queue.add("u", body("u", "12"), Source.EVENT)  # nothing after the object is gone replaces its deletion
    assert len(queue) == 1


async def test_live_state_visits_wait_for_everything_else_and_take_a_quarter_of_the_workers() -> None:
    """A pass over many Ready objects must not hold up a burst of new ones (bench P5): events go first, and the
    sweep's visits never occupy more than a quarter of the workers."""
    queue = WorkQueue()
    release = asyncio.Event()
    four = asyncio.Event()
    done = asyncio.Event()
    running_visits = peak_visits = 0
    served: list[str] = []

    async def reconcile(work: Work) -> None:
        nonlocal running_visits, peak_visits
        uid = work.body["metadata"]["uid"]
        if work.source is Source.OBSERVE:
            running_visits += 1
            peak_visits = max(peak_visits, running_visits)
            await release.wait()
            running_visits -= 1
        served.append(uid)
        if len(served) == 4:
            four.set()
        if len(served) == 14:
            done.set()

    for i in range(10):
        queue.add(f"ready-{i}", body(f"ready-{i}", "1"), Source.OBSERVE, observe=True)
    runner = asyncio.create_task(queue.run(8, reconcile))
    await asyncio.sleep(0)
    for i in range(4):
        queue.add(f"new-{i}", body(f"new-{i}", "1"), Source.EVENT)
    await asyncio.wait_for(four.wait(), timeout=5)
    assert sorted(served) == [f"new-{i}" for i in range(4)]  # served while the visits wait
    assert peak_visits == 2  # 8 workers: at most 2 on visits
    release.set()
    await asyncio.wait_for(done.wait(), timeout=5)
    runner.cancel()


async def test_a_stuck_reconcile_shows_in_the_running_figures() -> None:
    queue, release, entered = WorkQueue(), asyncio.Event(), asyncio.Event()

    async def reconcile(work: Work) -> None:
        entered.set()
        await release.wait()

    assert (queue.active, queue.longest_running_seconds()) == (0, 0.0)
    workers = asyncio.create_task(queue.run(3, reconcile))
    queue.add("a", body("a", "1"), Source.EVENT)
    await asyncio.wait_for(entered.wait(), 5)
    assert (queue.workers, queue.active) == (3, 1)
    first = queue.longest_running_seconds()
    await asyncio.sleep(0.02)  # time passing is what is measured here, not a synchronisation
    assert queue.longest_running_seconds() > first
    unfinished, longest = queue.unfinished_seconds(), queue.longest_running_seconds()
    assert longest > 0
    assert unfinished == pytest.approx(longest, abs=0.01)  # one reconcile running: the two agree
    release.set()
    await asyncio.wait_for(queue.settled(["a"]), 5)
    assert (queue.active, queue.unfinished_seconds(), queue.longest_running_seconds()) == (0, 0.0, 0.0)
    workers.cancel()
