"""Following the live state of a started task: what a read of GetDISyncInstanceInfo changes, and when it is drift."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from disync_operator.dataworks import InstanceInfoResponse
from disync_operator.types import DISyncInstanceStatus, StatusUpdate, TaskType

from .conditions import ConditionValue, set_condition
from .reasons import READY, Reason
from .start import RUNNING_STATES, STARTED_STATES, start_took_effect


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
