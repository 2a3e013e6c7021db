"""Leader election as pure logic: two candidates over one in-memory Lease store with the API server's conflict
rules, on a clock the test moves. The real Lease, real processes and real kills: tests/reliability/test_failover.py."""

from __future__ import annotations

import asyncio

from inprocess_fakes import FakeKube

from disync_operator.controller.runtime.leader import LeaderElection

NS, NAME = "disync-system", "disync-operator"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def candidate(kube: FakeKube, clock: Clock, who: str, changes: list[tuple[str, bool]] | None = None) -> LeaderElection:
    return LeaderElection(
        kube,
        namespace=NS,
        name=NAME,
        identity=who,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        on_change=lambda leading: changes.append((who, leading)) if changes is not None else None,
        clock=clock,
    )


def spec(kube: FakeKube) -> dict[str, object]:
    return dict(kube.leases[(NS, NAME)]["spec"])


async def test_the_first_candidate_creates_the_lease_and_the_second_stands_by() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = candidate(kube, clock, "a"), candidate(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    assert b.holder == "a"
    assert spec(kube)["holderIdentity"] == "a"
    assert spec(kube)["leaseDurationSeconds"] == 15


async def test_a_standby_takes_over_only_after_a_lease_duration_without_renewal_on_its_own_clock() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = candidate(kube, clock, "a"), candidate(kube, clock, "b")
    await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.now += 10
    await a.try_acquire_or_renew()  # a renews: the record changes, b's wait starts again
    clock.now += 14
    assert not await b.try_acquire_or_renew()  # b sees the renewal now: its wait starts from here
    clock.now += 14
    assert not await b.try_acquire_or_renew()
    clock.now += 2  # 16 s since b saw the record change: a is gone
    assert await b.try_acquire_or_renew()
    assert spec(kube)["holderIdentity"] == "b"
    assert spec(kube)["leaseTransitions"] == 1
    assert not await a.try_acquire_or_renew()  # a comes back: b's lease is fresh


async def test_a_released_lease_is_taken_at_the_next_look() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = candidate(kube, clock, "a"), candidate(kube, clock, "b")
    await a.acquire(asyncio.Event())
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert spec(kube)["holderIdentity"] == ""
    assert await b.try_acquire_or_renew()  # no lease duration to wait: the holder is empty


async def test_of_two_candidates_writing_at_once_one_wins() -> None:
    kube, clock = FakeKube(), Clock()
    results = await asyncio.gather(*(candidate(kube, clock, w).try_acquire_or_renew() for w in ("a", "b", "c")))
    assert sorted(results) == [False, False, True]


async def test_a_leader_that_cannot_renew_for_the_deadline_gives_up(monkeypatch: object) -> None:
    kube, clock = FakeKube(), Clock()
    changes: list[tuple[str, bool]] = []
    a = candidate(kube, clock, "a", changes)
    a.retry_period = 0.01  # real waits between renewals; the deadline is on the test's clock
    await a.acquire(asyncio.Event())
    kube.lease_outage = True

    async def advance() -> None:
        while True:
            clock.now += 1
            await asyncio.sleep(0.005)

    mover = asyncio.create_task(advance())
    try:
        await asyncio.wait_for(a.hold(), timeout=10)
    finally:
        mover.cancel()
    assert changes == [("a", True), ("a", False)]
    assert not a.leading


async def test_a_standby_waits_until_stopped() -> None:
    kube, clock = FakeKube(), Clock()
    a, b = candidate(kube, clock, "a"), candidate(kube, clock, "b")
    b.retry_period = 0.01
    await a.try_acquire_or_renew()
    stop = asyncio.Event()
    waiting = asyncio.create_task(b.acquire(stop))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    stop.set()
    assert await asyncio.wait_for(waiting, timeout=5) is False
