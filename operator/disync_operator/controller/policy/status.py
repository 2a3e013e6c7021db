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
    MAX_RESTARTS_PER_HOUR,
    PAUSED,
    ConditionStatus,
    DISyncInstanceStatus,
    LastError,
    StartIntent,
    StatusUpdate,
    StopIntent,
)

from .conditions import ConditionValue, conditions, set_condition
from .lifecycle import HOUR, recent_restarts
from .reasons import READY, SYNCED, TERMINAL_REASONS, Reason, error_reason, error_summary
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


def last_error(error: DataWorksError, *, retryable: bool) -> LastError:
    """What `status.lastError` says of an error: always a code, the API's, or else the reason it gives (a missing
    Secret is `CredentialsUnavailable`, a reset connection the transport's code)."""
    return LastError(code=error.code or error_reason(error).value, http_status=error.http_status, retryable=retryable)


# --- outcomes of a start -----------------------------------------------------------------------------------------


def started(
    status: DISyncInstanceStatus,
    generation: int,
    response: ActionResponse | None,
    credentials_version: str,
    at: dt.datetime,
    *,
    verified_state: str | None = None,
    spec_digest: str | None = None,
    adopted: bool = False,
) -> StatusUpdate:
    """The start of `generation` took effect (from the API's answer, or verified with GetDISyncInstanceInfo), or
    (`adopted`) the task ran when Full took it over from ObserveOnly, so it counts as started without a start."""
    running = (verified_state or "") in RUNNING_STATES
    reason = Reason.RUNNING if running else Reason.STARTED
    if adopted:
        detail = f"taken over from ObserveOnly: the task runs (live state {verified_state}), so it was not started"
        reason = Reason.ADOPTED
        reported = StatusUpdate(instance_state=verified_state, last_observed_time=at)
    elif response is not None:
        detail = "StartDISyncInstance succeeded"
        reported = StatusUpdate(
            status=response.data.status, message=response.data.message, request_id=response.request_id
        )
    else:
        detail = f"an earlier start had taken effect (live state {verified_state}); not started again"
        reported = StatusUpdate(status="success", instance_state=verified_state)
    done = StatusUpdate(
        started_generation=generation,
        failed_generation=None,
        observed_generation=generation,
        unverified_intent=None,
        next_retry_time=None,
        last_error=None,
        credentials_version=credentials_version,
        started_spec_digest=spec_digest,
        conditions=conditions(status, generation, at, ("True", reason, detail), ("True", Reason.RECONCILE_SUCCESS, "")),
    )
    if not adopted:
        done = done.merged(StatusUpdate(last_start_time=at))
    return done.merged(reported)


def start_spent(
    status: DISyncInstanceStatus,
    generation: int,
    credentials_version: str,
    at: dt.datetime,
    *,
    verified_state: str | None,
    spec_digest: str | None,
) -> StatusUpdate:
    """restartPolicy OnFailure: the start of `generation` was sent, its answer was lost, and the task is not
    running. The start counts as made (it may have run and stopped), so the generation is recorded as started and
    the task as not running; the restart that follows counts against the hourly cap."""
    message = (
        f"the start of generation {generation} was sent and its answer lost, and the task is not running (live state "
        f"{verified_state}): the start counts as made; restartPolicy OnFailure restarts it within "
        "DISYNC_MAX_RESTARTS_PER_HOUR"
    )
    return StatusUpdate(
        started_generation=generation,
        failed_generation=None,
        observed_generation=generation,
        unverified_intent=None,
        next_retry_time=None,
        last_error=None,
        credentials_version=credentials_version,
        started_spec_digest=spec_digest,
        last_start_time=at,
        instance_state=verified_state,
        last_observed_time=at,
        status=None,  # no answer came: no Data.Status or Data.Message to show
        message=None,
        conditions=conditions(
            status, generation, at, ("False", Reason.NOT_RUNNING, message), ("True", Reason.RECONCILE_SUCCESS, "")
        ),
    )


def carried_over(status: DISyncInstanceStatus, generation: int, at: dt.datetime) -> StatusUpdate:
    """A generation that changes only lifecycle fields (suspend, managementPolicy, restartPolicy) while the task runs
    from our start: it counts as started, and the Ready condition says what it said, now about this generation."""
    current = status.condition(READY)
    started = status.started_generation
    if current is not None:
        ready: ConditionValue = (current.status, Reason(current.reason), current.message)
    else:
        ready = ("True", Reason.STARTED, f"started at generation {started}")
    return StatusUpdate(
        started_generation=generation,
        observed_generation=generation,
        conditions=conditions(status, generation, at, ready, ("True", Reason.RECONCILE_SUCCESS, "")),
    )


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
        last_error=last_error(error, retryable=False),
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
    running: bool | None = None,
) -> StatusUpdate:
    """`keep_unverified`: the start may have taken effect (verify before the next one). `count_attempt`: the failed
    call was not a start (a verification), so the attempt is counted here. `running`: whether the task runs
    meanwhile (default: if this generation was started; a restart's task does not)."""
    attempts = max(status.attempts + (1 if count_attempt else 0), 1)
    message = f"{error_summary(error)}; attempt {attempts} failed, retrying in {delay:.1f}s"
    if isinstance(error, ClockSkewError):
        message = f"{message}. The operator's clock is probably wrong: check NTP on its node."
    if running is None:
        running = status.started_generation == generation
    ready: ConditionStatus = "True" if running else "False"
    update = StatusUpdate(
        observed_generation=generation,
        next_retry_time=at + dt.timedelta(seconds=round(delay, 3)),
        last_error=last_error(error, retryable=True),
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
    elif status.unverified_intent is not None and not count_attempt:
        # The start itself left and its answer was lost: from now on it counts as made (policy.after_verifying).
        lost = status.unverified_intent.model_copy(update={"answer_lost": True})
        update = update.merged(StatusUpdate(unverified_intent=lost))
    if count_attempt:
        update = update.merged(StatusUpdate(attempts=attempts))
    if error.request_id:
        update = update.merged(StatusUpdate(request_id=error.request_id))
    if not running:
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
    status: DISyncInstanceStatus, generation: int, api_reason: str, at: dt.datetime, *, stop: bool = False
) -> StatusUpdate | None:
    """The API server refused the start (or a suspend's stop) intent's metadata write (422): nothing was sent. None
    if status says so already (looked at again every minute, and at once when the object changes)."""
    what, done = ("stop", "stopped") if stop else ("start", "started")
    message = (
        f"the API server refused the {what} intent ({api_reason or 'Invalid'}), so nothing was {done}: "
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


# --- suspend -----------------------------------------------------------------------------------------------------


def suspended(
    status: DISyncInstanceStatus,
    generation: int,
    at: dt.datetime,
    *,
    response: ActionResponse | None = None,
    verified_state: str | None = None,
    reported_failure: str | None = None,
    stop_intent: StopIntent | None = None,
    start_intent: StartIntent | None = None,
) -> StatusUpdate:
    """A suspend's stop took effect: from the API's answer (`response`), verified with GetDISyncInstanceInfo
    (`verified_state`), or the API said there was nothing to stop (`reported_failure`, its message). It answers the
    stop intent, and a start intent still open (the stop came after it, whatever it did)."""
    if response is not None:
        detail = f"suspended: StopDISyncInstance succeeded (RequestId {response.request_id})"
        reported = StatusUpdate(request_id=response.request_id)
    elif reported_failure is not None:
        detail = f"suspended: StopDISyncInstance answered fail ({reported_failure}), so there was nothing to stop"
        reported = StatusUpdate()
    else:
        detail = f"suspended: an earlier stop had taken effect (live state {verified_state}); not stopped again"
        reported = StatusUpdate(instance_state=verified_state, last_observed_time=at)
    update = StatusUpdate(
        stopped_generation=generation,
        observed_generation=generation,
        unverified_stop_intent=None,
        stop_attempts=0,
        next_retry_time=None,
        last_error=None,
        conditions=conditions(
            status, generation, at, ("False", Reason.SUSPENDED, detail), ("True", Reason.RECONCILE_SUCCESS, "")
        ),
    ).merged(reported)
    if stop_intent is not None:
        update = update.merged(StatusUpdate(answered_stop_intent=stop_intent.id))
    if start_intent is not None:
        update = update.merged(StatusUpdate(answered_intent=start_intent.id, unverified_intent=None))
    return update


def still_suspended(status: DISyncInstanceStatus, generation: int, at: dt.datetime) -> StatusUpdate | None:
    """A later suspended generation (e.g. new start parameters, for when it resumes): nothing to stop again. None if
    the status says so for this generation already."""
    current = status.condition(READY)
    if (
        current is not None
        and current.reason == Reason.SUSPENDED
        and current.observed_generation == generation
        and status.observed_generation == generation
    ):
        return None
    detail = f"suspended: stopped since generation {status.stopped_generation}; started once when resumed"
    return StatusUpdate(
        observed_generation=generation,
        conditions=conditions(
            status, generation, at, ("False", Reason.SUSPENDED, detail), ("True", Reason.RECONCILE_SUCCESS, "")
        ),
    )


def suspend_failed(
    status: DISyncInstanceStatus,
    generation: int,
    error: DataWorksError,
    delay: float,
    at: dt.datetime,
    *,
    unverified: StopIntent | None,
    answered: StopIntent | None,
) -> StatusUpdate:
    """A suspend's StopDISyncInstance failed; tried again after `delay`. `unverified`: a stop that may have taken
    effect (verified before the next one); `answered`: the stop intent this write answers."""
    attempts = status.stop_attempts + 1
    summary = error_summary(error)
    if error.retryable:
        message = f"suspending: StopDISyncInstance failed: {summary}; attempt {attempts}, retrying in {delay:.1f}s"
        ready: ConditionValue = ("False", error_reason(error), message)
    else:
        message = (
            f"suspending: StopDISyncInstance failed: {summary}. Tried again every {delay:.0f}s; "
            "set spec.suspend: false to keep the task running instead."
        )
        ready = ("False", Reason.STOP_FAILED, message)
    if unverified is not None and not isinstance(error, TransportError):
        unverified = unverified.model_copy(update={"call_ended": True})  # an HTTP answer: nothing in flight
    update = StatusUpdate(
        observed_generation=generation,
        stop_attempts=attempts,
        next_retry_time=at + dt.timedelta(seconds=round(delay, 3)),
        last_error=last_error(error, retryable=error.retryable),
        unverified_stop_intent=unverified,
        conditions=conditions(status, generation, at, ready, ("False", Reason.RECONCILE_ERROR, message)),
    )
    if answered is not None:
        update = update.merged(StatusUpdate(answered_stop_intent=answered.id))
    if error.request_id:
        update = update.merged(StatusUpdate(request_id=error.request_id))
    return update


# --- observe only ------------------------------------------------------------------------------------------------


def observe_failed(
    status: DISyncInstanceStatus, generation: int, error: DataWorksError, delay: float | None, at: dt.datetime
) -> StatusUpdate | None:
    """managementPolicy ObserveOnly, and the live state could not be read. A terminal error (credentials, access) is
    Ready=False with its reason; a transient one leaves Ready as it was (Unknown if there is none) and says so in
    Synced. None if the status says so already."""
    summary = error_summary(error)
    current = status.condition(READY)
    if error.retryable:
        message = f"GetDISyncInstanceInfo failed: {summary}; retrying in {delay or 0:.1f}s"
        if current is not None:
            ready: ConditionValue = (current.status, Reason(current.reason), current.message)
        else:
            ready = ("Unknown", error_reason(error), message)
    else:
        message = f"GetDISyncInstanceInfo failed: {summary}. Not retried until the next sweep or a spec change."
        ready = ("False", error_reason(error), message)
    synced = status.condition(SYNCED)
    last = status.last_error
    if (
        synced is not None
        and synced.reason == Reason.RECONCILE_ERROR
        and current is not None
        and (current.status, current.reason) == ready[:2]
        and last is not None
        and (last.code, last.retryable) == (error.code, error.retryable)
        and status.observe_only_generation == generation
    ):
        return None  # the same failure seen again: no write per look
    return StatusUpdate(
        observed_generation=generation,
        observe_only_generation=generation,
        last_error=last_error(error, retryable=error.retryable),
        conditions=conditions(status, generation, at, ready, ("False", Reason.RECONCILE_ERROR, message)),
    )


# --- restart on failure ------------------------------------------------------------------------------------------


def restart_scheduled(
    status: DISyncInstanceStatus, generation: int, delay: float, max_per_hour: int, at: dt.datetime
) -> StatusUpdate:
    """restartPolicy OnFailure, and the task was found stopped: restarted once `delay` has passed."""
    this_hour = len(recent_restarts(status, at)) + 1
    message = (
        f"the live state is {status.instance_state}: restarting in {delay:.1f}s (restart {this_hour} of at most "
        f"{max_per_hour} an hour, restartPolicy OnFailure)"
    )
    return StatusUpdate(
        next_retry_time=at + dt.timedelta(seconds=round(delay, 3)),
        conditions=conditions(
            status, generation, at, ("False", Reason.RESTART_SCHEDULED, message), ("True", Reason.RECONCILE_SUCCESS, "")
        ),
    )


def restart_limited(
    status: DISyncInstanceStatus, generation: int, max_per_hour: int, at: dt.datetime
) -> StatusUpdate | None:
    """Found stopped again with DISYNC_MAX_RESTARTS_PER_HOUR restarts in the last hour: no restart until the oldest
    is an hour old. None if the status says so already."""
    window = recent_restarts(status, at)
    free_at = (window[0] + HOUR).replace(microsecond=0) if window else at
    message = (
        f"the live state is {status.instance_state} after {len(window)} restarts in the last hour, the most "
        f"DISYNC_MAX_RESTARTS_PER_HOUR allows ({max_per_hour}): not restarted before {free_at.isoformat()}. "
        "Look at the task in DataWorks."
    )
    current = status.condition(READY)
    if current is not None and current.reason == Reason.RESTART_LIMIT_REACHED and current.message == message:
        return None
    return StatusUpdate(
        conditions=conditions(
            status,
            generation,
            at,
            ("False", Reason.RESTART_LIMIT_REACHED, message),
            ("True", Reason.RECONCILE_SUCCESS, ""),
        )
    )


def restart_spent(
    status: DISyncInstanceStatus, generation: int, restart: int, at: dt.datetime, *, verified_state: str | None
) -> StatusUpdate:
    """Restart number `restart` was sent with no known outcome and the task is not running: it counts as made (it
    may have run and stopped), so it counts against DISYNC_MAX_RESTARTS_PER_HOUR, and the next restart is scheduled
    from the stopped state as any other."""
    message = (
        f"restart {restart} had no known outcome and the task is not running (live state {verified_state}): it counts "
        "as made"
    )
    return restart_made(status, restart, at).merged(
        StatusUpdate(
            instance_state=verified_state,
            last_observed_time=at,
            conditions=conditions(
                status, generation, at, ("False", Reason.NOT_RUNNING, message), ("True", Reason.RECONCILE_SUCCESS, "")
            ),
        )
    )


def restart_made(status: DISyncInstanceStatus, restart: int, at: dt.datetime) -> StatusUpdate:
    """What every restart made (or counted as made) records: its number and time, within the hour's window."""
    window = [t for t in recent_restarts(status, at) if t < at]
    return StatusUpdate(
        restarts=restart,
        last_restart_time=at,
        restart_times=[*window, at][-MAX_RESTARTS_PER_HOUR:],
        last_start_time=at,
        unverified_intent=None,
        next_retry_time=None,
    )


def restarted(
    status: DISyncInstanceStatus,
    generation: int,
    restart: int,
    at: dt.datetime,
    *,
    response: ActionResponse | None = None,
    verified_state: str | None = None,
) -> StatusUpdate:
    """Restart number `restart` took effect (the API's answer, or verified with GetDISyncInstanceInfo)."""
    if response is not None:
        detail = f"restarted (restart {restart}, restartPolicy OnFailure): StartDISyncInstance succeeded"
        reported = StatusUpdate(
            status=response.data.status, message=response.data.message, request_id=response.request_id
        )
    else:
        detail = f"restart {restart} had taken effect (live state {verified_state}); not started again"
        reported = StatusUpdate(status="success", instance_state=verified_state)
    took_effect = StatusUpdate(
        failed_generation=None,
        last_error=None,
        conditions=conditions(
            status, generation, at, ("True", Reason.STARTED, detail), ("True", Reason.RECONCILE_SUCCESS, "")
        ),
    )
    return restart_made(status, restart, at).merged(took_effect).merged(reported)


# --- pause -------------------------------------------------------------------------------------------------------


def paused(status: DISyncInstanceStatus, generation: int, deletion_waits: bool, at: dt.datetime) -> StatusUpdate | None:
    """`disync.dev/paused: "true"`: the one thing written is the Synced condition saying so (Ready keeps its last
    word). None if it says so already: a spec change while paused writes nothing."""
    message = f'{PAUSED} is "true": no DataWorks call and no change to this object until the annotation is removed'
    if deletion_waits:
        message += "; its deletion waits for that too (the task is stopped then, as deletionPolicy says)"
    current = status.condition(SYNCED)
    if current is not None and current.reason == Reason.RECONCILE_PAUSED and current.message == message:
        return None
    return StatusUpdate(
        conditions=set_condition(status.conditions, SYNCED, ("False", Reason.RECONCILE_PAUSED, message), generation, at)
    )


# Ready reasons after which Synced says the last reconcile failed.
_RECONCILE_ERRORS = TERMINAL_REASONS | {
    Reason.RETRY_SCHEDULED,
    Reason.CLOCK_SKEW,
    Reason.INTENT_REJECTED,
    Reason.CONFLICT,
    Reason.STOP_FAILED,
}


def unpaused(status: DISyncInstanceStatus, generation: int, at: dt.datetime) -> StatusUpdate | None:
    """The pause annotation is gone: Synced says again what the last outcome said (Ready's word), until the next
    outcome writes it. None if Synced was not paused."""
    current = status.condition(SYNCED)
    if current is None or current.reason != Reason.RECONCILE_PAUSED:
        return None
    ready = status.condition(READY)
    value: ConditionValue = ("True", Reason.RECONCILE_SUCCESS, "")
    if ready is not None and ready.reason in _RECONCILE_ERRORS:
        value = ("False", Reason.RECONCILE_ERROR, ready.message)
    return StatusUpdate(conditions=set_condition(status.conditions, SYNCED, value, generation, at))
