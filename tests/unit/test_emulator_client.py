"""The project's own DataWorks client against the emulator: happy path, and every fault mode / rejection mapped to
the right exception class and ``retryable``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from disync_operator.dataworks import (
    AccessDeniedError,
    AuthenticationError,
    ClientOptions,
    ClockSkewError,
    DataWorksClient,
    DataWorksError,
    GetDISyncInstanceInfoRequest,
    InvalidParameterError,
    MalformedResponseError,
    NonceReusedError,
    OperationFailedError,
    ServerError,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    StopDISyncInstanceRequest,
    TaskType,
    TerminateDISyncInstanceRequest,
    ThrottlingError,
    TransportError,
)
from disync_operator.emulator import Emulator, EmulatorConfig, FaultConfig

AK, SECRET = "LTAIclientKey", "client-secret"
STS_AK, STS_SECRET, STS_TOKEN = "STS.clientKey", "sts-client-secret", "sts-client-token"


class FakeClock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def config() -> EmulatorConfig:
    return EmulatorConfig.model_validate(
        {
            "access_keys": [
                {"id": AK, "secret": SECRET},
                {"id": STS_AK, "secret": STS_SECRET, "security_token": STS_TOKEN},
                {"id": "LTAInarrow", "secret": "narrow-secret", "projects": [20000]},
            ],
            "projects": [
                {"id": 10000, "tasks": [{"file_id": 100, "task_type": "DI_REALTIME", "name": "orders"}]},
                {"id": 20000, "tasks": []},
            ],
            "timings": {"start_wait_seconds": 3, "stop_seconds": 1},
        }
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def emu(clock: FakeClock) -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator(config(), clock=clock)
    async with emulator.serve() as url:
        yield emulator, url


def client(url: str, ak: str = AK, secret: str = SECRET, token: str | None = None, **options: Any) -> DataWorksClient:
    return DataWorksClient(
        url, StaticCredentialsProvider(ak, secret, token), options=ClientOptions(**options) if options else None
    )


START = StartDISyncInstanceRequest(
    project_id=10000,
    task_type=TaskType.DI_REALTIME,
    file_id=100,
    start_param='{"failoverLimit": {"count": 3, "interval": 30}, "ddlMarkMap": {"ADDCOLUMN": "NORMAL"}}',
)
GET = GetDISyncInstanceInfoRequest(project_id=10000, task_type=TaskType.DI_REALTIME, file_id=100)
STOP = StopDISyncInstanceRequest(project_id=10000, task_type=TaskType.DI_REALTIME, file_id=100)
TERMINATE = TerminateDISyncInstanceRequest(project_id=10000, task_type=TaskType.DI_REALTIME, file_id=100)


@pytest.mark.parametrize("sts", [False, True])
async def test_lifecycle(emu: tuple[Emulator, str], clock: FakeClock, sts: bool) -> None:
    emulator, url = emu
    creds = (STS_AK, STS_SECRET, STS_TOKEN) if sts else (AK, SECRET, None)
    async with client(url, *creds) as dw:
        assert (await dw.start_instance(START)).data.status == "success"
        assert (await dw.get_instance_info(GET)).data.status == "WAIT"
        clock.now += 3
        info = await dw.get_instance_info(GET)
        assert (info.data.status, info.data.name) == ("RUN", "orders")
        await dw.stop_instance(STOP)
        assert (await dw.get_instance_info(GET)).data.status == "KILLING"
        clock.now += 1
        assert (await dw.get_instance_info(GET)).data.status == "PAUSE"
        await dw.terminate_instance(TERMINATE)
        assert (await dw.get_instance_info(GET)).data.status == "NORUN"
    view = emulator.state.instance(10000, 100)
    assert (view.start_count, view.stop_count, view.terminate_count, view.deployed) == (1, 1, 1, False)
    assert view.last_start_param == {
        "failoverLimit": {"count": 3, "interval": 30},
        "ddlMarkMap": {"ADDCOLUMN": "NORMAL"},
    }
    assert {e.access_key_id for e in emulator.request_log.entries()} == {creds[0]}


async def expect(
    url: str, exc_type: type[DataWorksError], retryable: bool, req: Any = GET, **kw: Any
) -> DataWorksError:
    async with client(url, **kw) as dw:
        call = dw.start_instance if isinstance(req, StartDISyncInstanceRequest) else dw.get_instance_info
        with pytest.raises(exc_type) as caught:
            await call(req)
    assert caught.value.retryable is retryable
    return caught.value


@pytest.mark.parametrize(
    ("faults", "exc_type"),
    [
        ({"error_rate": 1}, ServerError),
        ({"malformed_rate": 1}, MalformedResponseError),
        ({"truncated_rate": 1}, MalformedResponseError),
        ({"reset_rate": 1}, TransportError),
        ({"hang_rate": 1, "hang_seconds": 0.2}, TransportError),
    ],
)
async def test_fault_mapping(emu: tuple[Emulator, str], faults: dict[str, Any], exc_type: type[DataWorksError]) -> None:
    emulator, url = emu
    emulator.set_faults(FaultConfig.model_validate(faults))
    err = await expect(url, exc_type, True)
    if exc_type is ServerError:
        assert err.code == "InternalError.System"
        assert err.http_status == 500


async def test_hang_maps_to_read_timeout(emu: tuple[Emulator, str]) -> None:
    emulator, url = emu
    emulator.set_faults(FaultConfig(hang_rate=1, hang_seconds=30))
    err = await expect(url, TransportError, True, read_timeout=0.3)
    assert err.code == "ReadTimeout"


async def test_throttling_maps_with_retry_after(emu: tuple[Emulator, str]) -> None:
    emulator, url = emu
    emulator.set_faults(FaultConfig(throttle_qps=2, throttle_burst=1))
    async with client(url) as dw:
        await dw.get_instance_info(GET)
        with pytest.raises(ThrottlingError) as caught:
            await dw.get_instance_info(GET)
    assert caught.value.retryable is True
    assert caught.value.code == "Throttling.User"
    assert caught.value.retry_after == pytest.approx(0.5)


async def test_dropped_start_response(emu: tuple[Emulator, str]) -> None:
    emulator, url = emu
    emulator.set_faults(FaultConfig(drop_start_response=1))
    err = await expect(url, TransportError, True, req=START)
    assert isinstance(err, TransportError)
    assert err.request_may_have_been_sent is True
    assert emulator.state.instance(10000, 100).start_count == 1


async def test_wrong_secret(emu: tuple[Emulator, str]) -> None:
    _, url = emu
    err = await expect(url, AuthenticationError, False, secret="wrong")
    assert err.code == "SignatureDoesNotMatch"


async def test_unknown_key(emu: tuple[Emulator, str]) -> None:
    _, url = emu
    err = await expect(url, AuthenticationError, False, ak="LTAInobody")
    assert (err.code, err.http_status) == ("InvalidAccessKeyId.NotFound", 404)


async def test_clock_skew(clock: FakeClock) -> None:
    # The emulator's wall clock runs an hour ahead, so the client's x-acs-date looks expired.
    emulator = Emulator(config(), clock=clock, wall_clock=lambda: time.time() + 3600)
    async with emulator.serve() as url:
        err = await expect(url, ClockSkewError, True)
    assert err.code == "InvalidTimeStamp.Expired"


async def test_nonce_reuse(emu: tuple[Emulator, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = emu
    import disync_operator.dataworks._client as client_module

    monkeypatch.setattr(client_module, "new_nonce", lambda: "always-the-same")
    async with client(url) as dw:
        await dw.get_instance_info(GET)
        with pytest.raises(NonceReusedError) as caught:
            await dw.get_instance_info(GET)
    assert caught.value.retryable is True


async def test_param_invalid(emu: tuple[Emulator, str]) -> None:
    _, url = emu
    bad = START.model_copy(update={"start_param": '{"ddlMarkMap": {"ADDCOLUMN": "LOUD"}}'})
    err = await expect(url, InvalidParameterError, False, req=bad)
    assert err.code == "Param.Invalid"
    assert "ddlMarkMap.ADDCOLUMN" in (err.api_message or "")


async def test_forbidden(emu: tuple[Emulator, str]) -> None:
    _, url = emu
    err = await expect(url, AccessDeniedError, False, ak="LTAInarrow", secret="narrow-secret")
    assert (err.code, err.http_status) == ("Forbidden.Access", 403)


async def test_invalid_file_id(emu: tuple[Emulator, str]) -> None:
    _, url = emu
    bad = START.model_copy(update={"file_id": 999})
    err = await expect(url, OperationFailedError, False, req=bad)
    assert err.api_message == "fileId:[999] is invalid."
    async with client(url) as dw:
        info = await dw.get_instance_info(GET.model_copy(update={"file_id": 999}))
    assert (info.data.status, info.data.message) == ("fail", "fileId:[999] is invalid.")
