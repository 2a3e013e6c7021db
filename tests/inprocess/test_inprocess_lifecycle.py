"""The declarative lifecycle in-process, one test per branch: suspend (a stop made exactly once), ObserveOnly and its
take-over, restartPolicy OnFailure with its cap, and the pause annotation. The e2e proofs against the real
kube-apiserver and the emulator are in tests/integration/test_lifecycle.py."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from inprocess_fakes import Fault, long_ago
from inprocess_harness import REALTIME, Operator

from disync_operator import types as t
from disync_operator.controller.runtime import Source

START, STOP, INFO = "StartDISyncInstance", "StopDISyncInstance", "GetDISyncInstanceInfo"
SUSPENDED = {**REALTIME, "suspend": True}
OBSERVE_ONLY = {**REALTIME, "managementPolicy": "ObserveOnly"}
ON_FAILURE = {**REALTIME, "restartPolicy": "OnFailure"}
PAUSED = {t.PAUSED: "true"}


def annotation(op: Operator, name: str, key: str) -> dict[str, Any]:
    return json.loads(op.kube.objects[("default", name)]["metadata"]["annotations"][key])


def synced(op: Operator, name: str) -> tuple[str, str]:
    cond = next(c for c in op.status(name)["conditions"] if c["type"] == "Synced")
    return cond["status"], cond["reason"]


def metric(op: Operator, name: str, **labels: str) -> float:
    value = op.rt.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def started(op: Operator, name: str = "a", spec: dict[str, Any] = REALTIME) -> None:
    op.kube.create(name, spec)
    await op.visit(name)
    assert op.dataworks.calls == [(START, 100)]


# --- suspend -------------------------------------------------------------------------------------------------------


async def test_suspend_stops_once_with_the_intent_before_the_call(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    assert await operator.visit("a") is None
    assert operator.dataworks.calls == [(START, 100), (STOP, 100)]
    # One metadata write (the stop intent) before the call, one status write after it, which answers it.
    assert operator.kube.writes == ["metadata", "status", "metadata", "status"]
    status = operator.status("a")
    assert status["answeredStopIntent"] == annotation(operator, "a", t.STOP_INTENT)["id"]
    assert (status["stoppedGeneration"], status["startedGeneration"], status["observedGeneration"]) == (2, 1, 2)
    assert operator.ready("a") == ("False", "Suspended")
    assert synced(operator, "a") == ("True", "ReconcileSuccess")
    assert operator.events() == [("Normal", "Started"), ("Normal", "Suspended")]
    # Looked at again (requeue, echo, sweep): nothing more is called, and no alarm for the stopped task.
    writes = len(operator.kube.writes)
    await operator.visit("a", Source.REQUEUE)
    await operator.visit("a")
    await operator.visit("a", Source.OBSERVE, observe=True)
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100)]
    assert operator.status("a")["instanceState"] == "NORUN"  # recorded quietly
    assert operator.ready("a") == ("False", "Suspended")
    assert len(operator.kube.writes) == writes + 1
    assert operator.events() == [("Normal", "Started"), ("Normal", "Suspended")]


async def test_resume_starts_once(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    await operator.visit("a")
    operator.kube.edit("a", spec=REALTIME)
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100), (START, 100)]
    assert operator.status("a")["startedGeneration"] == 3
    assert operator.ready("a") == ("True", "Started")


async def test_a_resume_waits_while_the_task_is_still_stopping(operator: Operator) -> None:
    """Right after the suspend's stop the task may still be KILLING, and DataWorks answers a start then with "fail"
    (seen in make test): the resume reads the live state first and starts once the task has stopped."""
    operator.dataworks.stopped_state = "KILLING"
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    await operator.visit("a")
    operator.kube.edit("a", spec=REALTIME)
    delay = await operator.visit("a")
    assert delay is not None
    assert delay > 0
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100)]
    assert operator.status("a").get("failedGeneration") is None
    operator.dataworks.states[100] = "NORUN"  # it has stopped
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100), (INFO, 100), (START, 100)]
    assert operator.ready("a") == ("True", "Started")


async def test_a_resume_landing_under_the_suspends_status_write_is_not_lost(operator: Operator) -> None:
    """The status write has no precondition: a user's change that lands just before it is under it. Neither the
    user's event (older than our write) nor our write's echo may then count as done (seen in make test under load:
    the resume was never acted on)."""
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    write_status = operator.kube.patch_status
    events: list[dict[str, Any]] = []

    async def user_resumes_first(namespace: str, name: str, update: t.StatusUpdate) -> dict[str, Any]:
        if not events:
            operator.kube.edit("a", spec=REALTIME)
            events.append(operator.kube.body("a"))  # the watch event of the user's change
        written = await write_status(namespace, name, update)
        events.append(copy.deepcopy(written))  # and our write's own
        return written

    operator.kube.patch_status = user_resumes_first  # type: ignore[method-assign]
    await operator.visit("a")
    operator.kube.patch_status = write_status  # type: ignore[method-assign]
    uid = operator.kube.body("a")["metadata"]["uid"]
    for body in events:  # delivered late, as a watch may
        operator.rt.work.add(uid, body, Source.EVENT)
    await operator.rt.work.settled([uid])
    if operator.rt.requeue.due_in(uid) is not None:
        await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100), (START, 100)]
    assert operator.status("a")["startedGeneration"] == 3
    assert operator.ready("a") == ("True", "Started")


async def test_a_suspend_undone_before_it_was_acted_on_calls_nothing(operator: Operator) -> None:
    """Suspending and resuming is no change of the start parameters: the task still runs from the first start."""
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    operator.kube.edit("a", spec=REALTIME)  # both generations reach the operator as one body
    assert await operator.visit("a") is None
    assert operator.dataworks.calls == [(START, 100)]
    status = operator.status("a")
    assert (status["startedGeneration"], status["observedGeneration"]) == (3, 3)
    assert operator.ready("a") == ("True", "Started")
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["observedGeneration"] == 3


async def test_a_restart_policy_change_alone_starts_nothing(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=ON_FAILURE)
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100)]
    assert operator.status("a")["startedGeneration"] == 2


async def test_new_parameters_while_suspended_start_once_on_resume_with_the_newest(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    await operator.visit("a")
    newer = {**SUSPENDED, "startParam": {"errorLimit": {"record": 7}}}
    operator.kube.edit("a", spec=newer)
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100), (STOP, 100)]  # never a start while suspended
    assert operator.ready("a") == ("False", "Suspended")
    assert operator.status("a")["observedGeneration"] == 3
    operator.kube.edit("a", spec={**newer, "suspend": False})
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100), (START, 100)]
    assert operator.dataworks.params[-1]["StartParam"] == '{"errorLimit":{"record":7}}'


async def test_created_suspended_is_stopped_once_and_gets_no_finalizer(operator: Operator) -> None:
    operator.kube.create("a", SUSPENDED)
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(STOP, 100)]
    assert "finalizers" not in operator.kube.objects[("default", "a")]["metadata"]
    assert operator.ready("a") == ("False", "Suspended")
    operator.kube.edit("a", spec=REALTIME)
    await operator.visit("a")
    assert operator.dataworks.calls == [(STOP, 100), (INFO, 100), (START, 100)]


async def test_a_lost_stop_response_is_waited_out_then_verified_not_repeated(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    operator.dataworks.fail_next(STOP, Fault(lost=True))
    delay = await operator.visit("a")
    assert delay is not None
    status = operator.status("a")
    assert status["unverifiedStopIntent"]["callEnded"] is False  # no answer: the call may still be in flight
    assert operator.ready("a") == ("False", "RetryScheduled")
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    lease_left = await operator.visit("a", Source.REQUEUE)
    assert lease_left is not None
    assert lease_left > 20
    assert operator.dataworks.calls == [(START, 100), (STOP, 100)]
    operator.clock.advance(30)
    assert await operator.visit("a", Source.REQUEUE) is None
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100)]
    status = operator.status("a")
    assert (status["stoppedGeneration"], status["instanceState"]) == (2, "NORUN")
    assert "unverifiedStopIntent" not in status
    assert operator.ready("a") == ("False", "Suspended")


async def test_a_stop_that_did_not_take_effect_is_sent_once_more(operator: Operator) -> None:
    await started(operator)
    operator.dataworks.states[100] = "RUN"
    operator.kube.edit("a", spec=SUSPENDED)
    operator.dataworks.fail_next(STOP, Fault(http_status=503, code="ServiceUnavailable"))
    await operator.visit("a")
    assert operator.status("a")["unverifiedStopIntent"]["callEnded"] is True  # a 5xx: verify at once
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    # The fake's 503 changed nothing: the task runs, so the stop is sent again, once.
    assert operator.dataworks.calls == [(START, 100), (STOP, 100), (INFO, 100), (STOP, 100)]
    assert operator.ready("a") == ("False", "Suspended")
    assert operator.status("a")["stopAttempts"] == 0


async def test_a_stop_answered_fail_means_nothing_to_stop(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    operator.dataworks.fail_next(STOP, Fault(fail_message="the task is not running"))
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(STOP) == 1
    assert operator.ready("a") == ("False", "Suspended")
    assert "the task is not running" in operator.status("a")["conditions"][0]["message"]
    assert operator.events()[-1] == ("Warning", "StopReportedFailure")


async def test_a_stop_refused_for_good_is_retried_every_recheck_and_says_so(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    operator.dataworks.fail_next(STOP, Fault(http_status=403, code="Forbidden.Access"))
    delay = await operator.visit("a")
    assert delay is not None
    assert delay >= 59.9
    assert operator.ready("a") == ("False", "StopFailed")
    assert synced(operator, "a") == ("False", "ReconcileError")
    assert operator.events()[-1] == ("Warning", "StopFailed")
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(STOP) == 2  # refused with a definite answer: nothing to verify
    assert operator.ready("a") == ("False", "Suspended")


async def test_deleting_a_suspended_task_stops_nothing_twice(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", spec=SUSPENDED)
    await operator.visit("a")
    operator.kube.delete("a")
    await operator.visit("a")
    assert ("default", "a") not in operator.kube.objects
    assert operator.dataworks.calls == [(START, 100), (STOP, 100)]


async def test_another_process_stop_in_flight_is_waited_for(operator: Operator) -> None:
    await started(operator)
    theirs = t.StopIntent(generation=2, since=_now(), owner="op-b", id="s1")
    operator.kube.edit("a", spec=SUSPENDED, annotations={t.STOP_INTENT: theirs.annotation()})
    delay = await operator.visit("a")
    assert delay is not None
    assert 25 <= delay <= 30.01
    assert operator.dataworks.calls == [(START, 100)]
    # Resumed meanwhile: the start waits for that stop too (a stop landing after it would undo it).
    operator.kube.edit("a", spec=REALTIME)
    delay = await operator.visit("a")
    assert delay is not None
    assert delay > 20
    assert operator.dataworks.calls == [(START, 100)]


async def test_a_start_in_flight_is_waited_for_before_suspending(operator: Operator) -> None:
    theirs = t.StartIntent(generation=1, since=_now(), owner="op-b", id="x1")
    operator.kube.create("a", SUSPENDED, annotations={t.START_INTENT: theirs.annotation()})
    operator.kube.objects[("default", "a")]["metadata"]["generation"] = 2  # suspended after that start was sent
    delay = await operator.visit("a")
    assert delay is not None
    assert delay > 20
    assert operator.dataworks.calls == []
    # Its lease over: stopped (whatever the start did), and the start intent is answered by that stop.
    operator.clock.advance(30)
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(STOP, 100)]
    assert operator.status("a")["answeredIntent"] == "x1"
    operator.kube.delete("a")  # no finalizer was written by us: nothing holds it
    assert ("default", "a") not in operator.kube.objects


# --- observe only --------------------------------------------------------------------------------------------------


async def test_observe_only_follows_the_live_state_and_calls_nothing_else(operator: Operator) -> None:
    operator.dataworks.states[100] = "RUN"
    operator.kube.create("a", OBSERVE_ONLY)
    assert await operator.visit("a") is None
    assert operator.dataworks.calls == [(INFO, 100)]
    assert "finalizers" not in operator.kube.objects[("default", "a")]["metadata"]
    assert operator.ready("a") == ("True", "Observed")
    status = operator.status("a")
    assert (status["instanceState"], status["observeOnlyGeneration"], status["observedGeneration"]) == ("RUN", 1, 1)
    assert "startedGeneration" not in status
    writes = len(operator.kube.writes)
    for _ in range(3):
        await operator.visit("a", Source.OBSERVE, observe=True)
    assert len(operator.kube.writes) == writes  # nothing changed: nothing written
    operator.dataworks.states[100] = "PAUSE"  # stopped in the console
    await operator.visit("a", Source.OBSERVE, observe=True)
    assert operator.ready("a") == ("False", "NotRunning")
    operator.dataworks.states[100] = "RUN"  # started again in the console
    await operator.visit("a", Source.OBSERVE, observe=True)
    assert operator.ready("a") == ("True", "Observed")
    assert {a for a, _ in operator.dataworks.calls} == {INFO}
    assert operator.events() == [("Warning", "NotRunning")]
    await operator.visit("a", Source.REQUEUE)  # not a sweep, already read at this generation: no call
    assert operator.dataworks.count(INFO) == 6


async def test_observe_only_is_deleted_at_once_without_a_stop(operator: Operator) -> None:
    operator.dataworks.states[100] = "RUN"
    operator.kube.create("a", OBSERVE_ONLY)
    await operator.visit("a")
    last = operator.kube.delete("a")
    assert last is not None
    await operator.gone(last)
    assert operator.dataworks.calls == [(INFO, 100)]
    assert operator.dataworks.states[100] == "RUN"


async def test_observe_only_to_full_on_a_running_task_adopts_it_without_a_start(operator: Operator) -> None:
    operator.dataworks.states[100] = "RUN"
    operator.kube.create("a", OBSERVE_ONLY)
    await operator.visit("a")
    operator.kube.edit("a", spec=REALTIME)
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(INFO, 100), (INFO, 100)]
    assert operator.ready("a") == ("True", "Adopted")
    status = operator.status("a")
    assert (status["startedGeneration"], status["instanceState"]) == (2, "RUN")
    assert operator.events() == [("Normal", "Adopted")]
    # Managed now: its deletion stops what was taken over, as it would what was started.
    assert operator.kube.objects[("default", "a")]["metadata"]["finalizers"] == [t.FINALIZER]
    operator.kube.delete("a")
    await operator.visit("a")
    assert operator.dataworks.calls[-1] == (STOP, 100)
    assert ("default", "a") not in operator.kube.objects


async def test_observe_only_to_full_on_a_stopped_task_starts_it_once(operator: Operator) -> None:
    operator.dataworks.states[100] = "PAUSE"
    operator.kube.create("a", OBSERVE_ONLY)
    await operator.visit("a")
    assert operator.ready("a") == ("False", "NotRunning")
    operator.kube.edit("a", spec=REALTIME)
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(INFO, 100), (INFO, 100), (START, 100)]
    assert operator.ready("a") == ("True", "Started")
    assert operator.kube.objects[("default", "a")]["metadata"]["finalizers"] == [t.FINALIZER]


async def test_full_to_observe_only_lets_go_of_the_finalizer_and_back_adopts(operator: Operator) -> None:
    await started(operator)
    operator.dataworks.states[100] = "RUN"
    operator.kube.edit("a", spec=OBSERVE_ONLY)
    await operator.visit("a")
    assert not operator.kube.objects[("default", "a")]["metadata"].get("finalizers")
    assert operator.ready("a") == ("True", "Observed")
    operator.kube.edit("a", spec=REALTIME)
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100), (INFO, 100), (INFO, 100)]
    assert operator.ready("a") == ("True", "Adopted")


async def test_an_observe_only_resource_claims_no_task(operator: Operator) -> None:
    """It can watch a task another resource manages: no Conflict for either."""
    operator.kube.create("watcher", OBSERVE_ONLY, creationTimestamp="2026-01-01T00:00:00Z")
    operator.kube.create("manager", REALTIME, creationTimestamp="2026-06-01T00:00:00Z")
    await operator.startup()
    await operator.visit("watcher")
    await operator.visit("manager")
    assert operator.dataworks.calls == [(INFO, 100), (START, 100)]
    assert operator.ready("manager") == ("True", "Started")
    operator.dataworks.states[100] = "RUN"
    await operator.visit("watcher", Source.OBSERVE, observe=True)
    assert operator.ready("watcher") == ("True", "Observed")


async def test_observe_only_read_failures_say_so(operator: Operator) -> None:
    operator.dataworks.fail_next(INFO, Fault(http_status=403, code="Forbidden.Access"))
    operator.kube.create("a", OBSERVE_ONLY)
    assert await operator.visit("a") is None
    assert operator.ready("a") == ("False", "AccessDenied")
    assert synced(operator, "a") == ("False", "ReconcileError")
    assert operator.events() == [("Warning", "AccessDenied")]
    operator.dataworks.fail_next(INFO, Fault(http_status=503, code="ServiceUnavailable"))
    delay = await operator.visit("a", Source.OBSERVE, observe=True)
    assert delay is not None
    assert synced(operator, "a") == ("False", "ReconcileError")
    await operator.visit("a", Source.REQUEUE)  # read again: it works now
    assert operator.ready("a") == ("False", "NotRunning")
    assert synced(operator, "a") == ("True", "ReconcileSuccess")
    assert operator.dataworks.calls == [(INFO, 100)] * 3


# --- restart on failure --------------------------------------------------------------------------------------------


async def found_stopped(op: Operator, state: str = "PAUSE") -> float | None:
    op.dataworks.states[100] = state
    return await op.visit("a", Source.OBSERVE, observe=True)


async def test_on_failure_restarts_once_after_the_backoff(operator: Operator) -> None:
    await started(operator, spec=ON_FAILURE)
    delay = await found_stopped(operator)
    assert delay is not None
    assert 0.4 <= delay <= 1.1  # the first step of the start backoff (base 1 s, equal jitter)
    assert operator.ready("a") == ("False", "RestartScheduled")
    assert operator.dataworks.calls == [(START, 100), (INFO, 100)]
    # Looked at again before it is due: nothing is sent.
    assert await operator.visit("a", Source.REQUEUE) is not None
    await found_stopped(operator)
    assert operator.dataworks.count(START) == 1
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    assert await operator.visit("a", Source.REQUEUE) is None
    # Its live state read once more (still stopped), then one start that names the restart.
    assert operator.dataworks.calls[-2:] == [(INFO, 100), (START, 100)]
    assert annotation(operator, "a", t.START_INTENT)["restart"] == 1
    status = operator.status("a")
    assert (status["restarts"], status["startedGeneration"]) == (1, 1)
    assert status["lastRestartTime"] == status["restartTimes"][0]
    assert operator.ready("a") == ("True", "Started")
    assert operator.events() == [("Normal", "Started"), ("Warning", "NotRunning"), ("Warning", "Restarted")]
    assert metric(operator, "disync_restarts_total") == 1
    # Running again: the next looks start nothing.
    operator.dataworks.states[100] = "RUN"
    await operator.visit("a", Source.OBSERVE, observe=True)
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 2


async def test_never_only_reports(operator: Operator) -> None:
    await started(operator)
    assert await found_stopped(operator) is None
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 1
    assert operator.ready("a") == ("False", "NotRunning")


async def test_a_task_started_again_by_someone_is_not_restarted(operator: Operator) -> None:
    await started(operator, spec=ON_FAILURE)
    await found_stopped(operator)
    operator.dataworks.states[100] = "RUN"  # started in the console during the backoff
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 1
    assert operator.ready("a") == ("True", "Running")
    assert "nextRetryTime" not in operator.status("a")
    assert operator.status("a").get("restarts", 0) == 0


async def test_the_hourly_cap_stops_a_restart_loop_and_says_so(
    operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(operator.rt, "settings", operator.rt.settings.model_copy(update={"max_restarts_per_hour": 2}))
    await started(operator, spec=ON_FAILURE)
    for _ in range(2):
        await found_stopped(operator)
        operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
        await operator.visit("a", Source.REQUEUE)
    assert operator.status("a")["restarts"] == 2
    delay = await found_stopped(operator)
    assert delay is not None
    assert delay > 3500  # until the first of the two is an hour old
    assert operator.ready("a") == ("False", "RestartLimitReached")
    message = operator.status("a")["conditions"][0]["message"]
    assert "2 restarts in the last hour" in message
    assert "DISYNC_MAX_RESTARTS_PER_HOUR" in message
    for _ in range(3):
        await operator.visit("a", Source.OBSERVE, observe=True)
        await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 3
    assert [r for _, r in operator.events()].count("RestartLimitReached") == 1
    # An hour later there is room again.
    hour_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1, seconds=5)).isoformat()
    operator.kube.edit_status("a", {"restartTimes": [hour_ago, hour_ago]})
    await operator.visit("a", Source.OBSERVE, observe=True)
    assert operator.ready("a") == ("False", "RestartScheduled")
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 4
    assert operator.status("a")["restarts"] == 3


async def test_a_lost_restart_response_is_verified_not_repeated(operator: Operator) -> None:
    await started(operator, spec=ON_FAILURE)
    await found_stopped(operator)
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    operator.dataworks.fail_next(START, Fault(lost=True))
    await operator.visit("a", Source.REQUEUE)
    assert operator.status("a").get("restarts", 0) == 0
    assert operator.ready("a") == ("False", "RetryScheduled")
    operator.kube.edit_status("a", {"nextRetryTime": long_ago()})
    assert (await operator.visit("a", Source.REQUEUE) or 0) > 20  # the lease
    operator.clock.advance(30)
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 2  # the first start and the one restart
    assert operator.status("a")["restarts"] == 1
    assert operator.ready("a") == ("True", "Started")


async def test_a_suspended_task_is_never_restarted(operator: Operator) -> None:
    await started(operator, spec=ON_FAILURE)
    operator.kube.edit("a", spec={**ON_FAILURE, "suspend": True})
    await operator.visit("a")
    for _ in range(3):
        await found_stopped(operator)
        await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 1
    assert operator.ready("a") == ("False", "Suspended")
    # Resumed: one start, and the operator's own stop is not counted as a failure.
    operator.kube.edit("a", spec=ON_FAILURE)
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.count(START) == 2
    assert operator.status("a").get("restarts", 0) == 0


# --- pause ---------------------------------------------------------------------------------------------------------


async def test_paused_makes_no_call_and_writes_only_its_condition(operator: Operator) -> None:
    operator.kube.create("a", REALTIME, annotations=PAUSED)
    assert await operator.visit("a") is None
    assert operator.dataworks.calls == []
    assert operator.kube.writes == ["status"]
    status = operator.status("a")
    assert [c["type"] for c in status["conditions"]] == ["Synced"]
    assert synced(operator, "a") == ("False", "ReconcilePaused")
    assert "finalizers" not in operator.kube.objects[("default", "a")]["metadata"]
    for record in (2, 3, 4):  # its spec changes while it is paused
        operator.kube.edit("a", spec={**REALTIME, "startParam": {"errorLimit": {"record": record}}})
        await operator.visit("a")
        await operator.visit("a", Source.OBSERVE, observe=True)
        await operator.visit("a", Source.SWEEP)
    assert operator.dataworks.calls == []
    assert operator.kube.writes == ["status"]
    assert metric(operator, "disync_instances_lifecycle", lifecycle="paused") == 1
    # Unpaused: the newest spec, once.
    operator.kube.edit("a", annotations={t.PAUSED: None})
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert operator.dataworks.calls == [(START, 100)]
    assert operator.dataworks.params[0]["StartParam"] == '{"errorLimit":{"record":4}}'
    assert synced(operator, "a") == ("True", "ReconcileSuccess")
    assert operator.status("a")["startedGeneration"] == 4
    assert metric(operator, "disync_instances_lifecycle", lifecycle="paused") == 0


async def test_a_paused_started_task_keeps_its_ready_condition(operator: Operator) -> None:
    await started(operator, spec=ON_FAILURE)
    operator.kube.edit("a", annotations=PAUSED)
    await operator.visit("a")
    assert operator.ready("a") == ("True", "Started")
    assert synced(operator, "a") == ("False", "ReconcilePaused")
    await found_stopped(operator)  # no restart, no read: hands off
    operator.kube.edit("a", spec={**ON_FAILURE, "suspend": True})
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100)]
    operator.kube.edit("a", annotations={t.PAUSED: "false"})  # only "true" pauses
    await operator.visit("a")
    assert operator.dataworks.calls == [(START, 100), (STOP, 100)]
    assert synced(operator, "a") == ("True", "ReconcileSuccess")


async def test_deleting_a_paused_object_waits_and_says_so(operator: Operator) -> None:
    await started(operator)
    operator.kube.edit("a", annotations=PAUSED)
    await operator.visit("a")
    operator.kube.delete("a")
    await operator.visit("a")
    await operator.visit("a", Source.REQUEUE)
    assert ("default", "a") in operator.kube.objects
    assert operator.dataworks.calls == [(START, 100)]
    message = next(c for c in operator.status("a")["conditions"] if c["type"] == "Synced")["message"]
    assert "deletion waits" in message
    operator.kube.edit("a", annotations={t.PAUSED: None})
    await operator.visit("a")
    assert ("default", "a") not in operator.kube.objects
    assert operator.dataworks.calls == [(START, 100), (STOP, 100)]


async def test_the_lifecycle_gauge_counts_each_object_once(operator: Operator) -> None:
    operator.dataworks.states[100] = "RUN"
    operator.kube.create("o", OBSERVE_ONLY)
    operator.kube.create("s", {**SUSPENDED, "fileId": 101})
    operator.kube.create("p", {**SUSPENDED, "fileId": 102}, annotations=PAUSED)
    for name in ("o", "s", "p", "o", "s"):
        await operator.visit(name)
    values = {
        lifecycle: metric(operator, "disync_instances_lifecycle", lifecycle=lifecycle)
        for lifecycle in ("observe_only", "suspended", "paused")
    }
    assert values == {"observe_only": 1, "suspended": 1, "paused": 1}
    last = operator.kube.delete("o")
    assert last is not None
    await operator.gone(last)
    assert metric(operator, "disync_instances_lifecycle", lifecycle="observe_only") == 0


def _now(offset: float = 0.0) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)
