"""Helpers for end-to-end tests: manifests and waits on conditions (never sleeps)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

# Deadlines of the waits below. A wait returns as soon as its condition holds, so these only bound how long a broken
# run takes to fail; they are generous because a loaded 2-core CI machine is slow, not because anything takes long.
DEADLINE = 60.0


def dsi(name: str, file_id: int = 100, project_id: int = 10000, task_type: str = "DI_REALTIME", **spec: Any) -> str:
    body: dict[str, Any] = {"projectId": project_id, "taskType": task_type, "fileId": file_id, **spec}
    if task_type == "DI_REALTIME" and "startParam" not in spec and "startParamJSON" not in spec:
        body["startParam"] = {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}}
    return json.dumps(
        {"apiVersion": "disync.dev/v1alpha1", "kind": "DISyncInstance", "metadata": {"name": name}, "spec": body}
    )


def condition(obj: dict[str, Any], type_: str = "Ready") -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)


def wait_ready(kubectl: Kubectl, name: str, generation: int | None = None, timeout: float = DEADLINE) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.get_json("disyncinstance", name)
        cond = condition(obj)
        want = generation or obj["metadata"]["generation"]
        if cond and cond["status"] == "True" and cond.get("observedGeneration") == want:
            return obj
        return None

    return wait_for(ready, timeout=timeout, what=f"{name} to be Ready")


def wait_reason(kubectl: Kubectl, name: str, reason: str, timeout: float = DEADLINE) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.get_json("disyncinstance", name)
        cond = condition(obj)
        return obj if cond and cond["reason"] == reason else None

    return wait_for(reached, timeout=timeout, what=f"{name} to reach Ready reason {reason}")


def instance_state(emulator: EmulatorProcess, file_id: int) -> str:
    """The live state of a task as the emulator reports it now (RUN, WAIT, KILLING, PAUSE, NORUN)."""
    state: str = next(i for i in emulator.instances() if i["file_id"] == file_id)["state"]
    return state


def wait_instance_state(emulator: EmulatorProcess, file_id: int, state: str, timeout: float = DEADLINE) -> None:
    """Wait until the emulator reports `state` for the task. Its transient states (WAIT after a start, KILLING after a
    stop) last as long as its timings say, so a settled state is waited for, never read right after an action."""
    last: list[str] = []

    def reached() -> bool:
        last[:] = [instance_state(emulator, file_id)]
        return last[0] == state

    try:
        wait_for(reached, timeout=timeout, what=f"task {file_id} to be {state}")
    except AssertionError as error:
        raise AssertionError(f"{error}; the emulator last reported {last}") from None


def assert_live(operator: OperatorProcess, timeout: float = DEADLINE) -> None:
    """The operator process runs and its liveness endpoint answers 200. A dead process fails at once (`healthy`
    raises); a slow answer on a loaded machine is waited for, within far less than the kubelet would tolerate
    (deploy/: timeoutSeconds 5, failureThreshold 3, periodSeconds 20)."""
    wait_for(operator.healthy, timeout=timeout, what="the operator's /healthz to answer 200")


# The operator's own record of each retry of a start it schedules, its INFO line "start attempt N failed, retrying in
# X.Xs: ...": the attempt number and the delay it chose, to 0.1 s. Delays are checked from here, not from the time
# between calls: those gaps also hold however long this machine took for the calls and status writes in between.
RETRY_SCHEDULED = re.compile(r"start attempt (\d+) failed, retrying in ([0-9.]+)s")
LOGGED_DELAY_ROUNDING = 0.05  # "%.1f"


def scheduled_retries(operator: OperatorProcess) -> list[tuple[int, float]]:
    """(attempt, delay in seconds) for every retry the operator logged that it scheduled, in order."""
    found = []
    for record in operator.log_records():
        match = RETRY_SCHEDULED.match(str(record.get("message", "")))
        if match:
            found.append((int(match.group(1)), float(match.group(2))))
    return found


def backoff_step(env: Mapping[str, str], attempt: int) -> float:
    """The backoff step of `attempt` (1-based) under the operator's DISYNC_BACKOFF_* settings: base * factor^(n-1),
    capped. Equal jitter makes the actual delay lie between half the step and the step."""
    base, factor, cap = (float(env[f"DISYNC_BACKOFF_{key}"]) for key in ("BASE", "FACTOR", "CAP"))
    return min(cap, base * factor ** (attempt - 1))


def assert_backoff_schedule(retries: list[tuple[int, float]], env: Mapping[str, str]) -> None:
    """Every scheduled delay lies within its attempt's equal-jitter band [step/2, step] (no retry-after involved)."""
    wrong = [
        (attempt, delay, backoff_step(env, attempt))
        for attempt, delay in retries
        if not (
            backoff_step(env, attempt) / 2 - LOGGED_DELAY_ROUNDING
            <= delay
            <= backoff_step(env, attempt) + LOGGED_DELAY_ROUNDING
        )
    ]
    assert not wrong, f"delays outside [step/2, step] as (attempt, delay, step): {wrong}"
