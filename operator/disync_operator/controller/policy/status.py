"""What each outcome writes into status: typed updates (`StatusUpdate`), with the Ready and Synced conditions.

Each function takes the status as it is and returns only the fields its outcome sets; the reconciler writes that
update as it is, and nothing else travels between the policy and the Kubernetes edge.
"""

from __future__ import annotations

import datetime as dt

from disync_operator.dataworks import (
    ActionResponse,
    ClockSkewError,
    DataWorksError,
    OperationFailedError,
    TransportError,
)
from disync_operator.types import (
    ConditionStatus,
    DISyncInstanceStatus,
    LastError,
    StartIntent,
    StatusUpdate,
)

from .conditions import ConditionValue, conditions, set_condition
from .reasons import READY, Reason, error_reason, error_summary
from .start import RUNNING_STATES

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
