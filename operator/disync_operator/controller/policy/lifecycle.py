"""The declarative lifecycle, as rules: the pause annotation, `spec.suspend` (a stop made exactly once, the way a
start is), `managementPolicy: ObserveOnly`, and `restartPolicy: OnFailure` with its hourly cap.

A suspend's stop follows the start's rules: a *stop intent* goes on the object before StopDISyncInstance leaves (one
metadata write with a resourceVersion precondition); the status write that records the outcome answers it
(`status.answeredStopIntent`); one with an unknown outcome is kept as `status.unverifiedStopIntent` and verified with
GetDISyncInstanceInfo (after the lease, if the call never got an answer) before any new stop. What the task last got
from the operator is told by generations: a stop is only made for a suspended generation and a start only for
another one, so `stoppedGeneration > startedGeneration` means "stopped by us".
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from disync_operator.dataworks import InstanceInfoResponse
from disync_operator.types import (
    PAUSED,
    DISyncInstanceSpec,
    DISyncInstanceStatus,
    RestartPolicy,
    StartIntent,
    StopIntent,
)

from .start import STARTED_STATES, IntentLease, stop_may_be_pending, stopped_since_started, unanswered

# Live states of a real-time task that stopped (whoever stopped it): a restart's reason. KILLING is still stopping.
STOPPED_STATES = frozenset({"PAUSE", "NORUN"})
HOUR = dt.timedelta(hours=1)


def paused(annotations: Mapping[str, str]) -> bool:
    """`disync.dev/paused: "true"` (exactly "true", as Crossplane's `crossplane.io/paused`)."""
    return annotations.get(PAUSED) == "true"


class Lifecycle(StrEnum):
    """What an object asks of the operator besides "keep it started" (the `lifecycle` label of the metric)."""

    PAUSED = "paused"
    OBSERVE_ONLY = "observe_only"
    SUSPENDED = "suspended"


def lifecycle(spec: DISyncInstanceSpec | None, annotations: Mapping[str, str]) -> Lifecycle | None:
    if paused(annotations):
        return Lifecycle.PAUSED
    if spec is not None and spec.observe_only:
        return Lifecycle.OBSERVE_ONLY
    if spec is not None and spec.suspend:
        return Lifecycle.SUSPENDED
    return None


# --- suspend -----------------------------------------------------------------------------------------------------


class SuspendAction(StrEnum):
    NOTHING = "nothing"  # stopped by us since the last start (or never started and stopped once): nothing to call
    WAIT = "wait"  # a start or a stop of ours may still be in flight, or a failed stop's backoff runs
    VERIFY = "verify"  # a stop may have happened (crash or lost response): ask GetDISyncInstanceInfo first
    STOP = "stop"


@dataclass(frozen=True)
class SuspendDecision:
    action: SuspendAction
    wait_seconds: float = 0.0
    why: str = ""


def decide_suspend(
    *,
    generation: int,
    status: DISyncInstanceStatus,
    start_intent: StartIntent | None,
    stop_intent: StopIntent | None,
    lease: IntentLease,
    at: dt.datetime,
) -> SuspendDecision:
    """A suspended generation: StopDISyncInstance once, unless the task is already stopped by us since our last
    start. A task never started by this resource is stopped once too: `suspend: true` says "not running"."""
    if stopped_since_started(status, start_intent):
        return SuspendDecision(SuspendAction.NOTHING, why=f"stopped at generation {status.stopped_generation}")
    open_start = unanswered(status, start_intent)
    if open_start is not None and lease.remaining(open_start) > 0:
        # A stop that lands before a start still executing would leave the task running.
        wait = lease.remaining(open_start)
        return SuspendDecision(SuspendAction.WAIT, wait_seconds=wait, why=f"start in flight by {open_start.owner}")
    retry_at = status.next_retry_time
    if retry_at is not None and status.observed_generation == generation and retry_at > at:
        wait = (retry_at - at).total_seconds()
        return SuspendDecision(SuspendAction.WAIT, wait_seconds=wait, why=f"backing off until {retry_at.isoformat()}")
    open_stop = stop_may_be_pending(status, stop_intent)
    if open_stop is not None:
        wait = lease.remaining(open_stop)
        if wait > 0:
            return SuspendDecision(SuspendAction.WAIT, wait_seconds=wait, why=f"stop in flight by {open_stop.owner}")
        return SuspendDecision(SuspendAction.VERIFY, why="an earlier stop has no recorded outcome")
    return SuspendDecision(SuspendAction.STOP)


def stop_took_effect(info: InstanceInfoResponse) -> bool:
    """Whether GetDISyncInstanceInfo shows a real-time task stopped or stopping (so a stop must not be repeated)."""
    return (info.data.status or "").upper() not in STARTED_STATES


# --- restart on failure ------------------------------------------------------------------------------------------


class RestartAction(StrEnum):
    NOTHING = "nothing"  # no restart is due
    SCHEDULE = "schedule"  # found stopped: set when the restart is due (the backoff), in status
    WAIT = "wait"  # the backoff runs, or a restart of ours may still be in flight
    LIMIT = "limit"  # DISYNC_MAX_RESTARTS_PER_HOUR reached: say so, look again when the oldest leaves the hour
    VERIFY = "verify"  # a restart may have happened (crash or lost response): ask GetDISyncInstanceInfo first
    RESTART = "restart"  # read the live state once more, and start the task if it is still stopped


@dataclass(frozen=True)
class RestartDecision:
    action: RestartAction
    wait_seconds: float = 0.0
    restart: int = 0  # which restart (status.restarts once it took effect)
    why: str = ""


def restart_wanted(spec: DISyncInstanceSpec, status: DISyncInstanceStatus, generation: int) -> bool:
    """restartPolicy OnFailure on a generation we started, not suspended: our own stops come only with suspend (and
    deletion), so a stop found now is someone else's or a failure."""
    return (
        spec.restart_policy is RestartPolicy.ON_FAILURE
        and not spec.suspend
        and not spec.observe_only
        and status.started_generation == generation
    )


def found_stopped(status: DISyncInstanceStatus) -> bool:
    """The live state read after our last (re)start says stopped. (A state read before it says nothing about it.)"""
    observed, started = status.last_observed_time, status.last_start_time
    return (
        (status.instance_state or "").upper() in STOPPED_STATES
        and observed is not None
        and (started is None or observed >= started)
    )


def recent_restarts(status: DISyncInstanceStatus, at: dt.datetime) -> list[dt.datetime]:
    """The restarts of the last hour, oldest first."""
    return sorted(t for t in status.restart_times if at - t < HOUR)


def decide_restart(
    *,
    generation: int,
    spec: DISyncInstanceSpec,
    status: DISyncInstanceStatus,
    intent: StartIntent | None,
    lease: IntentLease,
    max_per_hour: int,
    at: dt.datetime,
) -> RestartDecision:
    if not restart_wanted(spec, status, generation):
        return RestartDecision(RestartAction.NOTHING)
    open_intent = unanswered(status, intent)
    if (
        open_intent is not None
        and open_intent.restart is not None
        and open_intent.generation == generation
        and open_intent.restart > status.restarts
    ):
        wait = lease.remaining(open_intent)
        if wait > 0:
            why = f"restart {open_intent.restart} in flight by {open_intent.owner}"
            return RestartDecision(RestartAction.WAIT, wait_seconds=wait, restart=open_intent.restart, why=why)
        why = f"restart {open_intent.restart} has no recorded outcome"
        return RestartDecision(RestartAction.VERIFY, restart=open_intent.restart, why=why)
    if not found_stopped(status):
        return RestartDecision(RestartAction.NOTHING)
    window = recent_restarts(status, at)
    if len(window) >= max_per_hour:
        wait = (window[0] + HOUR - at).total_seconds()
        return RestartDecision(RestartAction.LIMIT, wait_seconds=wait, why=f"{len(window)} restarts in the last hour")
    restart = status.restarts + 1
    retry_at = status.next_retry_time
    if retry_at is None:
        return RestartDecision(RestartAction.SCHEDULE, restart=restart, why=f"restart {len(window) + 1} this hour")
    if retry_at > at:
        wait = (retry_at - at).total_seconds()
        return RestartDecision(RestartAction.WAIT, wait_seconds=wait, restart=restart, why="restart backoff")
    return RestartDecision(RestartAction.RESTART, restart=restart)
