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


def client(events: list[str]) -> DataWorksClient:
    def handler(request: httpx.Request) -> httpx.Response:
        events.append("sent")
        return httpx.Response(200, json=OK)

    return DataWorksClient(
        "https://dataworks.test",
        StaticCredentialsProvider("ak", "secret"),
        options=ClientOptions(qps=1000, max_concurrency=1),
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

    async with client(events) as dw:
        with pytest.raises(Refused):
            await dw.start_instance(REQUEST, before_send=hook)
    assert events == []
