"""Exactly once between processes, in-process: clocks that disagree, region names that alias one task, answers lost
while the task fails at once, start parameters changed under ObserveOnly, and a leader that lost its Lease. The same
holes on the real API server with real processes: tests/reliability/test_exactly_once.py."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any

import pytest
from inprocess_fakes import FakeKube, Fault, long_ago
from inprocess_harness import REALTIME, Operator

from disync_operator import types as t
from disync_operator.controller.runtime import Source
from disync_operator.controller.runtime.leader import LeaderElection, NotLeading
from disync_operator.controller.settings import OperatorSettings
from disync_operator.controller.task import DataWorksTask
from disync_operator.dataworks import StaticCredentialsProvider

START, STOP, INFO = "StartDISyncInstance", "StopDISyncInstance", "GetDISyncInstanceInfo"
ON_FAILURE = {**REALTIME, "restartPolicy": "OnFailure"}


# --- one task, one key -------------------------------------------------------------------------------------------


def address(settings: OperatorSettings, region: str | None) -> str | None:
    task = DataWorksTask(settings, StaticCredentialsProvider("LTAIx", "secret"))
    return task.task_address(region, 10000, 700)


def test_region_aliases_of_one_host_are_one_task() -> None:
    regional = OperatorSettings(region="cn-shanghai", metrics_port=0, liveness_port=0)
    # Both in the SDK's map to the central host, and no RegionId travels: DataWorks sees one task.
    assert address(regional, "cn-qingdao") == address(regional, "cn-wuhan") == "dataworks.aliyuncs.com/10000/700"
    assert address(regional, None) == address(regional, "cn-shanghai") == "dataworks.cn-shanghai.aliyuncs.com/10000/700"
    assert address(regional, "cn-hangzhou") != address(regional, "cn-shanghai")
    assert address(regional, "cn-shanghia") is None  # a typo names no task (InvalidSpec says why)
    # With an endpoint override every region goes to one place.
    override = OperatorSettings(endpoint="http://127.0.0.1:8080", metrics_port=0, liveness_port=0)
    assert address(override, "cn-qingdao") == address(override, None) == "127.0.0.1:8080/10000/700"


async def test_the_second_spelling_of_a_task_gets_conflict_and_no_call(operator: Operator) -> None:
    operator.kube.create("first", {**REALTIME, "region": "cn-shanghai"}, namespace="team-a")
    await operator.visit("first", namespace="team-a")
    operator.kube.create("second", REALTIME, namespace="team-b")  # no region: the endpoint override, same task
    await operator.visit("second", namespace="team-b")
    assert operator.dataworks.calls == [(START, 100)]
    assert operator.ready("second", "team-b") == ("False", "Conflict")
    # Deleting the second stops nothing (it holds no finalizer): the task is the first one's.
    body = operator.kube.body("second", "team-b")
    assert "finalizers" not in body["metadata"]
    operator.kube.delete("second", namespace="team-b")
    await operator.gone(body)
    assert operator.dataworks.calls == [(START, 100)]


# --- intents on one clock ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("writer_ahead", [-120, 120, -3600])
async def test_a_start_in_flight_is_waited_out_whatever_the_writers_clock(
    operator: Operator, writer_ahead: int
) -> None:
    """Another process sent the start (its answer still on the way); its clock is off by `writer_ahead` seconds. The
    task is not running yet. Verifying before the lease has run on *this* process's clock could start it twice."""
    since = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=writer_ahead)
    theirs = t.StartIntent(generation=1, since=since, owner="op-b", id="skew")
    operator.kube.create("a", REALTIME, annotations={t.START_INTENT: theirs.annotation()})
    delay = await operator.visit("a")
    assert delay is not None
    assert delay > 29
    operator.clock.advance(29)
    assert (await operator.visit("a", Source.REQUEUE) or 0) > 0.5
    assert operator.dataworks.calls == []
    operator.dataworks.states[100] = "RUN"  # their start lands
    operator.clock.advance(1)
    assert await operator.visit("a", Source.REQUEUE) is None
    assert operator.dataworks.calls == [(INFO, 100)]  # verified, not started again
    assert operator.status("a")["startedGeneration"] == 1


# --- lost answers count ------------------------------------------------------------------------------------------


async def rounds(operator: Operator, count: int) -> None:
    """The backoff and the lease run out, the sweep looks, `count` times."""
    for _ in range(count):
        operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
        operator.clock.advance(31)
        await operator.visit("a", Source.REQUEUE, observe=True)


async def test_never_sends_a_lost_answers_start_again_as_a_network_error(operator: Operator) -> None:
    """Most lost answers are resets before the cloud acted: under Never the start is sent again (with backoff),
    once the lease has run on this process's clock and the live state says it is not running."""
    for _ in range(2):
        operator.dataworks.fail_next(START, Fault(http_status=200, lost=True))
    operator.dataworks.started_state = "NORUN"  # as if the reset came before the cloud acted
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    await rounds(operator, 1)  # verified: not running, so sent again (and lost again)
    operator.dataworks.started_state = "WAIT"
    await rounds(operator, 1)  # verified: not running, sent again: answered this time
    assert operator.dataworks.count(START) == 3
    assert operator.ready("a")[0] == "True"
    await rounds(operator, 2)
    assert operator.dataworks.count(START) == 3


async def test_on_failure_counts_lost_answers_against_the_hourly_cap(operator: Operator) -> None:
    cap = operator.rt.settings.max_restarts_per_hour
    operator.dataworks.started_state = "NORUN"
    for _ in range(40):
        operator.dataworks.fail_next(START, Fault(lost=True))
    operator.kube.create("a", ON_FAILURE)
    await operator.visit("a")
    await rounds(operator, 4 * cap)
    assert operator.dataworks.count(START) == 1 + cap
    status = operator.status("a")
    assert status["restarts"] == cap
    assert operator.ready("a") == ("False", "RestartLimitReached")


async def test_a_5xx_answer_is_no_start_made(operator: Operator) -> None:
    """The cloud answered (a 5xx): found stopped, the start is sent again (a lost answer is what counts)."""
    operator.dataworks.fail_next(START, Fault(http_status=503, code="ServiceUnavailable"))
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    await rounds(operator, 1)
    assert operator.dataworks.calls[:3] == [(START, 100), (INFO, 100), (START, 100)]
    assert operator.dataworks.count(START) == 2
    assert operator.ready("a")[0] == "True"


# --- leaving ObserveOnly or suspend: one rule ---------------------------------------------------------------------


def start_params(operator: Operator) -> list[Any]:
    return [json.loads(p["StartParam"]) for p in operator.dataworks.params if "StartParam" in p]


@pytest.mark.parametrize("detour", ["managementPolicy", "suspend"])
async def test_start_parameters_changed_during_a_detour_are_started_once(operator: Operator, detour: str) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    operator.dataworks.states[100] = "RUN"
    away: dict[str, Any] = {"managementPolicy": "ObserveOnly"} if detour == "managementPolicy" else {"suspend": True}
    new = {**REALTIME, "startParam": {"errorLimit": {"record": 7}}}
    operator.kube.edit("a", spec={**REALTIME, **away})
    await operator.visit("a")
    operator.kube.edit("a", spec={**new, **away})
    await operator.visit("a")
    if detour == "suspend":
        operator.dataworks.states[100] = "RUN"  # started again in the console meanwhile: runs with old parameters
    operator.kube.edit("a", spec=new)
    await operator.visit("a")
    assert operator.dataworks.count(START) == 2
    assert start_params(operator)[-1] == {"errorLimit": {"record": 7}}
    assert operator.status("a")["startedGeneration"] == 4
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 2


async def test_unchanged_parameters_are_adopted_without_a_start(operator: Operator) -> None:
    operator.kube.create("a", REALTIME)
    await operator.visit("a")
    operator.dataworks.states[100] = "RUN"
    operator.kube.edit("a", spec={**REALTIME, "managementPolicy": "ObserveOnly"})
    await operator.visit("a")
    operator.kube.edit("a", spec=REALTIME)
    await operator.visit("a")
    assert operator.dataworks.count(START) == 1
    assert operator.ready("a") == ("True", "Adopted")


# --- a leader that lost its Lease --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def elect(kube: FakeKube, clock: Clock, who: str) -> LeaderElection:
    return LeaderElection(
        kube,
        namespace="ns",
        name="lease",
        identity=who,
        lease_duration=15,
        renew_deadline=10,
        retry_period=2,
        clock=clock,
    )


@pytest.mark.parametrize("how", ["deleted", "taken"])
async def test_a_leader_that_sees_another_holder_stops_at_its_next_renewal(how: str) -> None:
    kube, clock = FakeKube(), Clock()
    a = elect(kube, clock, "a")
    assert await a.acquire(asyncio.Event())
    assert a.may_act()
    del kube.leases[("ns", "lease")]  # by hand, or pruned by a GitOps tool
    if how == "taken":
        b = elect(kube, clock, "b")
        assert await b.try_acquire_or_renew()  # the standby creates it anew at once
    with pytest.raises(NotLeading):
        await a.renew()
    holding = asyncio.create_task(a.hold())
    clock.now += 2
    await asyncio.wait_for(holding, 5)  # returned at the first renewal, not the renew deadline
    assert not a.leading
    assert not a.may_act()


async def test_a_leader_frozen_past_its_deadline_may_not_act_when_thawed() -> None:
    kube, clock = FakeKube(), Clock()
    a = elect(kube, clock, "a")
    assert await a.acquire(asyncio.Event())
    clock.now += 9.9
    assert a.may_act()
    clock.now += 0.2  # SIGSTOP, then SIGCONT: the monotonic clock ran on
    assert not a.may_act()


async def test_no_call_and_no_write_once_the_lease_is_not_confirmed(operator: Operator) -> None:
    kube, clock = operator.kube, Clock()
    election = elect(kube, clock, "op-test/1")
    assert await election.acquire(asyncio.Event())
    operator.rt.lead_by(election)
    operator.kube.create("a", REALTIME)
    clock.now += 11  # the last renewal is older than the renew deadline
    await operator.visit("a")
    assert operator.dataworks.calls == []
    assert operator.kube.writes == []
    assert operator.kube.events == []
    clock.now += 1
    assert await election.renew()  # confirmed again: the object is looked at again and started
    assert operator.rt.requeue.due_in(operator.kube.body("a")["metadata"]["uid"]) is not None
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100)]


async def test_a_released_lease_lets_reconciles_in_flight_finish_for_the_grace_only() -> None:
    """SIGTERM: the Lease is released at once (the standby leads within a second) and no new reconcile is handed out;
    the ones in flight may still record the outcome of their calls for the drain's grace, then nothing."""
    kube, clock = FakeKube(), Clock()
    a = elect(kube, clock, "a")
    assert await a.acquire(asyncio.Event())
    await a.release(grace=2)
    assert not a.leading
    assert a.may_act()
    clock.now += 2
    assert not a.may_act()
