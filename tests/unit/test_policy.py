"""The reconcile policy as pure logic: backoff, the exactly-once decision, conditions, status updates."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import pytest

from disync_operator.controller import policy
from disync_operator.controller.policy import Action, Backoff, Reason
from disync_operator.dataworks import (
    AccessDeniedError,
    ActionData,
    ActionResponse,
    ClockSkewError,
    InstanceInfoData,
    InstanceInfoResponse,
    OperationFailedError,
    ServerError,
    SolutionInfo,
    ThrottlingError,
    TransportError,
)
from disync_operator.types import DISyncInstanceStatus, StartIntent, TaskType

T0 = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def status(**fields: object) -> DISyncInstanceStatus:
    return DISyncInstanceStatus.model_validate(fields)


# --- backoff --------------------------------------------------------------------------------------------------


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    backoff = Backoff(base=1, factor=2, cap=30, jitter=0.5)
    rng = random.Random(7)
    for attempt, step in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 16), (6, 30), (10, 30)]:
        for _ in range(50):
            delay = backoff.delay(attempt, rng=rng)
            assert step / 2 <= delay <= step


def test_backoff_never_shrinks_from_one_attempt_to_the_next() -> None:
    backoff = Backoff(base=0.5, factor=2, cap=100)
    rng = random.Random(1)
    for attempt in range(1, 8):
        worst_next = min(backoff.delay(attempt + 1, rng=rng) for _ in range(100))
        best_this = max(backoff.delay(attempt, rng=rng) for _ in range(100))
        assert worst_next >= best_this * 0.99


def test_retry_after_is_a_floor_even_above_the_cap() -> None:
    backoff = Backoff(base=1, factor=2, cap=5)
    assert backoff.delay(1, retry_after=42.0) == 42.0
    assert backoff.delay(1, retry_after=0.1) >= 0.5


def test_jitter_spreads_retries() -> None:
    backoff = Backoff(base=1, factor=2, cap=300)
    delays = {round(backoff.delay(6, rng=random.Random(seed)), 3) for seed in range(20)}
    assert len(delays) > 10


# --- the exactly-once decision --------------------------------------------------------------------------------


def seen_since_sent(at: dt.datetime) -> policy.IntentLease:
    """A 30 s lease for a reader that first saw each intent when it was sent (its `since`), now at `at`."""
    return policy.IntentLease(30, lambda intent: (at - intent.since).total_seconds())


def decide(st: DISyncInstanceStatus, generation: int = 1, creds: str = "v1", at: dt.datetime = T0):
    return policy.decide_start(
        generation=generation, status=st, credentials_version=creds, lease=seen_since_sent(at), at=at
    )


def test_a_new_object_is_started() -> None:
    assert decide(status()).action is Action.START


def test_a_started_generation_is_never_started_again() -> None:
    assert decide(status(startedGeneration=3), generation=3).action is Action.NOTHING
    assert decide(status(startedGeneration=3), generation=4).action is Action.START


def test_terminal_failure_waits_for_new_credentials_or_spec() -> None:
    failed = status(failedGeneration=2, credentialsVersion="v1")
    assert decide(failed, generation=2, creds="v1").action is Action.NOTHING
    assert decide(failed, generation=2, creds="v2").action is Action.START
    assert decide(failed, generation=3, creds="v1").action is Action.START


def test_own_pending_start_is_waited_out_then_verified() -> None:
    """Even our own timed-out call may still execute server-side: verify only once the lease has passed."""
    pending = status(unverifiedIntent=StartIntent(generation=1, since=T0, owner="op-a"))
    assert decide(pending, at=T0 + dt.timedelta(seconds=5)).action is Action.WAIT
    assert decide(pending, at=T0 + dt.timedelta(seconds=30)).action is Action.VERIFY


def test_an_answered_intent_is_verified_at_once() -> None:
    """A 5xx came back: nothing is in flight, so the outcome can be checked without waiting for the lease."""
    pending = status(unverifiedIntent=StartIntent(generation=1, since=T0, owner="op-a", call_ended=True))
    assert decide(pending, at=T0 + dt.timedelta(seconds=1)).action is Action.VERIFY


def test_a_5xx_marks_the_intent_answered_but_a_timeout_does_not() -> None:
    before = status(
        unverifiedIntent=StartIntent(generation=1, since=T0, owner="op-a"), attempts=1, observedGeneration=1
    )
    server = ServerError("x", code="InternalError.System", http_status=500)
    answered = policy.retry_scheduled(before, 1, server, 1.0, T0, keep_unverified=True).to_patch()
    assert answered["unverifiedIntent"]["callEnded"] is True
    timeout = TransportError("read timeout", code="ReadTimeout")
    silent = policy.retry_scheduled(before, 1, timeout, 1.0, T0, keep_unverified=True).to_patch()
    # Still unanswered, so the lease applies; and the start counts as made if the task is then found stopped.
    assert silent["unverifiedIntent"]["callEnded"] is False
    assert silent["unverifiedIntent"]["answerLost"] is True
    # A failed verification (a GET) says nothing about the start's answer.
    verify = policy.retry_scheduled(before, 1, timeout, 1.0, T0, keep_unverified=True, count_attempt=True).to_patch()
    assert "unverifiedIntent" not in verify


def test_fresh_foreign_intent_is_respected_until_the_lease_ends() -> None:
    pending = status(unverifiedIntent=StartIntent(generation=1, since=T0, owner="op-old"))
    waiting = decide(pending, at=T0 + dt.timedelta(seconds=10))
    assert waiting.action is Action.WAIT
    assert waiting.wait_seconds == pytest.approx(20)
    assert decide(pending, at=T0 + dt.timedelta(seconds=31)).action is Action.VERIFY


def test_pending_start_of_an_older_generation_does_not_block() -> None:
    pending = status(unverifiedIntent=StartIntent(generation=1, since=T0, owner="op-old"), startedGeneration=1)
    assert decide(pending, generation=2).action is Action.START


def test_the_backoff_in_status_is_kept_then_the_start_retried() -> None:
    """A status write is itself an event: the next look must not retry before nextRetryTime."""
    backing_off = status(observedGeneration=1, attempts=2, nextRetryTime=T0 + dt.timedelta(seconds=8))
    waiting = decide(backing_off, at=T0 + dt.timedelta(seconds=3))
    assert waiting.action is Action.WAIT
    assert waiting.wait_seconds == pytest.approx(5)
    assert decide(backing_off, at=T0 + dt.timedelta(seconds=8, milliseconds=1)).action is Action.START


def test_a_spec_change_ends_the_backoff_of_the_old_generation() -> None:
    backing_off = status(observedGeneration=1, attempts=4, nextRetryTime=T0 + dt.timedelta(seconds=60))
    assert decide(backing_off, generation=2, at=T0).action is Action.START


def test_an_answered_intent_is_verified_when_its_backoff_ends() -> None:
    pending = StartIntent(generation=1, since=T0, owner="op-a", call_ended=True)
    backing_off = status(observedGeneration=1, unverifiedIntent=pending, nextRetryTime=T0 + dt.timedelta(seconds=2))
    assert decide(backing_off, at=T0 + dt.timedelta(seconds=1)).action is Action.WAIT
    assert decide(backing_off, at=T0 + dt.timedelta(seconds=2.5)).action is Action.VERIFY


def info(state: str | None, solution: str | None = None) -> InstanceInfoResponse:
    sol = SolutionInfo(status=solution) if solution is not None else None
    return InstanceInfoResponse(request_id="r", success=True, data=InstanceInfoData(status=state, solution_info=sol))


@pytest.mark.parametrize(
    ("state", "took_effect"), [("RUN", True), ("WAIT", True), ("NORUN", False), ("PAUSE", False), (None, False)]
)
def test_realtime_start_took_effect(state: str | None, took_effect: bool) -> None:
    assert policy.start_took_effect(TaskType.DI_REALTIME, info(state)) is took_effect


@pytest.mark.parametrize(
    ("solution", "took_effect"), [("run", True), ("success", True), ("init", False), ("fail", False)]
)
def test_solution_start_took_effect(solution: str, took_effect: bool) -> None:
    assert policy.start_took_effect(TaskType.DI_SOLUTION, info("success", solution)) is took_effect


@pytest.mark.parametrize(
    ("error", "maybe"),
    [
        (ServerError("boom", code="InternalError.System", http_status=500), True),
        (TransportError("read timeout", code="ReadTimeout"), True),
        (TransportError("refused", code="ConnectError", request_may_have_been_sent=False), False),
        (ThrottlingError("slow down", code="Throttling.User", http_status=429), False),
        (AccessDeniedError("no", code="Forbidden.Access", http_status=403), False),
    ],
)
def test_which_errors_leave_a_start_ambiguous(error: Exception, maybe: bool) -> None:
    assert policy.call_may_have_taken_effect(error) is maybe  # type: ignore[arg-type]


# --- conditions and status ------------------------------------------------------------------------------------


def test_transition_time_moves_only_when_status_changes() -> None:
    first = policy.set_condition([], "Ready", ("False", Reason.RETRY_SCHEDULED, ""), 1, T0)
    later = T0 + dt.timedelta(minutes=1)
    same = policy.set_condition(first, "Ready", ("False", Reason.RETRY_SCHEDULED, "again"), 1, later)
    assert same[0].last_transition_time == T0
    flipped = policy.set_condition(same, "Ready", ("True", Reason.STARTED, ""), 1, later)
    assert flipped[0].last_transition_time == later
    assert flipped[0].reason == "Started"


def test_a_new_intent_is_unique_and_counts_an_attempt() -> None:
    first, second = policy.new_intent(1, "op-a", T0), policy.new_intent(1, "op-a", T0)
    assert first.id != second.id
    assert (first.generation, first.owner, first.since) == (1, "op-a", T0)
    assert policy.after_sending(status(), 1, first).attempts == 1
    assert policy.after_sending(status(attempts=1, observedGeneration=1), 1, first).attempts == 2
    moved_on = policy.after_sending(status(attempts=5, observedGeneration=1, nextRetryTime=T0), 2, first)
    assert (moved_on.attempts, moved_on.observed_generation, moved_on.next_retry_time) == (1, 2, None)
    assert moved_on.unverified_intent == first


def test_an_intent_on_the_object_is_pending_until_a_status_answers_it() -> None:
    claim = policy.new_intent(1, "op-a", T0)

    def decide(
        *, at: dt.datetime = T0 + dt.timedelta(seconds=5), generation: int = 1, **kwargs: Any
    ) -> policy.StartDecision:
        return policy.decide_start(
            generation=generation, credentials_version="v1", lease=seen_since_sent(at), at=at, **kwargs
        )

    # No answer yet: the call may be in flight (lease), then it is verified; never started again blindly.
    assert decide(status=status(), intent=claim).action is Action.WAIT
    assert decide(status=status(), intent=claim, at=T0 + dt.timedelta(seconds=31)).action is Action.VERIFY
    # Answered: the status says what became of it.
    assert decide(status=status(answeredIntent=claim.id), intent=claim).action is Action.START
    kept = status(answeredIntent=claim.id, unverifiedIntent=claim.model_copy(update={"call_ended": True}))
    assert decide(status=kept, intent=claim).action is Action.VERIFY
    # An intent without an id (or an older generation's) does not hold a new start.
    assert decide(status=status(), intent=claim.model_copy(update={"id": None})).action is Action.START
    assert decide(status=status(), intent=claim, generation=2).action is Action.START


def test_the_answer_to_an_intent_carries_what_the_intent_used_to_write() -> None:
    claim = policy.new_intent(2, "op-a", T0)
    before = policy.after_sending(status(attempts=1, observedGeneration=2), 2, claim)
    response = ActionResponse(request_id="REQ-1", success=True, data=ActionData(status="success", message=None))
    done = policy.answer(policy.started(before, 2, response, "v1", T0), before, claim).to_patch()
    assert (done["answeredIntent"], done["unverifiedIntent"], done["attempts"]) == (claim.id, None, 2)
    # An answer that leaves the outcome unknown (no HTTP answer) keeps the intent pending, now in status.
    lost = TransportError("read timeout", request_may_have_been_sent=True)
    unknown = policy.answer(
        policy.retry_scheduled(before, 2, lost, 1.0, T0, keep_unverified=True), before, claim
    ).to_patch()
    assert unknown["unverifiedIntent"]["id"] == claim.id
    assert unknown["unverifiedIntent"]["callEnded"] is False
    assert unknown["observedGeneration"] == 2


def test_started_clears_the_intent_and_reports_the_api_answer() -> None:
    response = ActionResponse(request_id="REQ-1", success=True, data=ActionData(status="success", message=None))
    before = status(unverifiedIntent=StartIntent(generation=2, since=T0, owner="a"), attempts=1, observedGeneration=2)
    patch = policy.started(before, 2, response, "v1", T0).to_patch()
    assert patch["unverifiedIntent"] is None
    assert patch["startedGeneration"] == 2
    assert (patch["status"], patch["message"], patch["requestId"]) == ("success", None, "REQ-1")
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "Started", 2)


def test_api_failure_is_terminal_with_the_api_message() -> None:
    error = OperationFailedError("fail", api_message="fileId:[9] is invalid.", request_id="REQ-2")
    patch = policy.failed_terminally(status(), 1, error, "v1", T0).to_patch()
    assert (patch["status"], patch["message"], patch["failedGeneration"]) == ("fail", "fileId:[9] is invalid.", 1)
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == Reason.START_FAILED
    assert "fileId:[9] is invalid." in ready["message"]


def test_retry_reports_error_and_next_attempt_time() -> None:
    error = ServerError("x", code="InternalError.System", api_message="An internal error occurred.", http_status=500)
    patch = policy.retry_scheduled(
        status(attempts=3, observedGeneration=1), 1, error, 8.0, T0, keep_unverified=True
    ).to_patch()
    assert "unverifiedIntent" not in patch
    assert patch["nextRetryTime"] == "2026-11-28T12:00:08Z"
    assert patch["lastError"] == {"code": "InternalError.System", "httpStatus": 500, "retryable": True}
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "RetryScheduled"
    assert "attempt 3 failed, retrying in 8.0s" in ready["message"]
    cleared = policy.retry_scheduled(status(), 1, error, 1.0, T0, keep_unverified=False).to_patch()
    assert cleared["unverifiedIntent"] is None


def test_clock_skew_says_to_check_the_clock() -> None:
    error = ClockSkewError("skew", code="InvalidTimeStamp.Expired", http_status=400)
    patch = policy.retry_scheduled(status(), 1, error, 1.0, T0, keep_unverified=False).to_patch()
    ready = next(c for c in patch["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ClockSkew"
    assert "clock is probably wrong" in ready["message"]


def test_observation_writes_only_on_change() -> None:
    running = info("RUN")
    first = policy.observed(status(startedGeneration=1), 1, TaskType.DI_REALTIME, running, T0).update
    assert first is not None
    assert first.instance_state == "RUN"
    settled = first.applied_to(status(startedGeneration=1))
    assert policy.observed(settled, 1, TaskType.DI_REALTIME, running, T0).update is None
    drift = policy.observed(settled, 1, TaskType.DI_REALTIME, info("PAUSE"), T0).update
    assert drift is not None
    ready = next(c for c in drift.to_patch()["conditions"] if c["type"] == "Ready")  # type: ignore[attr-defined]
    assert (ready["status"], ready["reason"]) == ("False", "NotRunning")
