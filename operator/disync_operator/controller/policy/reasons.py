"""Condition types and reasons, and which reason each DataWorks error gives."""

from __future__ import annotations

from enum import StrEnum

from disync_operator.dataworks import (
    AccessDeniedError,
    AuthenticationError,
    ClockSkewError,
    CredentialsError,
    DataWorksError,
    InvalidParameterError,
    OperationFailedError,
)
from disync_operator.types import bounded

READY = "Ready"
SUMMARY_LEN = 2048  # an error's one-line summary: long enough for a stack trace's head, short enough for any field
SYNCED = "Synced"


class Reason(StrEnum):
    """Condition reasons. Terminal ones wait for a spec or credentials change; the others resolve on their own."""

    # Ready=True
    RUNNING = "Running"
    STARTED = "Started"
    OBSERVED = "Observed"  # managementPolicy ObserveOnly, and the task runs
    ADOPTED = "Adopted"  # taken over from ObserveOnly: it ran, so it was recorded as started, not started
    # Ready=False or Unknown, transient
    RETRY_SCHEDULED = "RetryScheduled"
    CLOCK_SKEW = "ClockSkew"
    DELETING = "Deleting"
    INTENT_REJECTED = "IntentRejected"
    CONFLICT = "Conflict"  # another resource manages the same DataWorks task
    RESTART_SCHEDULED = "RestartScheduled"  # restartPolicy OnFailure: found stopped, restarted after the backoff
    # Ready=False, as asked
    SUSPENDED = "Suspended"  # spec.suspend: stopped, and kept so
    # Ready=False, terminal
    START_FAILED = "StartFailed"
    INVALID_SPEC = "InvalidSpec"
    INVALID_PARAMETER = "InvalidParameter"
    ACCESS_DENIED = "AccessDenied"
    AUTHENTICATION_FAILED = "AuthenticationFailed"
    CREDENTIALS_UNAVAILABLE = "CredentialsUnavailable"
    NOT_RUNNING = "NotRunning"
    STOP_FAILED = "StopFailed"
    RESTART_LIMIT_REACHED = "RestartLimitReached"  # DISYNC_MAX_RESTARTS_PER_HOUR: no restart until the hour frees one
    # Synced
    RECONCILE_SUCCESS = "ReconcileSuccess"
    RECONCILE_ERROR = "ReconcileError"
    RECONCILE_PAUSED = "ReconcilePaused"  # disync.dev/paused: "true"


class EventReason(StrEnum):
    """Reasons of the Events that record something done (warnings use the condition's `Reason`)."""

    STARTED = "Started"
    STOPPED = "Stopped"
    ORPHANED = "Orphaned"
    STOP_REPORTED_FAILURE = "StopReportedFailure"
    SUSPENDED = "Suspended"  # a suspend's stop took effect
    ADOPTED = "Adopted"
    RESTARTED = "Restarted"  # a Warning: the task had stopped (restartPolicy OnFailure)


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
    if not error.retryable:
        return Reason.START_FAILED  # any other terminal error: it is not retried, so it must not say RetryScheduled
    return Reason.RETRY_SCHEDULED


def error_summary(error: DataWorksError) -> str:
    """One line for status, Events and logs: the API's code and message, and its RequestId."""
    # The API's code when it gave one; a "fail" answer has none, and its message says it all (no class name of ours).
    said = error.api_message or error.message
    parts = [part for part in (error.code, said) if part] or [type(error).__name__]
    text = ": ".join(parts)
    if error.request_id:
        text += f" (RequestId {error.request_id})"
    if error.retry_after is not None:
        text += f" (retry after {error.retry_after:g}s)"
    # The cloud's words: bounded and cleaned here, as everything it sends is before status, Events or logs.
    return str(bounded(text, SUMMARY_LEN))
