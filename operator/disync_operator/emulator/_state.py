"""The pure state machine behind the four DI sync-instance actions.

No HTTP and no background tasks: every transient state (WAIT after a start, KILLING after a stop) is derived lazily
from the timestamp of the transition and an injectable monotonic clock, so unit tests move time by hand and the
server never has timers to cancel.

Real-time task lifecycle (``Data.Status`` of GetDISyncInstanceInfo)::

    NORUN/PAUSE --start--> WAIT --(start_wait_seconds)--> RUN
    WAIT/RUN    --stop---> KILLING --(stop_seconds)--> PAUSE (or NORUN, timings.stop_state)
    any         --terminate--> NORUN (undeployed)
    WAIT/RUN    --fail---> NORUN (or PAUSE, as the failure says)

Besides the API, the admin calls act as a person in the DataWorks console would (`console_start`, `console_stop`:
not API calls, so not in the request log or the API counts), or make the task fail (`fail`): now if it runs, and
after each of the next starts, so tests can drive drift.

Choices where the cloud's behaviour is not documented (kept deliberately simple and stable):

* start on WAIT or RUN succeeds and counts as a start (the cloud reports success for an already running task);
  the WAIT timer is not restarted;
* start while KILLING answers ``Data.Status: fail`` (the task must finish stopping first);
* stop on PAUSE/NORUN/KILLING succeeds without changing anything (idempotent) and counts as a stop;
* start after terminate redeploys implicitly and behaves like a start from NORUN;
* Stop/Terminate with ``TaskType=DI_SOLUTION`` is a 400 ``Param.Invalid`` (both are real-time-only operations);
* a started solution reports ``SolutionInfo.Status: run`` with its steps progressing during the start wait and all
  ``success`` afterwards; a never-started one reports ``init``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from disync_operator.emulator._config import (
    TASK_TYPES,
    AccessKeyConfig,
    ConsoleFailure,
    EmulatorConfig,
    TimingsConfig,
)
from disync_operator.emulator._errors import ApiError, forbidden, param_invalid

Clock = Callable[[], float]

DDL_TYPES: tuple[str, ...] = (
    "ADDCOLUMN",
    "DROPCOLUMN",
    "RENAMECOLUMN",
    "MODIFYCOLUMN",
    "CREATETABLE",
    "DROPTABLE",
    "RENAMETABLE",
    "TRUNCATETABLE",
)
DDL_MARKS: tuple[str, ...] = ("NORMAL", "IGNORE", "WARNING", "CRITICAL")
_START_PARAM_SHAPE: dict[str, tuple[str, ...]] = {
    "failoverLimit": ("count", "interval"),
    "errorLimit": ("record",),
    "ddlMarkMap": DDL_TYPES,
}

# Strict decimal: int() alone would accept " 12", "+12" and "1_2", which the cloud's long parser rejects.
_POSITIVE_INT = re.compile(r"^[0-9]{1,19}$")

_SOLUTION_STEPS: tuple[str, ...] = ("Check resources", "Full synchronization", "Start real-time synchronization")

Phase = Literal["settled", "starting", "stopping"]


@dataclass(frozen=True)
class DispatchResult:
    """A 200 answer: the ``Data`` object and the outcome recorded in the request log ("success" or "fail")."""

    data: dict[str, Any]
    outcome: str


@dataclass(frozen=True)
class InstanceView:
    project_id: int
    file_id: int
    task_type: str
    name: str
    state: str
    deployed: bool
    start_count: int
    stop_count: int
    terminate_count: int
    last_start_param: dict[str, Any] | None
    console_start_count: int = 0
    console_stop_count: int = 0
    failure_count: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "project": self.project_id,
            "file_id": self.file_id,
            "task_type": self.task_type,
            "name": self.name,
            "state": self.state,
            "deployed": self.deployed,
            "start_count": self.start_count,
            "stop_count": self.stop_count,
            "terminate_count": self.terminate_count,
            "last_start_param": self.last_start_param,
            "console_start_count": self.console_start_count,
            "console_stop_count": self.console_stop_count,
            "failure_count": self.failure_count,
        }


@dataclass
class _Instance:
    project_id: int
    file_id: int
    task_type: str
    name: str
    phase: Phase = "settled"
    settled_state: str = "NORUN"
    since: float = 0.0
    stop_target: str = "PAUSE"
    deployed: bool = True
    ever_started: bool = False
    start_count: int = 0
    stop_count: int = 0
    terminate_count: int = 0
    last_start_param: dict[str, Any] | None = field(default=None)
    console_start_count: int = 0
    console_stop_count: int = 0
    failure_count: int = 0
    # A failure armed by `fail`: how many more runs fail (None: every one), after how long, into which state.
    failures_left: int | None = 0
    fail_run_seconds: float = 0.0
    fail_state: str = "NORUN"
    fail_at: float | None = None  # when the current run fails, if it does

    def state_at(self, now: float, timings: TimingsConfig) -> str:
        if self.phase == "starting":
            if now < self.since + timings.start_wait_seconds:
                return "WAIT"
            return self.fail_state if self.fail_at is not None and now >= self.fail_at else "RUN"
        if self.phase == "stopping":
            return "KILLING" if now < self.since + timings.stop_seconds else self.stop_target
        return self.settled_state

    def view(self, now: float, timings: TimingsConfig) -> InstanceView:
        return InstanceView(
            project_id=self.project_id,
            file_id=self.file_id,
            task_type=self.task_type,
            name=self.name,
            state=self.state_at(now, timings),
            deployed=self.deployed,
            start_count=self.start_count,
            stop_count=self.stop_count,
            terminate_count=self.terminate_count,
            last_start_param=self.last_start_param,
            console_start_count=self.console_start_count,
            console_stop_count=self.console_stop_count,
            failure_count=self.failure_count,
        )

    def begin_run(self, now: float, timings: TimingsConfig) -> None:
        """A start (by the API or the console) of a stopped task: WAIT, then RUN, then a failure if one is armed."""
        self.phase, self.since, self.fail_at = "starting", now, None
        if self.failures_left is None or self.failures_left > 0:
            self.fail_at = now + timings.start_wait_seconds + self.fail_run_seconds
            self.failure_count += 1
            if self.failures_left is not None:
                self.failures_left -= 1

    def begin_stop(self, now: float, target: str) -> None:
        self.phase, self.since, self.stop_target, self.fail_at = "stopping", now, target, None


def _fail(message: str, **extra: Any) -> DispatchResult:
    return DispatchResult({"Status": "fail", "Message": message, **extra}, "fail")


def _ok(**data: Any) -> DispatchResult:
    return DispatchResult({"Status": "success", "Message": None, **data}, "success")


def _positive_int(query: Mapping[str, str], name: str) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        raise param_invalid(f"{name} is mandatory for this action.")
    if not _POSITIVE_INT.match(raw) or int(raw) <= 0 or int(raw) > 2**63 - 1:
        raise param_invalid(f"{name} must be a positive integer, got {raw!r}.")
    return int(raw)


def _task_type(query: Mapping[str, str]) -> str:
    raw = query.get("TaskType")
    if raw is None or raw == "":
        raise param_invalid("TaskType is mandatory for this action.")
    if raw not in TASK_TYPES:
        raise param_invalid(f"TaskType must be one of {', '.join(TASK_TYPES)}, got {raw!r}.")
    return raw


def _non_negative_int(value: Any, path: str) -> int:
    # bool is an int subclass in Python but not in JSON; true must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise param_invalid(f"StartParam.{path} must be a non-negative integer.")
    return value


def validate_start_param(raw: str | None) -> dict[str, Any] | None:
    """Parse and check StartParam against the documented keys; None when absent or empty."""
    if raw is None or raw.strip() == "":
        return None
    try:
        parsed = json.loads(raw)
    except ValueError:
        raise param_invalid("StartParam is not valid JSON.") from None
    if not isinstance(parsed, dict):
        raise param_invalid("StartParam must be a JSON object.")
    for key, value in parsed.items():
        allowed = _START_PARAM_SHAPE.get(key)
        if allowed is None:
            raise param_invalid(f"StartParam.{key} is not a known key (known: {', '.join(_START_PARAM_SHAPE)}).")
        if not isinstance(value, dict):
            raise param_invalid(f"StartParam.{key} must be a JSON object.")
        for sub, subvalue in value.items():
            if sub not in allowed:
                raise param_invalid(f"StartParam.{key}.{sub} is not a known key (known: {', '.join(allowed)}).")
            if key == "ddlMarkMap":
                if subvalue not in DDL_MARKS:
                    raise param_invalid(f"StartParam.ddlMarkMap.{sub} must be one of {', '.join(DDL_MARKS)}.")
            else:
                _non_negative_int(subvalue, f"{key}.{sub}")
    return parsed


class EmulatorState:
    """Registry of projects/tasks and their instance state. Thread-safe: the server runs on one loop while tests
    may inspect it from another thread."""

    def __init__(self, config: EmulatorConfig, clock: Clock | None = None) -> None:
        self._config = config
        self._clock: Clock = clock or time.monotonic
        self._lock = threading.RLock()
        self._projects: set[int] = {project.id for project in config.projects}
        self._instances: dict[tuple[int, int], _Instance] = {}
        self.reset()

    @property
    def timings(self) -> TimingsConfig:
        return self._config.timings

    def reset(self) -> None:
        """Forget every start/stop: all tasks back to deployed NORUN with zero counts."""
        with self._lock:
            self._instances = {
                (project.id, task.file_id): _Instance(project.id, task.file_id, task.task_type, task.name)
                for project in self._config.projects
                for task in project.tasks
            }

    def instances(self) -> list[InstanceView]:
        with self._lock:
            now = self._clock()
            return [inst.view(now, self.timings) for _, inst in sorted(self._instances.items())]

    def instance(self, project_id: int, file_id: int) -> InstanceView:
        with self._lock:
            return self._instances[(project_id, file_id)].view(self._clock(), self.timings)

    def dispatch(self, action: str, query: Mapping[str, str], access_key: AccessKeyConfig) -> DispatchResult:
        """Run one action. Raises ApiError for 4xx answers (Param.Invalid, Forbidden.Access)."""
        handler = {
            "StartDISyncInstance": self._start,
            "StopDISyncInstance": self._stop,
            "GetDISyncInstanceInfo": self._get,
            "TerminateDISyncInstance": self._terminate,
        }.get(action)
        if handler is None:
            raise KeyError(action)
        # Validation order: presence/type of the common parameters, then authorisation of the project, then the
        # action-specific checks; so a malformed request never reveals whether a project exists.
        project_id = _positive_int(query, "ProjectId")
        task_type = _task_type(query)
        file_id = _positive_int(query, "FileId")
        if project_id not in self._projects or not access_key.may_access(project_id):
            raise forbidden()
        with self._lock:
            return handler(project_id, file_id, task_type, query)

    # -- the console (admin calls, not the API) ---------------------------------------------------------------

    def _console_task(self, project_id: int, file_id: int) -> _Instance:
        found = self._instances.get((project_id, file_id))
        if found is None:
            raise ApiError(404, "InvalidFile.NotFound", f"project {project_id} has no task {file_id}.")
        if found.task_type != "DI_REALTIME":
            raise param_invalid("Only a DI_REALTIME task can be started, stopped or made to fail in the console.")
        return found

    def console_start(self, project_id: int, file_id: int) -> InstanceView:
        """Start a stopped real-time task as a person in the console would (not an API call)."""
        with self._lock:
            found = self._console_task(project_id, file_id)
            now = self._clock()
            state = found.state_at(now, self.timings)
            if state == "KILLING":
                raise ApiError(409, "Task.Stopping", f"fileId:[{file_id}] is being stopped.")
            if state not in ("WAIT", "RUN"):
                found.begin_run(now, self.timings)
            found.deployed = True
            found.console_start_count += 1
            return found.view(now, self.timings)

    def console_stop(self, project_id: int, file_id: int) -> InstanceView:
        """Stop a running real-time task as a person in the console would (not an API call)."""
        with self._lock:
            found = self._console_task(project_id, file_id)
            now = self._clock()
            if found.state_at(now, self.timings) in ("WAIT", "RUN"):
                found.begin_stop(now, self.timings.stop_state)
            found.console_stop_count += 1
            return found.view(now, self.timings)

    def fail(self, project_id: int, file_id: int, failure: ConsoleFailure) -> InstanceView:
        """Make the task fail: now, if it runs, and after each of the next `failure.times` starts."""
        with self._lock:
            found = self._console_task(project_id, file_id)
            now = self._clock()
            found.failures_left = failure.times
            found.fail_run_seconds = failure.run_seconds
            found.fail_state = failure.state
            if failure.times == 0:
                found.fail_at = None  # healed: the current run goes on
            elif found.state_at(now, self.timings) in ("WAIT", "RUN"):
                found.phase, found.settled_state, found.since, found.fail_at = "settled", failure.state, now, None
                found.failure_count += 1
                if found.failures_left is not None:
                    found.failures_left -= 1
            return found.view(now, self.timings)

    # -- actions; called with the lock held ------------------------------------------------------------------

    def _lookup(self, project_id: int, file_id: int, task_type: str) -> _Instance | DispatchResult:
        inst = self._instances.get((project_id, file_id))
        if inst is None:
            return _fail(f"fileId:[{file_id}] is invalid.")
        if inst.task_type != task_type:
            return _fail(f"fileId:[{file_id}] is a {inst.task_type} task, not {task_type}.")
        return inst

    def _start(self, project_id: int, file_id: int, task_type: str, query: Mapping[str, str]) -> DispatchResult:
        # The doc: for DI_SOLUTION "the StartParam parameter does not take effect", so it is not even parsed.
        start_param = validate_start_param(query.get("StartParam")) if task_type == "DI_REALTIME" else None
        found = self._lookup(project_id, file_id, task_type)
        if isinstance(found, DispatchResult):
            return found
        now = self._clock()
        state = found.state_at(now, self.timings)
        if state == "KILLING":
            return _fail(f"fileId:[{file_id}] is being stopped; start it again once it has stopped.")
        if state not in ("WAIT", "RUN"):
            found.begin_run(now, self.timings)
        found.deployed = True
        found.ever_started = True
        found.start_count += 1
        found.last_start_param = start_param
        return _ok()

    def _stop(self, project_id: int, file_id: int, task_type: str, query: Mapping[str, str]) -> DispatchResult:
        if task_type != "DI_REALTIME":
            raise param_invalid("TaskType must be DI_REALTIME for StopDISyncInstance.")
        found = self._lookup(project_id, file_id, task_type)
        if isinstance(found, DispatchResult):
            return found
        now = self._clock()
        if found.state_at(now, self.timings) in ("WAIT", "RUN"):
            found.begin_stop(now, self.timings.stop_state)
        found.stop_count += 1
        return _ok()

    def _terminate(self, project_id: int, file_id: int, task_type: str, query: Mapping[str, str]) -> DispatchResult:
        if task_type != "DI_REALTIME":
            raise param_invalid("TaskType must be DI_REALTIME for TerminateDISyncInstance.")
        found = self._lookup(project_id, file_id, task_type)
        if isinstance(found, DispatchResult):
            return found
        found.phase, found.settled_state, found.since, found.fail_at = "settled", "NORUN", self._clock(), None
        found.deployed = False
        found.terminate_count += 1
        return _ok()

    def _get(self, project_id: int, file_id: int, task_type: str, query: Mapping[str, str]) -> DispatchResult:
        found = self._lookup(project_id, file_id, task_type)
        if isinstance(found, DispatchResult):
            return DispatchResult({**found.data, "Name": None, "SolutionInfo": None}, found.outcome)
        state = found.state_at(self._clock(), self.timings)
        if task_type == "DI_REALTIME":
            return DispatchResult(
                {"Status": state, "Message": None, "Name": found.name, "SolutionInfo": None}, "success"
            )
        return _ok(Name=None, SolutionInfo=self._solution_info(found, state))

    def _solution_info(self, inst: _Instance, state: str) -> dict[str, Any]:
        if not inst.ever_started:
            overall, steps = "init", ["init"] * len(_SOLUTION_STEPS)
        elif state == "WAIT":
            overall, steps = "run", ["success", "run"] + ["init"] * (len(_SOLUTION_STEPS) - 2)
        else:
            overall, steps = "run", ["success"] * len(_SOLUTION_STEPS)
        return {
            "CreatorName": "emulator",
            "Id": inst.file_id,
            "Status": overall,
            "StepDetail": [
                {"Info": f"{name}: {status}", "Status": status, "StepId": index, "StepName": name}
                for index, (name, status) in enumerate(zip(_SOLUTION_STEPS, steps, strict=True), start=1)
            ],
        }
