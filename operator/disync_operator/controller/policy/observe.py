"""Following the live state: what a read of GetDISyncInstanceInfo changes, and when it is drift. For a started task,
for one observed only (managementPolicy ObserveOnly), and for a suspended one (no alarms)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from disync_operator.dataworks import InstanceInfoResponse
from disync_operator.types import DISyncInstanceStatus, StatusUpdate, TaskType

from .conditions import ConditionValue, conditions, set_condition
from .reasons import READY, SYNCED, Reason
from .start import RUNNING_STATES, STARTED_STATES, start_took_effect


@dataclass(frozen=True)
class Observation:
    """What a read of the live state changes: the status update (None: nothing a user would see changed), and the
    Warning to post when the task has just stopped running (None: no new drift)."""

    update: StatusUpdate | None
    drift: str | None = None


# What NotRunning becomes while restartPolicy OnFailure deals with it: the same drift, and what is done about it.
RESTART_REASONS = frozenset({Reason.RESTART_SCHEDULED, Reason.RESTART_LIMIT_REACHED})
NOT_RUNNING_REASONS = RESTART_REASONS | {Reason.NOT_RUNNING}


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
    is starting or running, and not again at every look while nothing changes. A restart scheduled for it (or refused
    by the hourly cap) stays the Ready condition while the task stays stopped."""
    state, message = info.data.status, info.data.message
    ready = live_condition(task_type, info)
    current = status.condition(READY)
    was_drifting = current is not None and current.reason in NOT_RUNNING_REASONS
    if ready[1] is Reason.NOT_RUNNING and current is not None and current.reason in RESTART_REASONS:
        ready = (current.status, Reason(current.reason), current.message)
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
    if ready[0] == "True" and status.next_retry_time is not None and status.started_generation == generation:
        update = update.merged(StatusUpdate(next_retry_time=None))  # running again: no restart is due any more
    drifts = ready[1] in NOT_RUNNING_REASONS and (not was_drifting or status.instance_state != state)
    return Observation(update, drift=f"live state {state}" if drifts else None)


def observed_only(
    status: DISyncInstanceStatus, generation: int, task_type: TaskType, info: InstanceInfoResponse, at: dt.datetime
) -> Observation:
    """managementPolicy ObserveOnly: status follows the live state, Ready True/Observed while the task runs (or
    starts), False/NotRunning otherwise; a drift is reported once per transition, as for a started task."""
    state, message = info.data.status, info.data.message
    running = start_took_effect(task_type, info)
    if running:
        ready: ConditionValue = ("True", Reason.OBSERVED, f"observed only; the task runs (live state {state})")
    else:
        ready = ("False", Reason.NOT_RUNNING, f"observed only; the live state is {state}: {message or 'no message'}")
    current = status.condition(READY)
    synced = status.condition(SYNCED)
    if (
        status.instance_state == state
        and status.instance_message == message
        and status.observed_generation == generation
        and status.observe_only_generation == generation
        and current is not None
        and (current.status, current.reason, current.observed_generation) == (*ready[:2], generation)
        and synced is not None
        and synced.status == "True"
    ):
        return Observation(None)
    update = StatusUpdate(
        instance_state=state,
        instance_message=message,
        last_observed_time=at,
        observed_generation=generation,
        observe_only_generation=generation,
        next_retry_time=None,
        last_error=None,
        conditions=conditions(status, generation, at, ready, ("True", Reason.RECONCILE_SUCCESS, "")),
    )
    was_drifting = current is not None and current.reason == Reason.NOT_RUNNING
    drifts = not running and (not was_drifting or status.instance_state != state)
    return Observation(update, drift=f"live state {state}" if drifts else None)


def observed_while_suspended(
    status: DISyncInstanceStatus, info: InstanceInfoResponse, at: dt.datetime
) -> StatusUpdate | None:
    """A suspended task's live state, recorded as it is and nothing more: no condition changes, no alarms."""
    state, message = info.data.status, info.data.message
    if status.instance_state == state and status.instance_message == message:
        return None
    return StatusUpdate(instance_state=state, instance_message=message, last_observed_time=at)
