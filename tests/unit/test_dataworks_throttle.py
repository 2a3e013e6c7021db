"""Client-side QPS limit and concurrency cap, shared by all calls of one client."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from disync_operator.dataworks import (
    CallBudget,
    ClientOptions,
    DataWorksClient,
    GetDISyncInstanceInfoRequest,
    StaticCredentialsProvider,
)
from disync_operator.dataworks._throttle import TokenBucket

OK = {"RequestId": "r", "Success": True, "Data": {"Status": "RUN"}}


def info(file_id: int) -> GetDISyncInstanceInfoRequest:
    return GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=file_id)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def test_bucket_spaces_reservations_evenly() -> None:
    fake = FakeTime()
    bucket = TokenBucket(10, clock=fake.clock)
    assert [round(bucket.reserve(), 6) for _ in range(5)] == [0.0, 0.1, 0.2, 0.3, 0.4]
    fake.now += 10  # long idle: no credit beyond the burst accumulates
    assert [round(bucket.reserve(), 6) for _ in range(3)] == [0.0, 0.1, 0.2]


def test_bucket_burst() -> None:
    fake = FakeTime()
    bucket = TokenBucket(4, burst=3, clock=fake.clock)
    assert [round(bucket.reserve(), 6) for _ in range(5)] == [0.0, 0.0, 0.0, 0.25, 0.5]
    fake.now += 0.25
    assert round(bucket.reserve(), 6) == 0.5


async def test_bucket_acquire_sleeps_only_when_needed() -> None:
    fake = FakeTime()
    bucket = TokenBucket(2, clock=fake.clock, sleep=fake.sleep)
    for _ in range(3):
        await bucket.acquire()
    assert fake.sleeps == [0.5, 1.0]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_bucket_rejects_bad_parameters(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must"):
        TokenBucket(rate, burst=burst)


async def test_client_qps_limit_spaces_requests() -> None:
    arrivals: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        arrivals.append(time.monotonic())
        return httpx.Response(200, json=OK)

    qps, calls = 40.0, 6
    client = DataWorksClient(
        "http://127.0.0.1:1",
        StaticCredentialsProvider("ak", "sk"),
        options=ClientOptions(qps=qps),
        transport=httpx.MockTransport(handler),
    )
    # Per-call credentials differ, the limit is still shared by the whole client.
    other = StaticCredentialsProvider("ak2", "sk2")
    started = time.monotonic()
    async with client:
        results = await asyncio.gather(
            *(client.get_instance_info(info(i), credentials=other if i % 2 else None) for i in range(1, calls + 1))
        )
    elapsed = time.monotonic() - started
    assert len(results) == calls
    assert len(arrivals) == calls
    # Loose lower bound only: N calls at q QPS with burst 1 need at least (N-1)/q seconds.
    assert elapsed >= (calls - 1) / qps * 0.9
    assert arrivals[-1] - arrivals[0] >= (calls - 1) / qps * 0.9


async def test_client_without_qps_does_not_wait() -> None:
    count = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(200, json=OK)

    async with DataWorksClient(
        "http://127.0.0.1:1", StaticCredentialsProvider("ak", "sk"), transport=httpx.MockTransport(handler)
    ) as client:
        assert client._budget._bucket is None
        await asyncio.gather(*(client.get_instance_info(info(i)) for i in range(1, 21)))
    assert count == 20


async def _let_loop_run(rounds: int = 50) -> None:
    # Yield control without waiting on time: lets every runnable task advance as far as it can.
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_client_concurrency_cap() -> None:
    cap, calls = 3, 10
    in_flight = 0
    peak = 0
    arrived: list[int] = []
    full = asyncio.Event()
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        arrived.append(int(request.url.params["FileId"]))
        if in_flight == cap:
            full.set()
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json=OK)

    client = DataWorksClient(
        "http://127.0.0.1:1",
        StaticCredentialsProvider("ak", "sk"),
        options=ClientOptions(max_concurrency=cap),
        transport=httpx.MockTransport(handler),
    )
    other = StaticCredentialsProvider("ak2", "sk2")
    async with client:
        tasks = [
            asyncio.create_task(client.get_instance_info(info(i), credentials=other if i % 2 else None))
            for i in range(1, calls + 1)
        ]
        await asyncio.wait_for(full.wait(), timeout=10)
        await _let_loop_run()
        # The cap holds even though seven more calls are waiting and runnable.
        assert in_flight == cap
        assert len(arrived) == cap
        release.set()
        results = await asyncio.gather(*tasks)
    assert len(results) == calls
    assert peak == cap
    assert sorted(arrived) == list(range(1, calls + 1))
    # asyncio.Semaphore is FIFO: the first three calls got in first.
    assert sorted(arrived[:cap]) == [1, 2, 3]


async def test_cancelled_waiter_releases_nothing_it_did_not_take() -> None:
    release = asyncio.Event()
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await release.wait()
        in_flight -= 1
        return httpx.Response(200, json=OK)

    client = DataWorksClient(
        "http://127.0.0.1:1",
        StaticCredentialsProvider("ak", "sk"),
        options=ClientOptions(max_concurrency=1),
        transport=httpx.MockTransport(handler),
    )
    async with client:
        first = asyncio.create_task(client.get_instance_info(info(1)))
        waiting = asyncio.create_task(client.get_instance_info(info(2)))
        await _let_loop_run()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        third = asyncio.create_task(client.get_instance_info(info(3)))
        await _let_loop_run()
        assert in_flight == 1
        release.set()
        await asyncio.gather(first, third)
    assert peak == 1


async def test_clients_sharing_a_budget_hold_one_qps_limit_together() -> None:
    """Two endpoint clients (two regions) on one CallBudget: the limit is the process's, not each region's."""
    sends: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sends.append(asyncio.get_running_loop().time())
        return httpx.Response(200, json=OK)

    budget = CallBudget(qps=20, max_concurrency=4)
    creds = StaticCredentialsProvider("ak", "sk")
    transport = httpx.MockTransport(handler)
    async with (
        DataWorksClient("http://127.0.0.1:1", creds, transport=transport, budget=budget) as one,
        DataWorksClient("http://127.0.0.2:1", creds, transport=transport, budget=budget) as two,
    ):
        await asyncio.gather(*(c.get_instance_info(info(i)) for i in range(1, 11) for c in (one, two)))
    assert len(sends) == 20
    # 20 calls at 20/s together: the schedule spans at least 19 intervals of 50 ms (each client alone would have
    # let its 10 through in 0.45 s).
    assert sends[-1] - sends[0] >= 19 * 0.05 * 0.9
