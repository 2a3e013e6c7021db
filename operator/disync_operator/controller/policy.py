"""Reconcile policy as pure functions: backoff, the exactly-once start decision, conditions, status updates.

Nothing here talks to Kubernetes or DataWorks; the handlers feed it facts and apply what it returns. That keeps the
rules that matter (never two starts per generation, when to retry, what each condition says) in one place and
testable without a cluster.
"""

from __future__ import annotations

import datetime as dt
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from disync_operator.dataworks import (
    AccessDeniedError,
    ActionResponse,
    AuthenticationError,
    ClockSkewError,
    CredentialsError,
    DataWorksError,
    InstanceInfoResponse,
    InvalidParameterError,
    OperationFailedError,
    ThrottlingError,
    TransportError,
)
from disync_operator.types import (
    Condition,
    ConditionStatus,
    DeletionPolicy,
    DISyncInstanceSpec,
    DISyncInstanceStatus,
    LastError,
    PendingStart,
    TaskType,
)

READY = "Ready"
SYNCED = "Synced"


class Reason(StrEnum):
    """Condition reasons. Terminal ones wait for a spec or credentials change; the others resolve on their own."""

    # Ready=True
    RUNNING = "Running"
    STARTED = "Started"
    # Ready=False or Unknown, transient
    RETRY_SCHEDULED = "RetryScheduled"
    CLOCK_SKEW = "ClockSkew"
    DELETING = "Deleting"
    # Ready=False, terminal
    START_FAILED = "StartFailed"
    INVALID_SPEC = "InvalidSpec"
    INVALID_PARAMETER = "InvalidParameter"
    ACCESS_DENIED = "AccessDenied"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    CREDENTIALS_UNAVAILABLE = "CredentialsUnavailable"
    NOT_RUNNING = "NotRunning"
    STOP_FAILED = "StopFailed"
    # Synced
    RECONCILE_SUCCESS = "ReconcileSuccess"
    RECONCILE_ERROR = "ReconcileError"


TERMINAL_REASONS = frozenset(
    {
        Reason.START_FAILED,
        Reason.INVALID_SPEC,
        Reason.INVALID_PARAMETER,
        Reason.ACCESS_DENIED,
        Reason.AUTHENTICATION_FAILED,
        Reason.CREDENTIALS_UNAVAILABLE,
    }
)

# Live states of a real-time task that mean "the start took effect".
STARTED_STATES = frozenset({"RUN", "WAIT"})
RUNNING_STATES = frozenset({"RUN"})


def now() -> dt.datetime:
    """Milliseconds: leases and backoffs are measured in them (whole seconds would end a lease up to 1 s early)."""
    at = dt.datetime.now(dt.UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


# --- backoff -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter and a cap: attempt n waits about base*factor^(n-1), never more than cap.

    "Equal jitter": half the delay is fixed, half random, so retries of many CRs spread out while each still waits
    at least half its step. A server's retry-after is a floor, even above the cap: the server knows best.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
        step = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        spread = step * self.jitter
        value = step - spread + (rng or random).uniform(0, spread)
        return max(value, retry_after or 0.0)


# --- the exactly-once start decision ----------------------------------------------------------------------------


class Action(StrEnum):
    NOTHING = "nothing"  # already started (or terminally failed) for this generation and these credentials
    WAIT = "wait"  # a fresh start intent is in flight, or the backoff of a failed attempt runs: look again later
    VERIFY = "verify"  # a start may have happened (crash or lost response): ask GetDISyncInstanceInfo first
    START = "start"


@dataclass(frozen=True)
class StartDecision:
    action: Action
    wait_seconds: float = 0.0
    why: str = ""


def unanswered(status: DISyncInstanceStatus, claim: PendingStart | None) -> PendingStart | None:
    """The start whose outcome is unknown, if any: the intent on the object (`claim`) until a status write answers
    it, else what the status keeps (an answer that left the outcome unknown)."""
    if claim is not None and claim.id is not None and claim.id != status.answered_intent:
        return claim
    return status.pending_start


def claimed(status: DISyncInstanceStatus, generation: int, claim: PendingStart) -> DISyncInstanceStatus:
    """The status as the outcome of `claim`'s call is computed from: one more attempt, the claim pending."""
    attempts = status.attempts + 1 if status.observed_generation == generation else 1
    return status.model_copy(
        update={
            "pending_start": claim,
            "observed_generation": generation,
            "attempts": attempts,
            "next_retry_time": None,
        }
    )


def answer(patch: StatusPatch, status: DISyncInstanceStatus, claim: PendingStart) -> StatusPatch:
    """Make a status patch record that it answers `claim` (the intent on the object). The intent itself went with
    the finalizer in one metadata write, so what the intent used to put in status comes with the answer: the
    attempt count, and the claim as still pending unless the patch says otherwise."""
    answered = dict(patch)
    answered["answeredIntent"] = claim.id
    answered.setdefault("pendingStart", claim.model_dump(mode="json", by_alias=True))
    answered.setdefault("attempts", status.attempts)
    answered.setdefault("observedGeneration", status.observed_generation)
    return answered


def decide_start(
    *,
    generation: int,
    status: DISyncInstanceStatus,
    credentials_version: str,
    lease_seconds: float,
    at: dt.datetime,
    claim: PendingStart | None = None,
) -> StartDecision:
    """`claim`: the start intent on the object, if any."""
    if status.started_generation == generation:
        return StartDecision(Action.NOTHING, why=f"generation {generation} already started")
    if status.failed_generation == generation and status.credentials_version == credentials_version:
        return StartDecision(Action.NOTHING, why=f"generation {generation} failed terminally; waiting for a change")
    retry_at = status.next_retry_time
    if retry_at is not None and status.observed_generation == generation and retry_at > at:
        # A failed attempt of this generation set its backoff; every status write is an event that arrives here, so
        # the backoff is kept by the status, not by a timer of whichever process wrote it.
        return StartDecision(
            Action.WAIT, wait_seconds=(retry_at - at).total_seconds(), why=f"backing off until {retry_at.isoformat()}"
        )
    pending = unanswered(status, claim)
    if pending is not None and pending.generation == generation:
        # The intent is written when the request is sent. Until the lease has passed, that request may still be
        # in flight, or executing server-side after a client timeout, whoever sent it (this process or another):
        # verifying before then could see NORUN and start a second time. The lease outlasts the client's timeouts.
        age = (at - pending.since).total_seconds()
        if age < lease_seconds and not pending.answered:
            return StartDecision(
                Action.WAIT, wait_seconds=lease_seconds - age, why=f"start in flight by {pending.owner}"
            )
        return StartDecision(Action.VERIFY, why="an earlier start of this generation has no recorded outcome")
    return StartDecision(Action.START)


def needs_finalizer(spec: DISyncInstanceSpec) -> bool:
    """Only a real-time task with deletionPolicy Stop has something to do at deletion: the others are let go at
    once, which saves each of them a write (and its deletion a round trip)."""
    return spec.task_type is TaskType.DI_REALTIME and spec.deletion_policy is DeletionPolicy.STOP


def start_took_effect(task_type: TaskType, info: InstanceInfoResponse) -> bool:
    """Whether GetDISyncInstanceInfo shows the instance started (so a pending start must not be repeated)."""
    status = (info.data.status or "").upper()
    if task_type is TaskType.DI_REALTIME:
        return status in STARTED_STATES
    # For a solution, Data.Status only says the query worked; SolutionInfo.Status says whether it was started
    # ("init" before any start, "run" or "success" after).
    solution = info.data.solution_info
    solution_status = (solution.status or "").lower() if solution else ""
    return status == "SUCCESS" and solution_status in {"run", "success"}


# --- conditions --------------------------------------------------------------------------------------------------


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int,
    at: dt.datetime,
) -> list[Condition]:
    """Upsert one condition; lastTransitionTime moves only when status changes (metav1 convention)."""
    old = next((c for c in conditions if c.type == type_), None)
    # metav1 Condition times are whole seconds.
    since = old.last_transition_time if old is not None and old.status == status else at.replace(microsecond=0)
    new = Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message[:32768],
        observed_generation=generation,
        last_transition_time=since,
    )
    others = [c for c in conditions if c.type != type_]
    return sorted([*others, new], key=lambda c: (c.type != READY, c.type))


def with_conditions(
    status: DISyncInstanceStatus,
    generation: int,
    at: dt.datetime,
    ready: tuple[ConditionStatus, str, str],
    synced: tuple[ConditionStatus, str, str],
) -> list[Condition]:
    conditions = set_condition(status.conditions, READY, *ready, generation, at)
    return set_condition(conditions, SYNCED, *synced, generation, at)


# --- status updates (each returns the fields to merge into .status) -----------------------------------------------

StatusPatch = dict[str, Any]


def _dump(status: DISyncInstanceStatus, *fields: str) -> StatusPatch:
    data = status.model_dump(mode="json", by_alias=True, include=set(fields))
    return data


def error_reason(error: DataWorksError) -> Reason:
    if isinstance(error, OperationFailedError):
        return Reason.START_FAILED
    if isinstance(error, InvalidParameterError):
        return Reason.INVALID_PARAMETER
    if isinstance(error, AccessDeniedError):
        return Reason.ACCESS_DENIED
    if isinstance(error, AuthenticationError):
        return Reason.AUTHENTICATION_FAILED
    if isinstance(error, CredentialsError):
        return Reason.CREDENTIALS_UNAVAILABLE
    if isinstance(error, ClockSkewError):
        return Reason.CLOCK_SKEW
    return Reason.RETRY_SCHEDULED


def error_summary(error: DataWorksError) -> str:
    parts = [error.code or type(error).__name__]
    if error.api_message:
        parts.append(error.api_message)
    elif error.message:
        parts.append(error.message)
    text = ": ".join(parts)
    if error.request_id:
        text += f" (RequestId {error.request_id})"
    return text


def start_may_have_happened(error: DataWorksError) -> bool:
    """After this error, could the start have taken effect server-side? Then the next try verifies first."""
    if isinstance(error, ThrottlingError) or not error.retryable:
        return False  # the gateway refused it, or the API answered with a definite failure
    if isinstance(error, TransportError) and not error.request_may_have_been_sent:  # noqa: SIM103
        return False  # never reached the server
    return True


def new_intent(generation: int, me: str, at: dt.datetime) -> PendingStart:
    return PendingStart(generation=generation, since=at, owner=me, id=secrets.token_hex(8))


def started(
    status: DISyncInstanceStatus,
    generation: int,
    response: ActionResponse | None,
    credentials_version: str,
    at: dt.datetime,
    *,
    verified_state: str | None = None,
) -> StatusPatch:
    """The start of `generation` took effect (from the API's answer, or verified with GetDISyncInstanceInfo)."""
    fields: dict[str, Any] = {
        "started_generation": generation,
        "failed_generation": None,
        "observed_generation": generation,
        "pending_start": None,
        "next_retry_time": None,
        "last_error": None,
        "credentials_version": credentials_version,
        "last_start_time": at,
    }
    if response is not None:
        fields |= {"status": response.data.status, "message": response.data.message, "request_id": response.request_id}
        detail = "StartDISyncInstance succeeded"
    else:
        fields |= {"status": "success", "instance_state": verified_state}
        detail = f"an earlier start had taken effect (live state {verified_state}); not started again"
    updated = status.model_copy(update=fields)
    running = (verified_state or "") in RUNNING_STATES
    conditions = with_conditions(
        status,
        generation,
        at,
        ("True", Reason.RUNNING if running else Reason.STARTED, detail),
        ("True", Reason.RECONCILE_SUCCESS, ""),
    )
    updated = updated.model_copy(update={"conditions": conditions})
    return _dump(updated, *fields.keys(), "conditions")


def failed_terminally(
    status: DISyncInstanceStatus,
    generation: int,
    error: DataWorksError,
    credentials_version: str,
    at: dt.datetime,
) -> StatusPatch:
    reason = error_reason(error)
    fields: dict[str, Any] = {
        "failed_generation": generation,
        "observed_generation": generation,
        "pending_start": None,
        "next_retry_time": None,
        "credentials_version": credentials_version,
        "last_error": LastError(code=error.code, http_status=error.http_status, retryable=False),
    }
    if isinstance(error, OperationFailedError):
        # The API answered: status and message are exactly what it said.
        fields |= {"status": "fail", "message": error.api_message, "request_id": error.request_id}
    else:
        # No Data.Status this time: the columns show the error rather than an older generation's "success".
        fields |= {"status": None, "message": error_summary(error)}
        if error.request_id:
            fields["request_id"] = error.request_id
    message = f"{error_summary(error)}. Not retried until the spec or the credentials change."
    updated = status.model_copy(update=fields)
    conditions = with_conditions(
        status, generation, at, ("False", reason, message), ("False", Reason.RECONCILE_ERROR, message)
    )
    updated = updated.model_copy(update={"conditions": conditions})
    return _dump(updated, *fields.keys(), "conditions")


def retry_scheduled(
    status: DISyncInstanceStatus,
    generation: int,
    error: DataWorksError,
    delay: float,
    at: dt.datetime,
    *,
    keep_pending: bool,
    count_attempt: bool = False,
) -> StatusPatch:
    """`count_attempt`: the failed call was not a start (a verification), so the attempt is counted here."""
    reason = error_reason(error)
    attempts = max(status.attempts + (1 if count_attempt else 0), 1)
    retry_at = at + dt.timedelta(seconds=round(delay, 3))
    message = f"{error_summary(error)}; attempt {attempts} failed, retrying in {delay:.1f}s"
    if isinstance(error, ClockSkewError):
        message = f"{message}. The operator's clock is probably wrong: check NTP on its node."
    fields: dict[str, Any] = {
        "observed_generation": generation,
        "next_retry_time": retry_at,
        "last_error": LastError(code=error.code, http_status=error.http_status, retryable=True),
    }
    if not keep_pending:
        fields["pending_start"] = None
    elif status.pending_start is not None and not isinstance(error, TransportError):
        fields["pending_start"] = status.pending_start.model_copy(update={"answered": True})
    if count_attempt:
        fields["attempts"] = attempts
    if error.request_id:
        fields["request_id"] = error.request_id
    if status.started_generation != generation:
        fields |= {"status": None, "message": error_summary(error)}
    updated = status.model_copy(update=fields)
    ready_status: ConditionStatus = "False" if status.started_generation != generation else "True"
    conditions = with_conditions(
        status, generation, at, (ready_status, reason, message), ("False", Reason.RECONCILE_ERROR, message)
    )
    updated = updated.model_copy(update={"conditions": conditions})
    return _dump(updated, *fields.keys(), "conditions")


def observed(
    status: DISyncInstanceStatus, generation: int, task_type: TaskType, info: InstanceInfoResponse, at: dt.datetime
) -> StatusPatch | None:
    """Follow-up of the live state; None when nothing a user would see has changed (no write needed)."""
    state = info.data.status
    message = info.data.message
    if task_type is TaskType.DI_REALTIME:
        upper = (state or "").upper()
        if upper in RUNNING_STATES:
            ready: tuple[ConditionStatus, str, str] = ("True", Reason.RUNNING, "the real-time task is running")
        elif upper in STARTED_STATES:
            ready = ("True", Reason.STARTED, f"the real-time task is starting (live state {state})")
        else:
            ready = (
                "False",
                Reason.NOT_RUNNING,
                f"started, but the live state is now {state}: {message or 'no message'}",
            )
    else:
        ok = start_took_effect(task_type, info)
        ready = (
            ("True", Reason.STARTED, f"solution status {state}")
            if ok
            else ("False", Reason.NOT_RUNNING, f"solution status {state}: {message or 'no message'}")
        )
    current = status.condition(READY)
    if (
        status.instance_state == state
        and status.instance_message == message
        and current is not None
        and (current.status, current.reason) == ready[:2]
    ):
        return None
    conditions = set_condition(status.conditions, READY, *ready, generation, at)
    updated = status.model_copy(
        update={
            "instance_state": state,
            "instance_message": message,
            "last_observed_time": at,
            "conditions": conditions,
        }
    )
    return _dump(updated, "instance_state", "instance_message", "last_observed_time", "conditions")


def invalid_spec(status: DISyncInstanceStatus, generation: int, problem: str, at: dt.datetime) -> StatusPatch:
    message = f"invalid spec: {problem}"
    updated = status.model_copy(
        update={
            "observed_generation": generation,
            "failed_generation": generation,
            "pending_start": None,
            "last_error": LastError(code="InvalidSpec", retryable=False),
        }
    )
    conditions = with_conditions(
        status, generation, at, ("False", Reason.INVALID_SPEC, message), ("False", Reason.RECONCILE_ERROR, message)
    )
    updated = updated.model_copy(update={"conditions": conditions})
    return _dump(updated, "observed_generation", "failed_generation", "pending_start", "last_error", "conditions")


def stop_blocked(status: DISyncInstanceStatus, generation: int, error: DataWorksError, at: dt.datetime) -> StatusPatch:
    message = (
        f"StopDISyncInstance failed: {error_summary(error)}. Deletion waits for the stop; "
        "set spec.deletionPolicy: Orphan to delete without stopping the task."
    )
    conditions = set_condition(status.conditions, READY, "False", Reason.STOP_FAILED, message, generation, at)
    return {"conditions": [c.model_dump(mode="json", by_alias=True) for c in conditions]}
