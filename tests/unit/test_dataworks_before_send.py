"""start_instance(before_send=...): the hook runs when the call is allowed to go, and only then is it sent."""

from __future__ import annotations

import httpx
import pytest

from disync_operator.dataworks import (
    ClientOptions,
    DataWorksClient,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    TaskType,
)

OK = {"Success": True, "RequestId": "R", "Data": {"Status": "success", "Message": None}}
REQUEST = StartDISyncInstanceRequest(project_id=1, task_type=TaskType.DI_SOLUTION, file_id=2)


def client(events: list[str], calls: list[str] | None = None) -> DataWorksClient:
    seen = calls if calls is not None else []

    def handler(request: httpx.Request) -> httpx.Response:
        events.append("sent")
        return httpx.Response(200, json=OK)

    return DataWorksClient(
        "https://dataworks.test",
        StaticCredentialsProvider("ak", "secret"),
        options=ClientOptions(
            qps=1000, max_concurrency=1, on_call=lambda action, outcome, _: seen.append(f"{action} {outcome}")
        ),
        transport=httpx.MockTransport(handler),
    )


async def test_hook_runs_right_before_the_request_leaves() -> None:
    events: list[str] = []

    async def hook() -> None:
        events.append("intent")

    async with client(events) as dw:
        await dw.start_instance(REQUEST, before_send=hook)
    assert events == ["intent", "sent"]


async def test_a_failing_hook_sends_nothing() -> None:
    events: list[str] = []

    class Refused(Exception):
        pass

    async def hook() -> None:
        raise Refused

    calls: list[str] = []
    async with client(events, calls) as dw:
        with pytest.raises(Refused):
            await dw.start_instance(REQUEST, before_send=hook)
        assert events == []
        assert calls == []  # no call was made, so none is counted in the metrics
        await dw.start_instance(REQUEST)
    assert calls == ["StartDISyncInstance success"]
