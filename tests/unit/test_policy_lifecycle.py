"""The lifecycle rules as pure logic: suspend's exactly-once stop, the start decision's take-over and carry-over,
restarts and their hourly cap, the pause condition."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from disync_operator.controller import policy
from disync_operator.controller.policy import Action, Lifecycle, Reason, RestartAction, StopAction, SuspendAction
from disync_operator.dataworks import InstanceInfoData, InstanceInfoResponse, ServerError
from disync_operator.types import (
    PAUSED,
    DISyncInstanceSpec,
    DISyncInstanceStatus,
    StartIntent,
    StopIntent,
    TaskType,
)

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
LEASE = 30.0
REALTIME: dict[str, Any] = {"projectId": 1, "taskType": "DI_REALTIME", "fileId": 2, "startParam": {}}


def status(**fields: object) -> DISyncInstanceStatus:
    return DISyncInstanceStatus.model_validate(fields)


def spec(**changes: object) -> DISyncInstanceSpec:
    return DISyncInstanceSpec.model_validate({**REALTIME, **changes})


def start_intent(generation: int, seconds_ago: float = 0, **fields: Any) -> StartIntent:
    return StartIntent(generation=generation, since=T0 - dt.timedelta(seconds=seconds_ago), owner="op", **fields)


def stop_intent(generation: int, seconds_ago: float = 0, **fields: Any) -> StopIntent:
    return StopIntent(generation=generation, since=T0 - dt.timedelta(seconds=seconds_ago), owner="op", **fields)


def info(state: str) -> InstanceInfoResponse:
    return InstanceInfoResponse(request_id="R", success=True, data=InstanceInfoData(status=state))


def ready(reason: str, state: str = "False", generation: int = 1) -> dict[str, Any]:
    return {
        "type": "Ready",
        "status": state,
        "reason": reason,
        "message": "m",
        "observedGeneration": generation,
        "lastTransitionTime": T0,
    }


# --- pause and the lifecycle label ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("True", False), ("false", False), ("", False)])
def test_only_true_pauses(value: str, expected: bool) -> None:
    assert policy.paused({PAUSED: value}) is expected
    assert policy.paused({}) is False


def test_the_lifecycle_label_puts_pause_first() -> None:
    assert policy.lifecycle(spec(suspend=True), {PAUSED: "true"}) is Lifecycle.PAUSED
    assert policy.lifecycle(spec(suspend=True), {}) is Lifecycle.SUSPENDED
    assert policy.lifecycle(spec(managementPolicy="ObserveOnly"), {}) is Lifecycle.OBSERVE_ONLY
    assert policy.lifecycle(spec(), {}) is None
    assert policy.lifecycle(None, {}) is None


def test_the_pause_condition_is_written_once_and_only_synced() -> None:
    before = status(conditions=[ready("Running", "True")])
    update = policy.paused_condition(before, 3, deletion_waits=False, at=T0)
    assert update is not None
    assert set(update.model_fields_set) == {"conditions"}
    after = update.applied_to(before)
    synced = after.condition(policy.SYNCED)
    assert synced is not None
    assert (synced.status, synced.reason, synced.observed_generation) == ("False", Reason.RECONCILE_PAUSED, 3)
    assert after.condition(policy.READY) == before.condition(policy.READY)
    assert policy.paused_condition(after, 4, deletion_waits=False, at=T0) is None  # a spec change: no write
    waits = policy.paused_condition(after, 4, deletion_waits=True, at=T0)
    assert waits is not None
    said = waits.applied_to(after).condition(policy.SYNCED)
    assert said is not None
    assert "deletion waits" in said.message


def test_unpausing_gives_synced_back_what_ready_says() -> None:
    ok = policy.paused_condition(status(conditions=[ready("Running", "True")]), 1, False, T0)
    bad = policy.paused_condition(status(conditions=[ready("AccessDenied")]), 1, False, T0)
    assert ok is not None
    assert bad is not None
    for update, expected in ((ok, ("True", Reason.RECONCILE_SUCCESS)), (bad, ("False", Reason.RECONCILE_ERROR))):
        paused = update.applied_to(status())
        restored = policy.unpaused(paused, 2, T0)
        assert restored is not None
        synced = restored.applied_to(paused).condition(policy.SYNCED)
        assert synced is not None
        assert (synced.status, synced.reason) == expected
    assert policy.unpaused(status(conditions=[ready("Running", "True")]), 1, T0) is None


# --- suspend -------------------------------------------------------------------------------------------------------


def suspend(st: DISyncInstanceStatus, generation: int = 2, **intents: Any) -> policy.SuspendDecision:
    return policy.decide_suspend(
        generation=generation,
        status=st,
        start_intent=intents.get("start"),
        stop_intent=intents.get("stop"),
        lease=policy.IntentLease(LEASE, lambda intent: (T0 - intent.since).total_seconds()),
        at=T0,
    )


def test_a_started_task_is_stopped_once() -> None:
    assert suspend(status(started_generation=1)).action is SuspendAction.STOP
    assert suspend(status(started_generation=1, stopped_generation=2)).action is SuspendAction.NOTHING
    # New parameters while suspended (generation 3): still stopped, nothing to call.
    assert suspend(status(started_generation=1, stopped_generation=2), 3).action is SuspendAction.NOTHING
    # Resumed (3) and suspended again (4): stopped again.
    assert suspend(status(started_generation=3, stopped_generation=2), 4).action is SuspendAction.STOP


def test_a_task_never_started_is_stopped_once_too() -> None:
    assert suspend(status(), 1).action is SuspendAction.STOP
    assert suspend(status(stopped_generation=1), 1).action is SuspendAction.NOTHING


def test_a_start_with_no_known_outcome_counts_as_a_start() -> None:
    """Stopped at 1, resumed at 2 with a start whose outcome is unknown, suspended at 3: stop again."""
    st = status(stopped_generation=1, answered_intent="old")
    decision = suspend(st, 3, start=start_intent(2, seconds_ago=3600, id="new"))
    assert decision.action is SuspendAction.STOP


def test_a_start_in_flight_is_waited_out_before_a_stop() -> None:
    decision = suspend(status(), 2, start=start_intent(1, seconds_ago=10, id="s"))
    assert decision.action is SuspendAction.WAIT
    assert decision.wait_seconds == pytest.approx(20)


def test_a_stop_with_no_known_outcome_is_waited_out_then_verified() -> None:
    st = status(started_generation=1)
    fresh = suspend(st, stop=stop_intent(2, seconds_ago=5, id="t"))
    assert (fresh.action, fresh.wait_seconds) == (SuspendAction.WAIT, pytest.approx(25))
    assert suspend(st, stop=stop_intent(2, seconds_ago=60, id="t")).action is SuspendAction.VERIFY
    ended = status(started_generation=1, unverified_stop_intent=stop_intent(2, id="t", call_ended=True))
    assert suspend(ended).action is SuspendAction.VERIFY  # an HTTP answer: nothing in flight
    # An older suspension's stop, from before the last start, is no news.
    old = status(started_generation=3, stopped_generation=2, answered_stop_intent="x")
    assert suspend(old, 4, stop=stop_intent(2, seconds_ago=5, id="t")).action is SuspendAction.STOP


def test_a_failed_stop_backs_off_in_status() -> None:
    st = status(started_generation=1, observed_generation=2, next_retry_time=T0 + dt.timedelta(seconds=4))
    decision = suspend(st)
    assert (decision.action, decision.wait_seconds) == (SuspendAction.WAIT, pytest.approx(4))


@pytest.mark.parametrize(
    ("state", "took_effect"), [("KILLING", True), ("PAUSE", True), ("NORUN", True), ("RUN", False)]
)
def test_a_stop_took_effect_unless_the_task_runs(state: str, took_effect: bool) -> None:
    assert policy.stop_took_effect(info(state)) is took_effect
    assert policy.stop_took_effect(info("WAIT")) is False


def test_the_stop_answers_the_stop_intent_and_an_open_start_intent() -> None:
    update = policy.suspended(
        status(started_generation=1, stop_attempts=2),
        2,
        T0,
        verified_state="PAUSE",
        stop_intent=stop_intent(2, id="t"),
        start_intent=start_intent(1, id="s"),
    )
    assert update.stopped_generation == 2
    assert (update.answered_stop_intent, update.answered_intent, update.unverified_intent) == ("t", "s", None)
    assert update.stop_attempts == 0
    assert update.instance_state == "PAUSE"


def test_a_failed_stop_keeps_its_intent_unverified_only_if_it_may_have_stopped() -> None:
    error = ServerError("boom", http_status=503, code="ServiceUnavailable")
    kept = policy.suspend_failed(status(), 2, error, 1.0, T0, unverified=stop_intent(2, id="t"), answered=None)
    assert kept.unverified_stop_intent is not None
    assert kept.unverified_stop_intent.call_ended is True
    assert kept.stop_attempts == 1
    assert kept.next_retry_time == T0 + dt.timedelta(seconds=1)


# --- the start decision: adopt, carry over, wait for a stop --------------------------------------------------------


def decide(st: DISyncInstanceStatus, generation: int = 2, **kwargs: Any) -> policy.StartDecision:
    return policy.decide_start(
        generation=generation,
        status=st,
        credentials_version="v",
        lease=policy.IntentLease(LEASE, lambda intent: (T0 - intent.since).total_seconds()),
        at=T0,
        spec_digest=kwargs.pop("digest", "d1"),
        **kwargs,
    )


def test_only_lifecycle_changes_carry_the_start_over() -> None:
    st = status(started_generation=1, started_spec_digest="d1")
    assert decide(st).action is Action.CARRY
    assert decide(st, digest="d2").action is Action.START  # new start parameters
    assert decide(st, digest=None).action is Action.START  # no digest known: as before lifecycle fields
    assert decide(status(started_generation=1)).action is Action.START  # started by an older version
    # Stopped by a suspend since: the resume reads the live state first (the task may still be stopping), then starts.
    assert decide(status(started_generation=1, started_spec_digest="d1", stopped_generation=2), 3).action is (
        Action.VERIFY
    )
    pending = status(started_generation=1, started_spec_digest="d1")
    assert decide(pending, 3, stop_intent=stop_intent(2, seconds_ago=60, id="t")).action is Action.START


def test_a_stop_in_flight_is_waited_out_before_a_start() -> None:
    decision = decide(status(started_generation=1, started_spec_digest="d1"), 3, stop_intent=stop_intent(2, 5, id="t"))
    assert (decision.action, decision.wait_seconds) == (Action.WAIT, pytest.approx(25))


def test_full_after_observe_only_adopts() -> None:
    assert decide(status(observe_only_generation=1)).action is Action.ADOPT
    assert decide(status(started_generation=1, observe_only_generation=2), 3).action is Action.ADOPT
    assert decide(status(started_generation=3, observe_only_generation=2), 4, digest="x").action is Action.START


def test_adopted_records_the_start_without_a_start_time() -> None:
    update = policy.started(status(), 2, None, "v", T0, verified_state="RUN", spec_digest="d", adopted=True)
    assert update.started_generation == 2
    assert update.started_spec_digest == "d"
    assert "last_start_time" not in update.model_fields_set
    after = update.applied_to(status())
    condition = after.condition(policy.READY)
    assert condition is not None
    assert (condition.status, condition.reason) == ("True", Reason.ADOPTED)


def test_a_carry_over_keeps_what_ready_said() -> None:
    st = status(started_generation=1, conditions=[ready("Running", "True")])
    after = policy.carried_over(st, 2, T0).applied_to(st)
    condition = after.condition(policy.READY)
    assert condition is not None
    assert (condition.reason, condition.observed_generation, after.started_generation) == (Reason.RUNNING, 2, 2)


def test_deletion_stops_what_a_suspend_has_not() -> None:
    assert policy.decide_stop(spec(), status(started_generation=1, stopped_generation=2), None) is StopAction.RELEASE
    assert policy.decide_stop(spec(), status(started_generation=3, stopped_generation=2), None) is StopAction.STOP
    observe_only = spec(managementPolicy="ObserveOnly")
    assert policy.decide_stop(observe_only, status(started_generation=1), None) is StopAction.RELEASE
    assert not policy.needs_finalizer(observe_only)


# --- restart on failure --------------------------------------------------------------------------------------------


def stopped_after_start(**fields: Any) -> DISyncInstanceStatus:
    base: dict[str, Any] = {
        "started_generation": 1,
        "instance_state": "PAUSE",
        "last_start_time": T0 - dt.timedelta(minutes=5),
        "last_observed_time": T0 - dt.timedelta(seconds=1),
    }
    return status(**(base | fields))


def restart(st: DISyncInstanceStatus, the_spec: DISyncInstanceSpec | None = None, **kwargs: Any) -> Any:
    return policy.decide_restart(
        generation=1,
        spec=the_spec or spec(restartPolicy="OnFailure"),
        status=st,
        intent=kwargs.get("intent"),
        lease=policy.IntentLease(LEASE, lambda intent: (T0 - intent.since).total_seconds()),
        max_per_hour=kwargs.get("max_per_hour", 3),
        at=T0,
    )


def test_a_restart_is_scheduled_then_waited_for_then_made() -> None:
    assert restart(stopped_after_start()).action is RestartAction.SCHEDULE
    due = T0 + dt.timedelta(seconds=2)
    waiting = restart(stopped_after_start(next_retry_time=due))
    assert (waiting.action, waiting.wait_seconds) == (RestartAction.WAIT, pytest.approx(2))
    decision = restart(stopped_after_start(next_retry_time=T0, restarts=4))
    assert (decision.action, decision.restart) == (RestartAction.RESTART, 5)


@pytest.mark.parametrize(
    ("the_spec", "fields"),
    [
        (spec(), {}),  # restartPolicy Never
        (spec(restartPolicy="OnFailure", suspend=True), {}),  # our own stop
        (spec(restartPolicy="OnFailure"), {"started_generation": None}),  # never started
        (spec(restartPolicy="OnFailure"), {"instance_state": "RUN"}),
        (spec(restartPolicy="OnFailure"), {"instance_state": "KILLING"}),  # still stopping
        # The state was read before the last start: it says nothing about the task now.
        (spec(restartPolicy="OnFailure"), {"last_observed_time": T0 - dt.timedelta(minutes=10)}),
    ],
)
def test_no_restart_without_a_failure_of_a_task_we_started(the_spec: DISyncInstanceSpec, fields: Any) -> None:
    assert restart(stopped_after_start(**fields), the_spec).action is RestartAction.NOTHING


def test_the_hourly_cap() -> None:
    times = [T0 - dt.timedelta(minutes=m) for m in (50, 30, 10)]
    limited = restart(stopped_after_start(restart_times=times, restarts=3))
    assert limited.action is RestartAction.LIMIT
    assert limited.wait_seconds == pytest.approx(600)  # when the one of 50 minutes ago is an hour old
    older = [T0 - dt.timedelta(minutes=m) for m in (70, 30, 10)]
    assert restart(stopped_after_start(restart_times=older, restarts=3)).action is RestartAction.SCHEDULE


def test_a_restart_with_no_known_outcome_is_waited_out_then_verified() -> None:
    fresh = restart(stopped_after_start(), intent=start_intent(1, 5, id="r", restart=1))
    assert (fresh.action, fresh.restart) == (RestartAction.WAIT, 1)
    late = restart(stopped_after_start(), intent=start_intent(1, 60, id="r", restart=1))
    assert (late.action, late.restart) == (RestartAction.VERIFY, 1)
    # Answered (status.restarts says it took effect): no news.
    done = restart(stopped_after_start(restarts=1, answered_intent="r"), intent=start_intent(1, 60, id="r", restart=1))
    assert done.action is RestartAction.SCHEDULE


def test_a_restart_counts_and_keeps_the_last_hour_only() -> None:
    old = T0 - dt.timedelta(minutes=90)
    recent = T0 - dt.timedelta(minutes=20)
    update = policy.restarted(status(restarts=2, restart_times=[old, recent]), 1, 3, T0)
    assert (update.restarts, update.last_restart_time, update.restart_times) == (3, T0, [recent, T0])
    assert update.last_start_time == T0  # the state read before it says nothing about the task any more
    assert update.next_retry_time is None


def test_a_restarted_task_stays_not_running_while_it_is_stopped() -> None:
    """RestartScheduled and RestartLimitReached are what is done about NotRunning: a look that finds the task still
    stopped leaves them, and one that finds it running again clears the scheduled restart."""
    st = stopped_after_start(conditions=[ready("RestartScheduled")], next_retry_time=T0)
    assert policy.observed(st, 1, TaskType.DI_REALTIME, info("PAUSE"), T0).update is None
    assert policy.observed(st, 1, TaskType.DI_REALTIME, info("PAUSE"), T0).drift is None
    running = policy.observed(st, 1, TaskType.DI_REALTIME, info("RUN"), T0).update
    assert running is not None
    assert running.next_retry_time is None
    assert "next_retry_time" in running.model_fields_set


def test_not_running_says_the_newest_state() -> None:
    st = stopped_after_start(conditions=[ready("NotRunning")])
    update = policy.observed(st, 1, TaskType.DI_REALTIME, info("NORUN"), T0).update
    assert update is not None
    condition = update.applied_to(st).condition(policy.READY)
    assert condition is not None
    assert "NORUN" in condition.message
