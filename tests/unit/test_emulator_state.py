"""The emulator's pure state machine, driven by a hand-moved clock (no HTTP, no sleeps)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from disync_operator.emulator import ApiError, ConsoleFailure, EmulatorConfig, EmulatorState, demo_config
from disync_operator.emulator._state import validate_start_param

PROJECT = "10000"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_config(**timings: Any) -> EmulatorConfig:
    return EmulatorConfig.model_validate(
        {
            "access_keys": [
                {"id": "all", "secret": "s1", "projects": "*"},
                {"id": "only-20000", "secret": "s2", "projects": [20000]},
            ],
            "projects": [
                {
                    "id": 10000,
                    "tasks": [
                        {"file_id": 100, "task_type": "DI_REALTIME", "name": "orders_realtime"},
                        {"file_id": 200, "task_type": "DI_SOLUTION", "name": "warehouse_solution"},
                    ],
                },
                {"id": 20000, "tasks": [{"file_id": 300, "task_type": "DI_REALTIME", "name": "other"}]},
            ],
            "timings": {"start_wait_seconds": 5, "stop_seconds": 2, **timings},
        }
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def config() -> EmulatorConfig:
    return make_config()


@pytest.fixture
def state(config: EmulatorConfig, clock: FakeClock) -> EmulatorState:
    return EmulatorState(config, clock)


def call(
    state: EmulatorState,
    config: EmulatorConfig,
    action: str,
    file_id: int | str = 100,
    task_type: str = "DI_REALTIME",
    *,
    key: int = 0,
    project: str = PROJECT,
    **extra: str,
) -> dict[str, Any]:
    query = {"ProjectId": project, "FileId": str(file_id), "TaskType": task_type, **extra}
    return state.dispatch(action, query, config.access_keys[key]).data


def status(state: EmulatorState, config: EmulatorConfig, file_id: int = 100) -> str:
    data = call(state, config, "GetDISyncInstanceInfo", file_id)
    return str(data["Status"])


def test_start_goes_wait_then_run(state: EmulatorState, config: EmulatorConfig, clock: FakeClock) -> None:
    assert status(state, config) == "NORUN"
    assert call(state, config, "StartDISyncInstance") == {"Status": "success", "Message": None}
    assert status(state, config) == "WAIT"
    clock.advance(4.99)
    assert status(state, config) == "WAIT"
    clock.advance(0.02)
    assert status(state, config) == "RUN"
    view = state.instance(10000, 100)
    assert (view.state, view.start_count, view.stop_count) == ("RUN", 1, 0)


def test_stop_goes_killing_then_pause(state: EmulatorState, config: EmulatorConfig, clock: FakeClock) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    assert call(state, config, "StopDISyncInstance") == {"Status": "success", "Message": None}
    assert status(state, config) == "KILLING"
    clock.advance(2.01)
    assert status(state, config) == "PAUSE"
    assert state.instance(10000, 100).stop_count == 1


def test_stop_state_norun_is_configurable(clock: FakeClock) -> None:
    config = make_config(stop_state="NORUN")
    state = EmulatorState(config, clock)
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    call(state, config, "StopDISyncInstance")
    clock.advance(3)
    assert status(state, config) == "NORUN"


def test_stop_during_wait_stops(state: EmulatorState, config: EmulatorConfig, clock: FakeClock) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(1)
    call(state, config, "StopDISyncInstance")
    assert status(state, config) == "KILLING"
    clock.advance(100)
    assert status(state, config) == "PAUSE"


def test_start_while_running_succeeds_and_counts(
    state: EmulatorState, config: EmulatorConfig, clock: FakeClock
) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(3)
    # A second start during WAIT does not restart the WAIT timer.
    assert call(state, config, "StartDISyncInstance")["Status"] == "success"
    clock.advance(2.5)
    assert status(state, config) == "RUN"
    assert call(state, config, "StartDISyncInstance")["Status"] == "success"
    assert status(state, config) == "RUN"
    assert state.instance(10000, 100).start_count == 3


def test_start_while_killing_fails_without_counting(
    state: EmulatorState, config: EmulatorConfig, clock: FakeClock
) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    call(state, config, "StopDISyncInstance")
    data = call(state, config, "StartDISyncInstance")
    assert data["Status"] == "fail"
    assert "fileId:[100]" in data["Message"]
    assert state.instance(10000, 100).start_count == 1
    clock.advance(2)
    assert call(state, config, "StartDISyncInstance")["Status"] == "success"
    assert status(state, config) == "WAIT"


def test_restart_from_pause(state: EmulatorState, config: EmulatorConfig, clock: FakeClock) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    call(state, config, "StopDISyncInstance")
    clock.advance(10)
    call(state, config, "StartDISyncInstance")
    assert status(state, config) == "WAIT"
    clock.advance(5)
    assert status(state, config) == "RUN"
    view = state.instance(10000, 100)
    assert (view.start_count, view.stop_count) == (2, 1)


def test_stop_when_not_running_is_idempotent(state: EmulatorState, config: EmulatorConfig) -> None:
    assert call(state, config, "StopDISyncInstance")["Status"] == "success"
    assert status(state, config) == "NORUN"
    assert state.instance(10000, 100).stop_count == 1


def test_terminate_undeploys(state: EmulatorState, config: EmulatorConfig, clock: FakeClock) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    assert call(state, config, "TerminateDISyncInstance") == {"Status": "success", "Message": None}
    view = state.instance(10000, 100)
    assert (view.state, view.deployed, view.terminate_count) == ("NORUN", False, 1)
    # A later start redeploys.
    call(state, config, "StartDISyncInstance")
    assert state.instance(10000, 100).deployed is True
    assert status(state, config) == "WAIT"


def test_get_realtime_shape(state: EmulatorState, config: EmulatorConfig) -> None:
    assert call(state, config, "GetDISyncInstanceInfo") == {
        "Status": "NORUN",
        "Message": None,
        "Name": "orders_realtime",
        "SolutionInfo": None,
    }


def test_solution_lifecycle_and_shape(state: EmulatorState, config: EmulatorConfig, clock: FakeClock) -> None:
    data = call(state, config, "GetDISyncInstanceInfo", 200, "DI_SOLUTION")
    assert data["Status"] == "success"
    assert data["Message"] is None
    assert data["Name"] is None
    info = data["SolutionInfo"]
    assert set(info) == {"CreatorName", "Id", "Status", "StepDetail"}
    assert info["Id"] == 200
    assert info["Status"] == "init"
    assert all(set(step) == {"Info", "Status", "StepId", "StepName"} for step in info["StepDetail"])
    # StartParam is ignored for solutions, even when it would be invalid for a real-time task.
    assert call(state, config, "StartDISyncInstance", 200, "DI_SOLUTION", StartParam="not json")["Status"] == "success"
    assert state.instance(10000, 200).last_start_param is None
    during = call(state, config, "GetDISyncInstanceInfo", 200, "DI_SOLUTION")["SolutionInfo"]
    assert during["Status"] == "run"
    assert [step["Status"] for step in during["StepDetail"]] != ["success"] * len(during["StepDetail"])
    clock.advance(5)
    after = call(state, config, "GetDISyncInstanceInfo", 200, "DI_SOLUTION")["SolutionInfo"]
    assert after["Status"] == "run"
    assert [step["Status"] for step in after["StepDetail"]] == ["success"] * len(after["StepDetail"])


@pytest.mark.parametrize("action", ["StartDISyncInstance", "StopDISyncInstance", "TerminateDISyncInstance"])
def test_unknown_file_id_message(state: EmulatorState, config: EmulatorConfig, action: str) -> None:
    result = state.dispatch(
        action, {"ProjectId": PROJECT, "FileId": "999", "TaskType": "DI_REALTIME"}, config.access_keys[0]
    )
    assert result.data == {"Status": "fail", "Message": "fileId:[999] is invalid."}
    assert result.outcome == "fail"


def test_unknown_file_id_get(state: EmulatorState, config: EmulatorConfig) -> None:
    assert call(state, config, "GetDISyncInstanceInfo", 999) == {
        "Status": "fail",
        "Message": "fileId:[999] is invalid.",
        "Name": None,
        "SolutionInfo": None,
    }


def test_task_type_mismatch(state: EmulatorState, config: EmulatorConfig) -> None:
    data = call(state, config, "StartDISyncInstance", 100, "DI_SOLUTION")
    assert data["Status"] == "fail"
    assert data["Message"] == "fileId:[100] is a DI_REALTIME task, not DI_SOLUTION."
    data = call(state, config, "GetDISyncInstanceInfo", 200, "DI_REALTIME")
    assert data["Status"] == "fail"
    assert "DI_SOLUTION" in data["Message"]
    assert state.instance(10000, 100).start_count == 0


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"FileId": "100", "TaskType": "DI_REALTIME"}, "ProjectId is mandatory"),
        ({"ProjectId": "abc", "FileId": "100", "TaskType": "DI_REALTIME"}, "ProjectId must be a positive integer"),
        ({"ProjectId": "10000", "FileId": "1.5", "TaskType": "DI_REALTIME"}, "FileId must be a positive integer"),
        ({"ProjectId": "10000", "FileId": " 100", "TaskType": "DI_REALTIME"}, "FileId must be a positive integer"),
        ({"ProjectId": "10000", "FileId": "0", "TaskType": "DI_REALTIME"}, "FileId must be a positive integer"),
        ({"ProjectId": "10000", "TaskType": "DI_REALTIME"}, "FileId is mandatory"),
        ({"ProjectId": "10000", "FileId": "100"}, "TaskType is mandatory"),
        ({"ProjectId": "10000", "FileId": "100", "TaskType": "DI_BATCH"}, "TaskType must be one of"),
    ],
)
def test_param_invalid(state: EmulatorState, config: EmulatorConfig, query: dict[str, str], fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        state.dispatch("StartDISyncInstance", query, config.access_keys[0])
    assert (caught.value.http_status, caught.value.code) == (400, "Param.Invalid")
    assert fragment in caught.value.message


@pytest.mark.parametrize("action", ["StopDISyncInstance", "TerminateDISyncInstance"])
def test_stop_and_terminate_are_realtime_only(state: EmulatorState, config: EmulatorConfig, action: str) -> None:
    with pytest.raises(ApiError) as caught:
        call(state, config, action, 200, "DI_SOLUTION")
    assert caught.value.code == "Param.Invalid"
    assert "DI_REALTIME" in caught.value.message


@pytest.mark.parametrize(("project", "key"), [("10000", 1), ("99999", 0), ("99999", 1)])
def test_forbidden_access(state: EmulatorState, config: EmulatorConfig, project: str, key: int) -> None:
    with pytest.raises(ApiError) as caught:
        call(state, config, "StartDISyncInstance", key=key, project=project)
    assert (caught.value.http_status, caught.value.code) == (403, "Forbidden.Access")
    # The key restricted to project 20000 does work there.
    call(state, config, "GetDISyncInstanceInfo", 300, key=1, project="20000")


def test_param_invalid_precedes_forbidden(state: EmulatorState, config: EmulatorConfig) -> None:
    with pytest.raises(ApiError) as caught:
        call(state, config, "StartDISyncInstance", "x", project="99999")
    assert caught.value.code == "Param.Invalid"


DOC_START_PARAM = (
    '{"failoverLimit":{"count":10,"interval":30},"errorLimit":{"record":0},"ddlMarkMap":{"RENAMECOLUMN":"WARNING",'
    '"DROPTABLE":"WARNING","CREATETABLE":"IGNORE","MODIFYCOLUMN":"WARNING","TRUNCATETABLE":"NORMAL",'
    '"DROPCOLUMN":"IGNORE","ADDCOLUMN":"NORMAL","RENAMETABLE":"CRITICAL"}}'
)


def test_documented_start_param_is_recorded(state: EmulatorState, config: EmulatorConfig) -> None:
    call(state, config, "StartDISyncInstance", StartParam=DOC_START_PARAM)
    assert state.instance(10000, 100).last_start_param == json.loads(DOC_START_PARAM)
    call(state, config, "StartDISyncInstance")
    assert state.instance(10000, 100).last_start_param is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ('{"retry": {}}', "StartParam.retry"),
        ('{"failoverLimit": 3}', "StartParam.failoverLimit must be a JSON object"),
        ('{"failoverLimit": {"count": -1}}', "StartParam.failoverLimit.count"),
        ('{"failoverLimit": {"count": true}}', "StartParam.failoverLimit.count"),
        ('{"failoverLimit": {"interval": "30"}}', "StartParam.failoverLimit.interval"),
        ('{"failoverLimit": {"max": 1}}', "StartParam.failoverLimit.max"),
        ('{"errorLimit": {"record": 1.5}}', "StartParam.errorLimit.record"),
        ('{"ddlMarkMap": {"ALTERTABLE": "NORMAL"}}', "StartParam.ddlMarkMap.ALTERTABLE"),
        ('{"ddlMarkMap": {"ADDCOLUMN": "normal"}}', "StartParam.ddlMarkMap.ADDCOLUMN"),
    ],
)
def test_start_param_invalid(state: EmulatorState, config: EmulatorConfig, raw: str, fragment: str) -> None:
    with pytest.raises(ApiError) as caught:
        call(state, config, "StartDISyncInstance", StartParam=raw)
    assert (caught.value.http_status, caught.value.code) == (400, "Param.Invalid")
    assert fragment in caught.value.message
    assert state.instance(10000, 100).start_count == 0


def test_empty_start_param_means_none() -> None:
    assert validate_start_param("") is None
    assert validate_start_param(None) is None
    assert validate_start_param("{}") == {}


def test_reset_and_listing(state: EmulatorState, config: EmulatorConfig) -> None:
    call(state, config, "StartDISyncInstance")
    views = {(v.project_id, v.file_id): v for v in state.instances()}
    assert set(views) == {(10000, 100), (10000, 200), (20000, 300)}
    assert views[(10000, 100)].as_dict()["start_count"] == 1
    state.reset()
    assert state.instance(10000, 100).start_count == 0
    assert state.instance(10000, 100).state == "NORUN"


def test_demo_config_registry() -> None:
    demo = demo_config()
    assert [key.id for key in demo.access_keys] == ["LTAIdemoAccessKeyId"]
    assert demo.access_keys[0].secret.get_secret_value() == "demo-secret-not-real"
    tasks = {(t.file_id, t.task_type, t.name) for t in demo.projects[0].tasks}
    assert demo.projects[0].id == 10000
    assert tasks == {
        (100, "DI_REALTIME", "orders_realtime"),
        (101, "DI_REALTIME", "users_realtime"),
        (200, "DI_SOLUTION", "warehouse_solution"),
    }


# --- the console: a person's start and stop, and a task that fails ---------------------------------------------------


def test_a_console_stop_stops_without_an_api_call(
    state: EmulatorState, config: EmulatorConfig, clock: FakeClock
) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    assert state.console_stop(10000, 100).state == "KILLING"
    clock.advance(2.01)
    view = state.instance(10000, 100)
    assert (view.state, view.stop_count, view.console_stop_count) == ("PAUSE", 0, 1)
    assert state.console_start(10000, 100).state == "WAIT"
    clock.advance(5.01)
    view = state.instance(10000, 100)
    assert (view.state, view.start_count, view.console_start_count) == ("RUN", 1, 1)


def test_console_calls_refuse_a_solution_an_unknown_task_and_a_stopping_task(
    state: EmulatorState, config: EmulatorConfig, clock: FakeClock
) -> None:
    with pytest.raises(ApiError) as solution:
        state.console_stop(10000, 200)
    with pytest.raises(ApiError) as unknown:
        state.console_start(10000, 999)
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    state.console_stop(10000, 100)
    with pytest.raises(ApiError) as stopping:
        state.console_start(10000, 100)
    assert (solution.value.http_status, unknown.value.http_status, stopping.value.http_status) == (400, 404, 409)


def test_a_running_task_made_to_fail_fails_at_once(
    state: EmulatorState, config: EmulatorConfig, clock: FakeClock
) -> None:
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    view = state.fail(10000, 100, ConsoleFailure(times=1))
    assert (view.state, view.failure_count) == ("NORUN", 1)
    call(state, config, "StartDISyncInstance")  # the one failure is spent: this run goes on
    clock.advance(100)
    assert status(state, config) == "RUN"


def test_a_task_that_keeps_failing_fails_after_every_start(
    state: EmulatorState, config: EmulatorConfig, clock: FakeClock
) -> None:
    state.fail(10000, 100, ConsoleFailure(times=None, run_seconds=3, state="PAUSE"))
    assert state.instance(10000, 100).failure_count == 0  # it did not run: nothing failed yet
    for run in range(1, 4):
        call(state, config, "StartDISyncInstance")
        clock.advance(5.01)
        assert status(state, config) == "RUN"
        clock.advance(3)
        assert status(state, config) == "PAUSE"
        assert state.instance(10000, 100).failure_count == run
    state.fail(10000, 100, ConsoleFailure(times=0))  # healed
    call(state, config, "StartDISyncInstance")
    clock.advance(100)
    assert status(state, config) == "RUN"


def test_an_api_stop_before_a_planned_failure_is_a_plain_stop(
    state: EmulatorState, config: EmulatorConfig, clock: FakeClock
) -> None:
    state.fail(10000, 100, ConsoleFailure(times=1, run_seconds=60))
    call(state, config, "StartDISyncInstance")
    clock.advance(10)
    call(state, config, "StopDISyncInstance")
    clock.advance(100)
    assert status(state, config) == "PAUSE"
