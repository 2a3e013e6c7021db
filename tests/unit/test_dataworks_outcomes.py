"""Strict outcomes of Start/Stop/TerminateDISyncInstance: Data.Status is success or fail, anything else is unknown."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import disync_operator.dataworks as dataworks
from disync_operator.dataworks import (
    ActionResponse,
    ClientOptions,
    DataWorksClient,
    GetDISyncInstanceInfoRequest,
    OperationFailedError,
    RetryableError,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    StopDISyncInstanceRequest,
    TerminateDISyncInstanceRequest,
    ThrottlingError,
    TransportError,
    UnknownOutcomeError,
)

ACTIONS = [
    ("start_instance", StartDISyncInstanceRequest, "StartDISyncInstance"),
    ("stop_instance", StopDISyncInstanceRequest, "StopDISyncInstance"),
    ("terminate_instance", TerminateDISyncInstanceRequest, "TerminateDISyncInstance"),
]


def answer(status: Any, *, success: bool = True, message: str | None = None) -> dict[str, Any]:
    return {"RequestId": "RID-7", "Success": success, "Data": {"Status": status, "Message": message}}


async def call(method: str, factory: Any, body: dict[str, Any], **options: Any) -> Any:
    async with DataWorksClient(
        "https://dataworks.cn-shanghai.aliyuncs.com",
        StaticCredentialsProvider("ak", "sk"),
        options=ClientOptions(**options),
        transport=httpx.MockTransport(lambda _: httpx.Response(200, json=body)),
    ) as client:
        return await getattr(client, method)(factory(project_id=1, task_type="DI_REALTIME", file_id=100))


def test_exported() -> None:
    assert "UnknownOutcomeError" in dataworks.__all__
    assert issubclass(UnknownOutcomeError, RetryableError)
    assert not issubclass(UnknownOutcomeError, (ThrottlingError, TransportError))


@pytest.mark.parametrize(("method", "factory", "action"), ACTIONS)
@pytest.mark.parametrize("status", ["RUNNING", "", "run", "successful", " success", "failed"])
async def test_any_other_status_is_an_unknown_outcome(method: str, factory: Any, action: str, status: str) -> None:
    with pytest.raises(UnknownOutcomeError) as info:
        await call(method, factory, answer(status, message="still going"))
    error = info.value
    # Retryable and not throttling: the caller must treat the action as one that may have happened.
    assert error.retryable
    assert error.code == "UnknownOutcome"
    assert error.request_id == "RID-7"
    assert error.http_status == 200
    assert error.action == action
    assert f"Data.Status {status.strip()!r}" in error.message
    assert "RID-7" in str(error)
    assert error.response is not None
    assert error.response.data.status == status
    assert error.__cause__ is None
    assert error.__context__ is None


@pytest.mark.parametrize(("method", "factory", "action"), ACTIONS)
@pytest.mark.parametrize("status", ["success", "SUCCESS", "Success"])
async def test_success_in_any_case_succeeds(method: str, factory: Any, action: str, status: str) -> None:
    response = await call(method, factory, answer(status))
    assert isinstance(response, ActionResponse)
    assert response.data.status == status


@pytest.mark.parametrize(("method", "factory", "action"), ACTIONS)
@pytest.mark.parametrize("status", ["fail", "FAIL"])
async def test_fail_in_any_case_is_an_operation_failure(method: str, factory: Any, action: str, status: str) -> None:
    with pytest.raises(OperationFailedError) as info:
        await call(method, factory, answer(status, message="fileId:[100] is invalid."))
    assert not info.value.retryable
    assert info.value.api_message == "fileId:[100] is invalid."


async def test_success_false_stays_an_operation_failure_whatever_the_status() -> None:
    with pytest.raises(OperationFailedError):
        await call("start_instance", StartDISyncInstanceRequest, answer("RUNNING", success=False))


async def test_odd_status_is_quoted_bounded_and_on_one_line() -> None:
    status = "\x1b[31mRUN\nNING\x00" + "A" * 100_000
    with pytest.raises(UnknownOutcomeError) as info:
        await call("start_instance", StartDISyncInstanceRequest, answer(status))
    text = str(info.value)
    assert "\n" not in text
    assert "\x1b" not in text
    assert "\x00" not in text
    assert "RUN NING" in text
    assert "A" * 41 not in text
    assert len(text) < 300


async def test_odd_status_without_message_in_a_failure_is_bounded() -> None:
    with pytest.raises(OperationFailedError) as info:
        await call("start_instance", StartDISyncInstanceRequest, answer("B" * 100_000, success=False))
    assert len(str(info.value)) < 300


async def test_on_call_reports_the_unknown_outcome() -> None:
    outcomes: list[str] = []
    with pytest.raises(UnknownOutcomeError):
        await call(
            "start_instance", StartDISyncInstanceRequest, answer("RUNNING"), on_call=lambda a, o, s: outcomes.append(o)
        )
    assert outcomes == ["unknown_outcome"]


@pytest.mark.parametrize("status", ["RUNNING", "", "RUN", "KILLING"])
async def test_instance_info_accepts_any_status(status: str) -> None:
    response = await call("get_instance_info", GetDISyncInstanceInfoRequest, answer(status))
    assert response.data.status == status
