"""The exactly-once rules: when to start, wait, verify or do nothing; the start intent; what deletion does.

A start is sent at most once per generation. Before the request leaves, a *start intent* goes on the object (one
metadata write with a resourceVersion precondition, so two processes can't both write one); the status write that
records the call's outcome *answers* it (`status.answeredIntent`). An intent whose outcome stays unknown (crash, lost
response, 5xx) is kept as `status.unverifiedIntent` and verified with GetDISyncInstanceInfo before any new start.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from enum import StrEnum

from disync_operator.dataworks import DataWorksError, InstanceInfoResponse, ThrottlingError, TransportError
from disync_operator.types import DeletionPolicy, DISyncInstanceSpec, DISyncInstanceStatus, StartIntent, TaskType

from .reasons import Reason

# Live states of a real-time task that mean "the start took effect".
STARTED_STATES = frozenset({"RUN", "WAIT"})
RUNNING_STATES = frozenset({"RUN"})


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


def unanswered(status: DISyncInstanceStatus, intent: StartIntent | None) -> StartIntent | None:
    """The start intent whose outcome is unknown, if any: the one on the object (`intent`) until a status write
    answers it, else the one the status keeps unverified (an answer that left the outcome unknown)."""
    if intent is not None and intent.id is not None and intent.id != status.answered_intent:
        return intent
    return status.unverified_intent


@dataclass(frozen=True)
class IntentOnObject:
    """The start-intent annotation as read: the intent, or (`unreadable`) an annotation that can't be trusted (not
    ours, malformed, or dated in the future). An unreadable one may still stand for a start that was sent, so it
    makes the next start verify first; it never makes anything wait."""

    intent: StartIntent | None = None
    unreadable: str | None = None  # what is wrong with it


def read_intent(raw: str | None, at: dt.datetime, lease_seconds: float) -> IntentOnObject:
    if not raw:
        return IntentOnObject()
    try:
        intent = StartIntent.model_validate_json(raw)
    except ValueError:
        return IntentOnObject(unreadable="not a start intent")
    if (intent.since - at).total_seconds() > lease_seconds:
        # Trusting it would wait until that date: a clock that far ahead, or a hand-written value.
        return IntentOnObject(unreadable=f"dated in the future ({intent.since.isoformat()})")
    return IntentOnObject(intent)


def new_intent(generation: int, me: str, at: dt.datetime) -> StartIntent:
    return StartIntent(generation=generation, since=at, owner=me, id=secrets.token_hex(8))


def failed_for_good(status: DISyncInstanceStatus, generation: int, credentials_version: str) -> bool:
    """This generation failed terminally with these same credentials: nothing will change until one of them does.
    A spec the operator found invalid stays invalid whatever the credentials."""
    if status.failed_generation != generation:
        return False
    invalid_spec = status.last_error is not None and status.last_error.code == Reason.INVALID_SPEC
    return invalid_spec or status.credentials_version == credentials_version


def decide_start(
    *,
    generation: int,
    status: DISyncInstanceStatus,
    credentials_version: str,
    lease_seconds: float,
    at: dt.datetime,
    intent: StartIntent | None = None,
    unreadable_intent: bool = False,
    handed_over: bool = False,
) -> StartDecision:
    """`intent`: the start intent on the object, if any; `unreadable_intent`: there is an annotation that can't be
    read, so a start may have been sent that nothing records; `handed_over`: the task was another resource's until
    now (it may run, or be stopping)."""
    if status.started_generation == generation:
        return StartDecision(Action.NOTHING, why=f"generation {generation} already started")
    if failed_for_good(status, generation, credentials_version):
        return StartDecision(Action.NOTHING, why=f"generation {generation} failed terminally; waiting for a change")
    retry_at = status.next_retry_time
    if retry_at is not None and status.observed_generation == generation and retry_at > at:
        # A failed attempt of this generation set its backoff; every status write is an event that arrives here, so
        # the backoff is kept by the status, not by a timer of whichever process wrote it.
        return StartDecision(
            Action.WAIT, wait_seconds=(retry_at - at).total_seconds(), why=f"backing off until {retry_at.isoformat()}"
        )
    open_intent = unanswered(status, intent)
    if open_intent is not None and open_intent.generation == generation:
        # The intent is written when the request is sent. Until the lease has passed, that request may still be
        # in flight, or executing server-side after a client timeout, whoever sent it (this process or another):
        # verifying before then could see NORUN and start a second time. The lease outlasts the client's timeouts.
        age = (at - open_intent.since).total_seconds()
        if age < lease_seconds and not open_intent.call_ended:
            return StartDecision(
                Action.WAIT, wait_seconds=lease_seconds - age, why=f"start in flight by {open_intent.owner}"
            )
        return StartDecision(Action.VERIFY, why="an earlier start of this generation has no recorded outcome")
    if unreadable_intent:
        return StartDecision(Action.VERIFY, why="the start-intent annotation can't be read")
    if handed_over:
        return StartDecision(Action.VERIFY, why="the task was another resource's: its live state decides")
    return StartDecision(Action.START)


def needs_finalizer(spec: DISyncInstanceSpec) -> bool:
    """Only a real-time task with deletionPolicy Stop has something to do at deletion: the others are let go at
    once, which saves each of them a write (and its deletion a round trip)."""
    return spec.task_type is TaskType.DI_REALTIME and spec.deletion_policy is DeletionPolicy.STOP


def start_took_effect(task_type: TaskType, info: InstanceInfoResponse) -> bool:
    """Whether GetDISyncInstanceInfo shows the instance started (so an unverified start must not be repeated)."""
    status = (info.data.status or "").upper()
    if task_type is TaskType.DI_REALTIME:
        return status in STARTED_STATES
    # For a solution, Data.Status only says the query worked; SolutionInfo.Status says whether it was started
    # ("init" before any start, "run" or "success" after).
    solution = info.data.solution_info
    solution_status = (solution.status or "").lower() if solution else ""
    return status == "SUCCESS" and solution_status in {"run", "success"}


def still_stopping(task_type: TaskType, info: InstanceInfoResponse) -> bool:
    """A real-time task being stopped (KILLING) refuses a start until it has stopped: wait for it."""
    return task_type is TaskType.DI_REALTIME and (info.data.status or "").upper() == "KILLING"


def start_may_have_happened(error: DataWorksError) -> bool:
    """After this error, could the start have taken effect server-side? Then the next try verifies first."""
    if isinstance(error, ThrottlingError) or not error.retryable:
        return False  # the gateway refused it, or the API answered with a definite failure
    if isinstance(error, TransportError) and not error.request_may_have_been_sent:  # noqa: SIM103
        return False  # never reached the server
    return True


# --- one resource per task ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskClaim:
    """A resource naming a DataWorks task: what decides whether it manages it."""

    uid: str
    name: str  # namespace/name, for the message the others show
    created: str  # creationTimestamp (RFC 3339, so it sorts as text)
    started: bool  # its status records a start


def task_owner(claims: list[TaskClaim]) -> TaskClaim | None:
    """Who manages a task several resources name: one that has started it (it already acts on the task), else the
    oldest; ties by uid, so every process agrees."""
    if not claims:
        return None
    return min(claims, key=lambda c: (not c.started, c.created, c.uid))


# --- deletion ----------------------------------------------------------------------------------------------------


class StopAction(StrEnum):
    STOP = "stop"  # StopDISyncInstance, then release the finalizer
    ORPHAN = "orphan"  # deletionPolicy Orphan: leave the task as it is (and say so)
    RELEASE = "release"  # nothing to stop: a solution, or a task this object never started


def decide_stop(spec: DISyncInstanceSpec, status: DISyncInstanceStatus, intent: StartIntent | None) -> StopAction:
    """What deletion does to the task. A start whose outcome is unknown counts as started: stopping a task that
    never ran is harmless, leaving one running that we started is not."""
    if spec.deletion_policy is DeletionPolicy.ORPHAN:
        return StopAction.ORPHAN
    if spec.task_type is not TaskType.DI_REALTIME:
        return StopAction.RELEASE  # only real-time tasks can be stopped
    return StopAction.STOP if started_by_us(status, intent) else StopAction.RELEASE


def started_by_us(status: DISyncInstanceStatus, intent: StartIntent | None) -> bool:
    return status.started_generation is not None or unanswered(status, intent) is not None


def orphaned_on_delete(spec: DISyncInstanceSpec, status: DISyncInstanceStatus, intent: StartIntent | None) -> bool:
    """An object let go without our finalizer: does it leave a task it started running (worth an Orphaned Event)?"""
    return (
        spec.task_type is TaskType.DI_REALTIME
        and spec.deletion_policy is DeletionPolicy.ORPHAN
        and started_by_us(status, intent)
    )
