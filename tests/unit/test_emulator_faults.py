"""Fault injection: each mode observable over HTTP, plus the pure decision engine with a fake clock."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from disync_operator.emulator import Emulator, FaultConfig, demo_config
from disync_operator.emulator._faults import FaultEngine, TokenBucket
from disync_operator.emulator.testing import sign_request

AK, SECRET = "LTAIdemoAccessKeyId", "demo-secret-not-real"
TASK: dict[str, str | int] = {"ProjectId": 10000, "FileId": 100, "TaskType": "DI_REALTIME"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emu(clock: FakeClock) -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator(demo_config(), clock=clock)
    async with emulator.serve() as url:
        yield emulator, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def call(
    http: httpx.AsyncClient, url: str, action: str = "GetDISyncInstanceInfo", **kwargs: Any
) -> httpx.Response:
    secret = kwargs.pop("secret", SECRET)
    req = sign_request(url, action, TASK, access_key_id=AK, access_key_secret=secret)
    return await http.post(httpx.URL(req.url), headers=req.headers, **kwargs)


async def put_faults(http: httpx.AsyncClient, url: str, **faults: Any) -> None:
    response = await http.put(f"{url}/_emulator/faults", json=faults)
    assert response.status_code == 200, response.text


async def test_error_rate(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, error_rate=1.0)
    response = await call(http, url, "StartDISyncInstance")
    assert response.status_code == 500
    body = response.json()
    assert body["Code"] == "InternalError.System"
    assert set(body) == {"RequestId", "HostId", "Code", "Message", "Recommend"}
    assert emulator.state.instance(10000, 100).start_count == 0
    entry = emulator.request_log.entries()[-1]
    assert (entry.http_status, entry.code, entry.fault) == (500, "InternalError.System", "error")


async def test_faults_apply_after_authentication(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    await put_faults(http, url, error_rate=1.0)
    response = await call(http, url, secret="wrong")
    assert response.status_code == 400
    assert response.json()["Code"] == "SignatureDoesNotMatch"


async def test_malformed_rate(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, malformed_rate=1.0)
    response = await call(http, url, "StartDISyncInstance")
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")
    with pytest.raises(ValueError, match=r"."):
        response.json()
    assert emulator.state.instance(10000, 100).start_count == 0


async def test_truncated_rate_performs_the_action(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, truncated_rate=1.0)
    response = await call(http, url, "StartDISyncInstance")
    assert response.status_code == 200
    assert response.text.startswith('{"Success":true')
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)
    assert emulator.state.instance(10000, 100).start_count == 1


async def test_reset_rate(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, reset_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await call(http, url, "StartDISyncInstance")
    assert emulator.state.instance(10000, 100).start_count == 0
    entry = emulator.request_log.entries()[-1]
    assert (entry.http_status, entry.fault) == (None, "reset")


async def test_hang_until_client_gives_up(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, hang_rate=1.0, hang_seconds=30)
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await call(http, url, timeout=httpx.Timeout(10, read=0.3))
    assert time.monotonic() - started < 10
    assert emulator.request_log.entries()[-1].fault == "hang"


async def test_hang_is_bounded(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    await put_faults(http, url, hang_rate=1.0, hang_seconds=0.2)
    started = time.monotonic()
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await call(http, url)
    elapsed = time.monotonic() - started
    assert 0.15 <= elapsed < 8


async def test_latency(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    await put_faults(http, url, latency_ms=250)
    started = time.monotonic()
    assert (await call(http, url)).status_code == 200
    assert time.monotonic() - started >= 0.25


async def test_throttling_with_fake_clock(emu: tuple[Emulator, str], http: httpx.AsyncClient, clock: FakeClock) -> None:
    emulator, url = emu
    await put_faults(http, url, throttle_qps=2, throttle_burst=2)
    assert [(await call(http, url)).status_code for _ in range(2)] == [200, 200]
    throttled = await call(http, url)
    assert throttled.status_code == 429
    assert throttled.json()["Code"] == "Throttling.User"
    assert throttled.headers["x-acs-retry-after"] == "500"  # ms until the next token at 2 qps
    clock.now += 0.5
    assert (await call(http, url)).status_code == 200
    assert (await call(http, url)).status_code == 429
    assert emulator.request_log.counters()["GetDISyncInstanceInfo"] == {"success": 3, "fault:throttle": 2}


async def test_throttling_honours_qps_in_real_time(http: httpx.AsyncClient) -> None:
    qps = 20.0
    emulator = Emulator(demo_config().model_copy(update={"faults": FaultConfig(throttle_qps=qps, throttle_burst=1)}))
    async with emulator.serve() as url:
        started = time.monotonic()
        deadline = started + 1.0
        statuses: list[int] = []
        while time.monotonic() < deadline:
            statuses.append((await call(http, url)).status_code)
        elapsed = time.monotonic() - started
    allowed = statuses.count(200)
    assert set(statuses) <= {200, 429}
    assert allowed <= 1 + qps * elapsed + 1
    # Only meaningful if the loop was faster than the limit; on a very slow machine just check the ceiling.
    if len(statuses) > 2 * qps * elapsed:
        assert allowed >= qps * elapsed * 0.5


async def test_drop_start_response(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, drop_start_response=1)
    # Other actions are not affected.
    assert (await call(http, url)).status_code == 200
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await call(http, url, "StartDISyncInstance")
    instances = (await http.get(f"{url}/_emulator/instances")).json()
    orders = next(i for i in instances if i["file_id"] == 100)
    assert orders["start_count"] == 1
    assert orders["state"] == "WAIT"
    assert (await http.get(f"{url}/_emulator/faults")).json()["drop_start_response"] == 0
    assert (await call(http, url, "StartDISyncInstance")).status_code == 200
    assert emulator.state.instance(10000, 100).start_count == 2
    entries = emulator.request_log.entries(action="StartDISyncInstance")
    assert [(e.http_status, e.code, e.fault) for e in entries] == [
        (None, "success", "drop_start_response"),
        (200, "success", None),
    ]


async def test_actions_filter(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    await put_faults(http, url, error_rate=1.0, actions=["StartDISyncInstance"])
    assert (await call(http, url)).status_code == 200
    assert (await call(http, url, "StartDISyncInstance")).status_code == 500


@pytest.mark.parametrize(
    "body",
    [
        {"error_rate": 1.5},
        {"error_rate": 0.6, "reset_rate": 0.6},
        {"latency_ms": -1},
        {"bogus": 1},
        {"actions": ["DescribeInstances"]},
        {"throttle_qps": 0},
        {"drop_start_response": -1},
        {"hang_seconds": 10_000},
    ],
)
async def test_put_faults_validation(emu: tuple[Emulator, str], http: httpx.AsyncClient, body: Any) -> None:
    emulator, url = emu
    response = await http.put(f"{url}/_emulator/faults", json=body)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid fault config"
    assert emulator.faults.config == FaultConfig()


async def test_put_faults_rejects_non_json(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    response = await http.put(f"{url}/_emulator/faults", content=b"error_rate: 1")
    assert response.status_code == 400


async def test_get_faults_round_trip(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    await put_faults(http, url, seed=9, jitter_ms=5, actions=["GetDISyncInstanceInfo"])
    current = (await http.get(f"{url}/_emulator/faults")).json()
    assert FaultConfig.model_validate(current) == FaultConfig(seed=9, jitter_ms=5, actions=["GetDISyncInstanceInfo"])


async def test_faults_from_config_block(http: httpx.AsyncClient) -> None:
    config = demo_config().model_copy(update={"faults": FaultConfig(error_rate=1.0)})
    async with Emulator(config).serve() as url:
        assert (await call(http, url)).status_code == 500


# -- the pure engine -----------------------------------------------------------------------------------------


def outcomes(engine: FaultEngine, n: int = 200) -> list[str | None]:
    return [engine.decide("GetDISyncInstanceInfo").kind for _ in range(n)]


def test_seeded_rng_is_reproducible() -> None:
    cfg = FaultConfig(seed=7, error_rate=0.2, reset_rate=0.1, truncated_rate=0.1)
    first = outcomes(FaultEngine(cfg))
    assert first == outcomes(FaultEngine(cfg))
    assert first != outcomes(FaultEngine(cfg.model_copy(update={"seed": 8})))
    # Replacing the config re-seeds.
    engine = FaultEngine(cfg)
    outcomes(engine, 13)
    engine.replace(cfg)
    assert outcomes(engine) == first


def test_rates_are_roughly_honoured() -> None:
    engine = FaultEngine(FaultConfig(seed=1, error_rate=0.3, malformed_rate=0.2))
    results = outcomes(engine, 5000)
    assert 0.26 < results.count("error") / 5000 < 0.34
    assert 0.16 < results.count("malformed") / 5000 < 0.24
    assert results.count(None) + results.count("error") + results.count("malformed") == 5000


def test_latency_and_jitter_bounds() -> None:
    engine = FaultEngine(FaultConfig(latency_ms=100, jitter_ms=50, actions=["StartDISyncInstance"]))
    delays = [engine.latency_seconds("StartDISyncInstance") for _ in range(200)]
    assert all(0.1 <= d <= 0.15 for d in delays)
    assert len(set(delays)) > 1
    assert engine.latency_seconds("GetDISyncInstanceInfo") == 0


def test_token_bucket() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=4, capacity=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(2)] == [0, 0]
    assert bucket.take() == pytest.approx(0.25)
    now[0] = 0.25
    assert bucket.take() == 0
    now[0] = 100  # refill is capped at the capacity
    assert [bucket.take() == 0 for _ in range(3)] == [True, True, False]


def test_drop_start_only_counts_starts() -> None:
    engine = FaultEngine(FaultConfig(drop_start_response=2))
    assert engine.decide("GetDISyncInstanceInfo").kind is None
    assert [engine.decide("StartDISyncInstance").kind for _ in range(3)] == [
        "drop_start_response",
        "drop_start_response",
        None,
    ]
    assert engine.drops_left == 0


async def test_stop_releases_hung_requests(http: httpx.AsyncClient) -> None:
    emulator = Emulator(demo_config().model_copy(update={"faults": FaultConfig(hang_rate=1, hang_seconds=120)}))
    url = await emulator.start()
    pending = asyncio.ensure_future(call(http, url, timeout=httpx.Timeout(60)))
    deadline = time.monotonic() + 10
    while not emulator.request_log.entries():  # poll until the request is being held
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await emulator.stop()
    assert time.monotonic() - started < 10
    with pytest.raises(httpx.TransportError):
        await pending
