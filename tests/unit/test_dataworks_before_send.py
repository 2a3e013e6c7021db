"""start_instance(before_send=...): the hook runs when the QPS limit lets the call go, without holding a slot of the
concurrency cap (it is a Kubernetes write, not a DataWorks call); the call then leaves by the time the hook returns,
or is not sent at all."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from disync_operator.dataworks import (
    ClientOptions,
    DataWorksClient,
    DataWorksError,
    GetDISyncInstanceInfoRequest,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    TaskType,
    TransportError,
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
        return None

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


async def test_a_slow_hook_holds_no_concurrency_slot() -> None:
    """With a cap of one call in flight, another call goes while a start's hook (its intent write) is still busy."""
    events: list[str] = []
    hook_busy, other_done = asyncio.Event(), asyncio.Event()

    async def slow_hook() -> None:
        events.append("intent begins")
        hook_busy.set()
        await asyncio.wait_for(other_done.wait(), timeout=5)
        events.append("intent written")

    async with client(events) as dw:
        start = asyncio.create_task(dw.start_instance(REQUEST, before_send=slow_hook))
        await hook_busy.wait()
        info = GetDISyncInstanceInfoRequest(project_id=1, task_type=TaskType.DI_SOLUTION, file_id=3)
        with contextlib.suppress(DataWorksError):  # the answer's shape is not this test's business
            await dw.get_instance_info(info)
        other_done.set()
        await start
    assert events == ["intent begins", "sent", "intent written", "sent"]


async def test_no_slot_by_the_hooks_deadline_sends_nothing_and_says_so() -> None:
    events: list[str] = []
    release, holding = asyncio.Event(), asyncio.Event()
    calls: list[str] = []

    async def hold(request: httpx.Request) -> httpx.Response:
        events.append("sent")
        holding.set()
        await release.wait()
        return httpx.Response(200, json=OK)

    dw = DataWorksClient(
        "https://dataworks.test",
        StaticCredentialsProvider("ak", "secret"),
        options=ClientOptions(
            qps=1000, max_concurrency=1, on_call=lambda action, outcome, _: calls.append(f"{action} {outcome}")
        ),
        transport=httpx.MockTransport(hold),
    )

    async def hook() -> float:
        events.append("intent")
        return time.monotonic() + 0.2  # the call must leave within 0.2 s

    async with dw:
        first = asyncio.create_task(dw.start_instance(REQUEST))  # holds the only slot
        await asyncio.wait_for(holding.wait(), timeout=5)
        with pytest.raises(TransportError) as refused:
            await dw.start_instance(REQUEST, before_send=hook)
        release.set()
        await first
    assert refused.value.code == "SendWindowClosed"
    assert refused.value.request_may_have_been_sent is False
    assert events == ["sent", "intent"]  # the second start never left
    assert calls == ["StartDISyncInstance success"]  # and is no DataWorks call in the metrics
