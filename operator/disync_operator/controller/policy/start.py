"""The exactly-once rules: when to start, wait, verify or do nothing; the start intent; what deletion does.

A start is sent at most once per generation. Before the request leaves, a *start intent* goes on the object (one
metadata write with a resourceVersion precondition, so two processes can't both write one); the status write that
records the call's outcome *answers* it (`status.answeredIntent`). An intent whose outcome stays unknown (crash, lost
response, 5xx) is kept as `status.unverifiedIntent` and verified with GetDISyncInstanceInfo before any new start.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from pydantic import ValidationError

from disync_operator.dataworks import DataWorksError, InstanceInfoResponse, ThrottlingError, TransportError
from disync_operator.types import (
    DeletionPolicy,
    DISyncInstanceSpec,
    DISyncInstanceStatus,
    Intent,
    StartIntent,
    StopIntent,
    TaskType,
)

from .reasons import Reason

# Live states of a real-time task that mean "the start took effect".
STARTED_STATES = frozenset({"RUN", "WAIT"})
RUNNING_STATES = frozenset({"RUN"})


class Action(StrEnum):
    NOTHING = "nothing"  # already started (or terminally failed) for this generation and these credentials
    WAIT = "wait"  # a fresh start intent is in flight, or the backoff of a failed attempt runs: look again later
    VERIFY = "verify"  # a start may have happened (crash or lost response): ask GetDISyncInstanceInfo first
    ADOPT = "adopt"  # taking over from ObserveOnly: a running task is recorded as started (Adopted), else started
    CARRY = "carry"  # only lifecycle fields changed and the task still runs from our start: record, don't start
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


IntentT = TypeVar("IntentT", bound=Intent)


@dataclass(frozen=True)
class IntentOnObject(Generic[IntentT]):
    """An intent annotation as read: the intent, or (`unreadable`) an annotation that can't be trusted (not ours,
    malformed, or dated in the future). An unreadable start intent may still stand for a start that was sent, so it
    makes the next start verify first; it never makes anything wait."""

    intent: IntentT | None = None
    unreadable: str | None = None  # what is wrong with it


def read_intent(raw: str | None, kind: type[IntentT]) -> IntentOnObject[IntentT]:
    """The intent an annotation holds. Its date is not checked against any clock: the reader times it from when it
    first saw it (`IntentLease`), so a writer's clock far ahead or behind changes nothing."""
    if not raw:
        return IntentOnObject()
    try:
        return IntentOnObject(kind.model_validate_json(raw))
    except (ValidationError, ValueError, RecursionError):
        return IntentOnObject(unreadable=f"not a {kind.__name__}")


def intent_key(intent: Intent) -> str:
    """What identifies an intent to the reader's clock (intents written before ids existed: their contents)."""
    return intent.id or f"{intent.owner}|{intent.generation}|{intent.since.isoformat()}"


@dataclass(frozen=True)
class IntentLease:
    """How long a call announced by an intent may still be in flight or executing server-side, whoever sent it.

    The lease (DISYNC_START_LEASE_SECONDS) outlasts the client's timeouts. It runs on the reader's own clock: `age`
    is how long this process has seen the intent (`runtime.FirstSeen`), never the writer's date, so two processes
    whose clocks disagree can't both believe a call over. What that costs: a process that takes over an intent
    another one left unanswered waits a whole lease from its first sight of it."""

    seconds: float
    age: Callable[[Intent], float]

    def remaining(self, intent: Intent) -> float:
        """0 when the call can't be in flight any more; a call that got an HTTP answer is not in flight."""
        if intent.call_ended:
            return 0.0
        return max(0.0, self.seconds - self.age(intent))


def new_intent(generation: int, me: str, at: dt.datetime, *, restart: int | None = None) -> StartIntent:
    return StartIntent(generation=generation, since=at, owner=me, id=secrets.token_hex(8), restart=restart)


def new_stop_intent(generation: int, me: str, at: dt.datetime) -> StopIntent:
    return StopIntent(generation=generation, since=at, owner=me, id=secrets.token_hex(8))


def unanswered_stop(status: DISyncInstanceStatus, intent: StopIntent | None) -> StopIntent | None:
    """The stop intent whose outcome is unknown, if any (as `unanswered` for starts)."""
    if intent is not None and intent.id is not None and intent.id != status.answered_stop_intent:
        return intent
    return status.unverified_stop_intent


def last_start_generation(status: DISyncInstanceStatus, intent: StartIntent | None) -> int | None:
    """The newest generation a start was made for, or may have been made for (an intent with no known outcome)."""
    open_start = unanswered(status, intent)
    known = [g for g in (status.started_generation, open_start.generation if open_start else None) if g is not None]
    return max(known) if known else None


def stopped_since_started(status: DISyncInstanceStatus, intent: StartIntent | None) -> bool:
    """A suspend's stop took effect after the last start the operator made (or may have made), if any: the task is
    stopped by us. (A stop is only made for a suspended generation, a start only for another one, so generations
    order them.)"""
    stopped = status.stopped_generation
    if stopped is None:
        return False
    last = last_start_generation(status, intent)
    return last is None or stopped > last


def stop_may_be_pending(status: DISyncInstanceStatus, stop_intent: StopIntent | None) -> StopIntent | None:
    """A suspend's stop with no known outcome that came after the last recorded start: it may have stopped the task."""
    open_stop = unanswered_stop(status, stop_intent)
    if open_stop is None:
        return None
    started = status.started_generation
    return open_stop if started is None or open_stop.generation > started else None


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
    lease: IntentLease,
    at: dt.datetime,
    intent: StartIntent | None = None,
    unreadable_intent: bool = False,
    handed_over: bool = False,
    stop_intent: StopIntent | None = None,
    spec_digest: str | None = None,
) -> StartDecision:
    """`intent`: the start intent on the object, if any; `unreadable_intent`: there is an annotation that can't be
    read, so a start may have been sent that nothing records; `handed_over`: the task was another resource's until
    now (it may run, or be stopping); `stop_intent`: a suspend's stop intent on the object; `spec_digest`: the
    spec's `start_digest()` (None: every generation needs its start, as before lifecycle fields existed)."""
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
        wait = lease.remaining(open_intent)
        if wait > 0:
            return StartDecision(Action.WAIT, wait_seconds=wait, why=f"start in flight by {open_intent.owner}")
        return StartDecision(Action.VERIFY, why="an earlier start of this generation has no recorded outcome")
    open_stop = unanswered_stop(status, stop_intent)
    if open_stop is not None and lease.remaining(open_stop) > 0:
        # A suspend's stop may still execute: a start sent before it lands would be undone by it.
        wait = lease.remaining(open_stop)
        return StartDecision(Action.WAIT, wait_seconds=wait, why=f"stop in flight by {open_stop.owner}")
    if unreadable_intent:
        return StartDecision(Action.VERIFY, why="the start-intent annotation can't be read")
    if handed_over:
        return StartDecision(Action.VERIFY, why="the task was another resource's: its live state decides")
    if adopting(status):
        return StartDecision(Action.ADOPT, why="taking the task over from ObserveOnly: its live state decides")
    if (
        spec_digest is not None
        and status.started_generation is not None
        and status.started_spec_digest == spec_digest
        and not stopped_since_started(status, intent)
        and stop_may_be_pending(status, stop_intent) is None
        and (open_intent is None or open_intent.generation <= status.started_generation)
    ):
        return StartDecision(
            Action.CARRY, why=f"only lifecycle fields changed since generation {status.started_generation} started"
        )
    if stopped_since_started(status, intent):
        # A resume: the task may still be stopping from the suspend's stop (KILLING refuses a start with "fail",
        # which would read as terminal); its live state decides when to start.
        return StartDecision(Action.VERIFY, why="resuming after a suspend: the task may still be stopping")
    return StartDecision(Action.START)


class Verified(StrEnum):
    """What the live state read before a start decides."""

    STARTED = "started"  # it runs: record the generation as started, no call
    ADOPTED = "adopted"  # it runs and Full takes it over from ObserveOnly: record it, no call
    SPENT = "spent"  # our start's answer was lost and the task is not running: the start counts as made
    START = "start"  # send the start


def start_parameters_changed(status: DISyncInstanceStatus, spec_digest: str | None) -> bool:
    """The spec's start parameters differ from those the task was last started with (unknown: not changed). The
    one rule for leaving a detour that sent no start (ObserveOnly, suspend): a running task is kept as it is only
    if it runs with what the spec says."""
    return (
        spec_digest is not None and status.started_spec_digest is not None and status.started_spec_digest != spec_digest
    )


def after_verifying(
    *,
    running: bool,
    status: DISyncInstanceStatus,
    own_start: StartIntent | None,
    adopting: bool,
    spec_digest: str | None,
    restarts_counted: bool,
) -> Verified:
    """`running`: the live state shows the task started; `own_start`: the start of this generation being verified
    (None when the look is for another reason: adoption, a resume, a handover, an unreadable intent);
    `restarts_counted`: restartPolicy OnFailure, whose restarts an hourly cap counts."""
    if own_start is not None:
        if running:
            return Verified.STARTED
        # The request left and its answer never came: it may have started a task that then stopped (a task that
        # fails at once, say). Under OnFailure it counts as made, so the hourly cap bounds what follows. Under
        # Never it is sent again: most lost answers are resets before the cloud acted, and a network error is
        # retried; a task that ran and failed within the start lease may so be started again (docs/design.md).
        return Verified.SPENT if own_start.answer_lost and restarts_counted else Verified.START
    if not running or start_parameters_changed(status, spec_digest):
        return Verified.START
    return Verified.ADOPTED if adopting else Verified.STARTED


def adopting(status: DISyncInstanceStatus) -> bool:
    """The last generation handled was ObserveOnly, after any start of ours: Full takes the task over as it is."""
    observed_only = status.observe_only_generation
    started = status.started_generation
    return observed_only is not None and (started is None or observed_only > started)


def needs_finalizer(spec: DISyncInstanceSpec) -> bool:
    """Only a real-time task with deletionPolicy Stop, managed Full, has something to do at deletion: the others are
    let go at once, which saves each of them a write (and its deletion a round trip)."""
    return (
        spec.task_type is TaskType.DI_REALTIME and spec.deletion_policy is DeletionPolicy.STOP and not spec.observe_only
    )


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


def call_may_have_taken_effect(error: DataWorksError) -> bool:
    """After this error, could the call (a start, or a suspend's stop) have taken effect server-side? Then the next
    try verifies first."""
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
    if spec.task_type is not TaskType.DI_REALTIME or spec.observe_only:
        return StopAction.RELEASE  # only real-time tasks can be stopped; ObserveOnly never stops one
    if stopped_since_started(status, intent):
        return StopAction.RELEASE  # a suspend already stopped it: one stop is enough
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
