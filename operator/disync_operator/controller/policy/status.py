"""What each outcome writes into status: typed updates (`StatusUpdate`), with the Ready and Synced conditions.

Each function takes the status as it is and returns only the fields its outcome sets; the reconciler writes that
update as it is, and nothing else travels between the policy and the Kubernetes edge.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from disync_operator.dataworks import (
    ActionResponse,
    ClockSkewError,
    DataWorksError,
    InstanceInfoResponse,
    OperationFailedError,
    TransportError,
)
from disync_operator.types import (
    Condition,
    ConditionStatus,
    DISyncInstanceStatus,
    LastError,
    StartIntent,
    StatusUpdate,
    TaskType,
)

from .reasons import READY, SYNCED, Reason, error_reason, error_summary
from .start import RUNNING_STATES, STARTED_STATES, start_took_effect

ConditionValue = tuple[ConditionStatus, Reason, str]  # status, reason, message


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    value: ConditionValue,
    generation: int,
    at: dt.datetime,
) -> list[Condition]:
    """Upsert one condition; lastTransitionTime moves only when status changes (metav1 convention)."""
    status, reason, message = value
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


def conditions(
    status: DISyncInstanceStatus, generation: int, at: dt.datetime, ready: ConditionValue, synced: ConditionValue
) -> list[Condition]:
    both = set_condition(status.conditions, READY, ready, generation, at)
    return set_condition(both, SYNCED, synced, generation, at)


# --- the start intent --------------------------------------------------------------------------------------------


def after_sending(status: DISyncInstanceStatus, generation: int, intent: StartIntent) -> DISyncInstanceStatus:
    """The status the outcome of `intent`'s call is computed from: one more attempt, the intent unverified."""
    attempts = status.attempts + 1 if status.observed_generation == generation else 1
    return status.model_copy(
        update={
            "unverified_intent": intent,
            "observed_generation": generation,
            "attempts": attempts,
            "next_retry_time": None,
        }
    )


def answer(update: StatusUpdate, status: DISyncInstanceStatus, intent: StartIntent) -> StatusUpdate:
    """Make `update` answer `intent` (the intent on the object). The intent went with the finalizer in one metadata
    write, so what the intent means for status comes with its answer: the attempt count, and the intent kept as
    unverified unless `update` says otherwise."""
    answered = StatusUpdate(
        answered_intent=intent.id,
        unverified_intent=intent,
        attempts=status.attempts,
        observed_generation=status.observed_generation,
    )
    return answered.merged(update).merged(StatusUpdate(answered_intent=intent.id))


# --- outcomes of a start -----------------------------------------------------------------------------------------


def started(
    status: DISyncInstanceStatus,
    generation: int,
    response: ActionResponse | None,
    credentials_version: str,
    at: dt.datetime,
    *,
    verified_state: str | None = None,
) -> StatusUpdate:
    """The start of `generation` took effect (from the API's answer, or verified with GetDISyncInstanceInfo)."""
    if response is not None:
        detail = "StartDISyncInstance succeeded"
        reported = StatusUpdate(
            status=response.data.status, message=response.data.message, request_id=response.request_id
        )
    else:
        detail = f"an earlier start had taken effect (live state {verified_state}); not started again"
        reported = StatusUpdate(status="success", instance_state=verified_state)
    running = (verified_state or "") in RUNNING_STATES
    done = StatusUpdate(
        started_generation=generation,
        failed_generation=None,
        observed_generation=generation,
        unverified_intent=None,
        next_retry_time=None,
        last_error=None,
        credentials_version=credentials_version,
        last_start_time=at,
        conditions=conditions(
            status,
            generation,
            at,
            ("True", Reason.RUNNING if running else Reason.STARTED, detail),
            ("True", Reason.RECONCILE_SUCCESS, ""),
        ),
    )
    return done.merged(reported)


def failed_terminally(
    status: DISyncInstanceStatus,
    generation: int,
    error: DataWorksError,
    credentials_version: str,
    at: dt.datetime,
) -> StatusUpdate:
    if isinstance(error, OperationFailedError):
        # The API answered: status and message are exactly what it said.
        reported = StatusUpdate(status="fail", message=error.api_message, request_id=error.request_id)
    else:
        # No Data.Status this time: the columns show the error rather than an older generation's "success".
        reported = StatusUpdate(status=None, message=error_summary(error))
        if error.request_id:
            reported = reported.merged(StatusUpdate(request_id=error.request_id))
    message = f"{error_summary(error)}. Not retried until the spec or the credentials change."
    failed = StatusUpdate(
        failed_generation=generation,
        observed_generation=generation,
        unverified_intent=None,
        next_retry_time=None,
        credentials_version=credentials_version,
        last_error=LastError(code=error.code, http_status=error.http_status, retryable=False),
        conditions=conditions(
            status,
            generation,
            at,
            ("False", error_reason(error), message),
            ("False", Reason.RECONCILE_ERROR, message),
        ),
    )
    return failed.merged(reported)


def retry_scheduled(
    status: DISyncInstanceStatus,
    generation: int,
    error: DataWorksError,
    delay: float,
    at: dt.datetime,
    *,
    keep_unverified: bool,
    count_attempt: bool = False,
) -> StatusUpdate:
    """`keep_unverified`: the start may have taken effect (verify before the next one). `count_attempt`: the failed
    call was not a start (a verification), so the attempt is counted here."""
    attempts = max(status.attempts + (1 if count_attempt else 0), 1)
    message = f"{error_summary(error)}; attempt {attempts} failed, retrying in {delay:.1f}s"
    if isinstance(error, ClockSkewError):
        message = f"{message}. The operator's clock is probably wrong: check NTP on its node."
    ready: ConditionStatus = "False" if status.started_generation != generation else "True"
    update = StatusUpdate(
        observed_generation=generation,
        next_retry_time=at + dt.timedelta(seconds=round(delay, 3)),
        last_error=LastError(code=error.code, http_status=error.http_status, retryable=True),
        conditions=conditions(
            status, generation, at, (ready, error_reason(error), message), ("False", Reason.RECONCILE_ERROR, message)
        ),
    )
    if not keep_unverified:
        update = update.merged(StatusUpdate(unverified_intent=None))
    elif status.unverified_intent is not None and not isinstance(error, TransportError):
        # An HTTP answer came back: nothing is in flight any more, so the next look may verify at once.
        ended = status.unverified_intent.model_copy(update={"call_ended": True})
        update = update.merged(StatusUpdate(unverified_intent=ended))
    if count_attempt:
        update = update.merged(StatusUpdate(attempts=attempts))
    if error.request_id:
        update = update.merged(StatusUpdate(request_id=error.request_id))
    if status.started_generation != generation:
        update = update.merged(StatusUpdate(status=None, message=error_summary(error)))
    return update


def invalid_spec(status: DISyncInstanceStatus, generation: int, problem: str, at: dt.datetime) -> StatusUpdate:
    message = f"invalid spec: {problem}"
    return StatusUpdate(
        observed_generation=generation,
        failed_generation=generation,
        unverified_intent=None,
        last_error=LastError(code=Reason.INVALID_SPEC, retryable=False),
        conditions=conditions(
            status, generation, at, ("False", Reason.INVALID_SPEC, message), ("False", Reason.RECONCILE_ERROR, message)
        ),
    )


def intent_rejected(
    status: DISyncInstanceStatus, generation: int, api_reason: str, at: dt.datetime
) -> StatusUpdate | None:
    """The API server refused the start intent's metadata write (422): nothing was started. None if status says so
    already (looked at again every minute, and at once when the object changes)."""
    message = (
        f"the API server refused the start intent ({api_reason or 'Invalid'}), so nothing was started: "
        f"metadata.annotations is probably at its 256 KiB limit; make room and it is retried"
    )
    current = status.condition(READY)
    if current is not None and current.reason == Reason.INTENT_REJECTED and current.message == message:
        return None
    return StatusUpdate(
        observed_generation=generation,
        conditions=conditions(
            status,
            generation,
            at,
            ("False", Reason.INTENT_REJECTED, message),
            ("False", Reason.RECONCILE_ERROR, message),
        ),
    )


def conflict(status: DISyncInstanceStatus, generation: int, owner: str, at: dt.datetime) -> StatusUpdate | None:
    """Another resource manages the same DataWorks task; None if status says so already."""
    message = (
        f"the same DataWorks task (region, project, file) is managed by {owner}: this resource calls nothing "
        "while that one exists"
    )
    current = status.condition(READY)
    if current is not None and current.reason == Reason.CONFLICT and current.message == message:
        return None
    return StatusUpdate(
        observed_generation=generation,
        conditions=conditions(
            status, generation, at, ("False", Reason.CONFLICT, message), ("False", Reason.RECONCILE_ERROR, message)
        ),
    )


# --- the live state ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """What a read of the live state changes: the status update (None: nothing a user would see changed), and the
    Warning to post when the task has just stopped running (None: no new drift)."""

    update: StatusUpdate | None
    drift: str | None = None


def live_condition(task_type: TaskType, info: InstanceInfoResponse) -> ConditionValue:
    state, message = info.data.status, info.data.message
    if task_type is TaskType.DI_SOLUTION:
        if start_took_effect(task_type, info):
            return ("True", Reason.STARTED, f"solution status {state}")
        return ("False", Reason.NOT_RUNNING, f"solution status {state}: {message or 'no message'}")
    upper = (state or "").upper()
    if upper in RUNNING_STATES:
        return ("True", Reason.RUNNING, "the real-time task is running")
    if upper in STARTED_STATES:
        return ("True", Reason.STARTED, f"the real-time task is starting (live state {state})")
    return ("False", Reason.NOT_RUNNING, f"started, but the live state is now {state}: {message or 'no message'}")


def observed(
    status: DISyncInstanceStatus, generation: int, task_type: TaskType, info: InstanceInfoResponse, at: dt.datetime
) -> Observation:
    """Follow-up of the live state of a started task. A drift (the task stopped running) is reported once per
    transition: when Ready turns NotRunning, or the state changes while it is (PAUSE -> NORUN); never for a task that
    is starting or running, and not again at every look while nothing changes."""
    state, message = info.data.status, info.data.message
    ready = live_condition(task_type, info)
    current = status.condition(READY)
    was_drifting = current is not None and current.reason == Reason.NOT_RUNNING
    if (
        status.instance_state == state
        and status.instance_message == message
        and current is not None
        and (current.status, current.reason) == ready[:2]
    ):
        return Observation(None)
    update = StatusUpdate(
        instance_state=state,
        instance_message=message,
        last_observed_time=at,
        conditions=set_condition(status.conditions, READY, ready, generation, at),
    )
    drifts = ready[1] is Reason.NOT_RUNNING and (not was_drifting or status.instance_state != state)
    return Observation(update, drift=f"live state {state}" if drifts else None)


# --- deletion ----------------------------------------------------------------------------------------------------


def stop_failed(
    status: DISyncInstanceStatus, generation: int, error: DataWorksError, delay: float, at: dt.datetime
) -> StatusUpdate:
    """A StopDISyncInstance attempt failed; deletion waits for the stop and tries again after `delay`."""
    attempts = status.stop_attempts + 1
    if error.retryable:
        value: ConditionValue = (
            "False",
            Reason.DELETING,
            f"StopDISyncInstance failed: {error_summary(error)}; attempt {attempts}, retrying in {delay:.1f}s",
        )
    else:
        value = (
            "False",
            Reason.STOP_FAILED,
            f"StopDISyncInstance failed: {error_summary(error)}. Deletion waits for the stop; "
            "set spec.deletionPolicy: Orphan to delete without stopping the task.",
        )
    return StatusUpdate(
        stop_attempts=attempts, conditions=set_condition(status.conditions, READY, value, generation, at)
    )
