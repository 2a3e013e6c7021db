"""The official Alibaba Cloud SDK (dataworks-public 2020-05-18, tea-openapi 0.4.6) against the emulator.

If the cloud's own client works against the emulator, and requests the official signer produces but then breaks
are rejected as the cloud would, the emulator's wire format and authentication are faithful. No control plane is
needed: the emulator runs in a background thread with its own event loop (the SDK's sync calls block).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from alibabacloud_dataworks_public20200518 import models as dw_models  # type: ignore[import-untyped]
from alibabacloud_dataworks_public20200518.client import Client as DataworksClient  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.models import Config  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils import Utils as OpenApiUtils  # type: ignore[import-untyped]

from disync_operator.emulator import Emulator, EmulatorConfig, FaultConfig

AK, SECRET = "LTAIsdkTestKey", "sdk-test-secret"
STS_AK, STS_SECRET, STS_TOKEN = "STS.sdkTestKey", "sdk-sts-secret", "sdk-sts-token"
START_PARAM = (
    '{"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}, '
    '"ddlMarkMap": {"ADDCOLUMN": "NORMAL", "DROPTABLE": "WARNING", "RENAMETABLE": "CRITICAL"}}'
)


class FakeClock:
    """Monotonic clock for instance state, moved by the test (read from the emulator's thread)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def emulator_config() -> EmulatorConfig:
    return EmulatorConfig.model_validate(
        {
            "access_keys": [
                {"id": AK, "secret": SECRET, "projects": [10000]},
                {"id": STS_AK, "secret": STS_SECRET, "security_token": STS_TOKEN},
            ],
            "projects": [
                {
                    "id": 10000,
                    "tasks": [
                        {"file_id": 100, "task_type": "DI_REALTIME", "name": "orders_realtime"},
                        {"file_id": 200, "task_type": "DI_SOLUTION", "name": "warehouse_solution"},
                    ],
                },
                {"id": 20000, "tasks": []},
            ],
            "timings": {"start_wait_seconds": 5, "stop_seconds": 2},
        }
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[tuple[Emulator, str]]:
    emulator = Emulator(emulator_config(), clock=clock)
    with emulator.serve_in_thread() as url:
        yield emulator, url


def sdk(url: str, ak: str = AK, secret: str = SECRET, token: str | None = None) -> DataworksClient:
    return DataworksClient(
        Config(
            access_key_id=ak,
            access_key_secret=secret,
            security_token=token,
            endpoint=url.removeprefix("http://"),
            protocol="http",
        )
    )


def realtime(model: Any, file_id: int = 100, **extra: Any) -> Any:
    return model(project_id=10000, file_id=file_id, task_type="DI_REALTIME", **extra)


def test_sdk_start_observe_stop(emu: tuple[Emulator, str], clock: FakeClock) -> None:
    emulator, url = emu
    client = sdk(url)

    started = client.start_disync_instance(realtime(dw_models.StartDISyncInstanceRequest, start_param=START_PARAM))
    assert started.status_code == 200
    assert started.body.success is True
    assert started.body.data.status == "success"
    assert started.body.request_id

    info = client.get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest))
    assert (info.body.data.status, info.body.data.name, info.body.data.solution_info) == (
        "WAIT",
        "orders_realtime",
        None,
    )
    clock.now += 5
    assert client.get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest)).body.data.status == "RUN"

    stopped = client.stop_disync_instance(realtime(dw_models.StopDISyncInstanceRequest))
    assert stopped.body.data.status == "success"
    assert client.get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest)).body.data.status == (
        "KILLING"
    )
    clock.now += 2
    assert client.get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest)).body.data.status == (
        "PAUSE"
    )

    assert client.terminate_disync_instance(realtime(dw_models.TerminateDISyncInstanceRequest)).body.data.status == (
        "success"
    )

    view = emulator.state.instance(10000, 100)
    assert (view.state, view.start_count, view.stop_count, view.terminate_count) == ("NORUN", 1, 1, 1)
    # The SDK put '+' for the spaces on the wire; the emulator decoded them back.
    assert view.last_start_param is not None
    assert view.last_start_param["failoverLimit"] == {"count": 10, "interval": 30}
    log = emulator.request_log.entries()
    assert [e.action for e in log] == [
        "StartDISyncInstance",
        "GetDISyncInstanceInfo",
        "GetDISyncInstanceInfo",
        "StopDISyncInstance",
        "GetDISyncInstanceInfo",
        "GetDISyncInstanceInfo",
        "TerminateDISyncInstance",
    ]
    assert all((e.http_status, e.code, e.access_key_id) == (200, "success", AK) for e in log)
    assert log[0].params["StartParam"] == START_PARAM


def test_sdk_solution_and_invalid_file(emu: tuple[Emulator, str]) -> None:
    _, url = emu
    client = sdk(url)
    solution = client.start_disync_instance(
        dw_models.StartDISyncInstanceRequest(project_id=10000, file_id=200, task_type="DI_SOLUTION")
    )
    assert solution.body.data.status == "success"
    info = client.get_disync_instance_info(
        dw_models.GetDISyncInstanceInfoRequest(project_id=10000, file_id=200, task_type="DI_SOLUTION")
    )
    assert info.body.data.status == "success"
    assert info.body.data.solution_info.id == 200
    assert info.body.data.solution_info.status == "run"
    assert [step.step_id for step in info.body.data.solution_info.step_detail] == [1, 2, 3]

    missing = client.start_disync_instance(realtime(dw_models.StartDISyncInstanceRequest, file_id=999))
    assert missing.status_code == 200
    assert (missing.body.success, missing.body.data.status, missing.body.data.message) == (
        True,
        "fail",
        "fileId:[999] is invalid.",
    )


def test_sdk_sts_credentials(emu: tuple[Emulator, str]) -> None:
    emulator, url = emu
    response = sdk(url, STS_AK, STS_SECRET, STS_TOKEN).start_disync_instance(
        realtime(dw_models.StartDISyncInstanceRequest)
    )
    assert response.body.data.status == "success"
    assert emulator.request_log.entries()[-1].access_key_id == STS_AK
    with pytest.raises(ClientException) as caught:
        sdk(url, STS_AK, STS_SECRET, "stolen-token").start_disync_instance(
            realtime(dw_models.StartDISyncInstanceRequest)
        )
    assert (caught.value.status_code, caught.value.code) == (400, "InvalidSecurityToken.Mismatch")


@pytest.mark.parametrize(
    ("ak", "secret", "status", "code"),
    [
        (AK, "wrong-secret", 400, "SignatureDoesNotMatch"),
        ("LTAIunknownKey", SECRET, 404, "InvalidAccessKeyId.NotFound"),
    ],
)
def test_sdk_rejected_credentials(emu: tuple[Emulator, str], ak: str, secret: str, status: int, code: str) -> None:
    _, url = emu
    with pytest.raises(ClientException) as caught:
        sdk(url, ak, secret).get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest))
    assert (caught.value.status_code, caught.value.code) == (status, code)
    assert caught.value.request_id


def test_sdk_forbidden_and_param_invalid(emu: tuple[Emulator, str]) -> None:
    _, url = emu
    client = sdk(url)
    with pytest.raises(ClientException) as caught:
        client.get_disync_instance_info(
            dw_models.GetDISyncInstanceInfoRequest(project_id=20000, file_id=1, task_type="DI_REALTIME")
        )
    assert (caught.value.status_code, caught.value.code) == (403, "Forbidden.Access")
    with pytest.raises(ClientException) as caught:
        client.start_disync_instance(realtime(dw_models.StartDISyncInstanceRequest, start_param='{"bogus": {}}'))
    assert (caught.value.status_code, caught.value.code) == (400, "Param.Invalid")
    assert "StartParam.bogus" in caught.value.message


def test_sdk_sees_throttling_and_server_errors(emu: tuple[Emulator, str]) -> None:
    emulator, url = emu
    client = sdk(url)
    emulator.set_faults(FaultConfig(throttle_qps=0.001, throttle_burst=1))
    client.get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest))
    with pytest.raises(ThrottlingException) as throttled:
        client.get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest))
    assert throttled.value.code == "Throttling.User"
    assert throttled.value.retry_after is not None
    assert throttled.value.retry_after > 0
    emulator.set_faults(FaultConfig(error_rate=1))
    with pytest.raises(ServerException) as server:
        client.get_disync_instance_info(realtime(dw_models.GetDISyncInstanceInfoRequest))
    assert (server.value.status_code, server.value.code) == (500, "InternalError.System")


async def test_sdk_async_methods() -> None:
    emulator = Emulator(emulator_config())
    async with emulator.serve() as url:
        response = await sdk(url).get_disync_instance_info_async(realtime(dw_models.GetDISyncInstanceInfoRequest))
    assert response.body.data.status == "NORUN"


# -- requests signed by the official SDK signer, then broken one way each ---------------------------------------


def official_signed(
    url: str,
    *,
    date: str | None = None,
    nonce: str | None = None,
    secret: str = SECRET,
    ak: str = AK,
) -> tuple[str, dict[str, str]]:
    query = {"FileId": "100", "ProjectId": "10000", "TaskType": "DI_REALTIME", "StartParam": START_PARAM}
    headers = {
        "host": url.removeprefix("http://"),
        "x-acs-version": "2020-05-18",
        "x-acs-action": "StartDISyncInstance",
        "user-agent": "AlibabaCloud (test) TeaDSL/2",
        "x-acs-date": date or OpenApiUtils.get_timestamp(),
        "x-acs-signature-nonce": nonce or OpenApiUtils.get_nonce(),
        "accept": "application/json",
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    request = SimpleNamespace(method="POST", pathname="/", query=query, headers=headers)
    headers["Authorization"] = OpenApiUtils.get_authorization(
        request, "ACS3-HMAC-SHA256", hashlib.sha256(b"").hexdigest(), ak, secret
    )
    return f"{url}/?{urlencode(query)}", headers


def error_code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, str(response.json()["Code"])


def test_official_signer_accepted_then_each_tampering_rejected(emu: tuple[Emulator, str]) -> None:
    emulator, url = emu
    with httpx.Client(timeout=10) as http:
        good_url, good_headers = official_signed(url, nonce="official-nonce-1")
        assert http.post(good_url, headers=good_headers).status_code == 200

        # Replaying the very same request: nonce reuse.
        assert error_code(http.post(good_url, headers=good_headers)) == (400, "SignatureNonceUsed")

        tampered_url, tampered = official_signed(url)
        signature = tampered["Authorization"][-64:]
        flipped = ("1" if signature[0] == "0" else "0") + signature[1:]
        tampered["Authorization"] = tampered["Authorization"][:-64] + flipped
        assert error_code(http.post(tampered_url, headers=tampered)) == (400, "SignatureDoesNotMatch")

        wrong_url, wrong = official_signed(url, secret="not-the-secret")
        response = http.post(wrong_url, headers=wrong)
        assert error_code(response) == (400, "SignatureDoesNotMatch")
        assert SECRET not in response.text

        old = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 20 * 60))
        expired_url, expired = official_signed(url, date=old)
        assert error_code(http.post(expired_url, headers=expired)) == (400, "InvalidTimeStamp.Expired")

        unknown_url, unknown = official_signed(url, ak="LTAInoSuchKey")
        assert error_code(http.post(unknown_url, headers=unknown)) == (404, "InvalidAccessKeyId.NotFound")

    assert emulator.state.instance(10000, 100).start_count == 1
    assert emulator.request_log.counters()["StartDISyncInstance"] == {
        "success": 1,
        "SignatureNonceUsed": 1,
        "SignatureDoesNotMatch": 2,
        "InvalidTimeStamp.Expired": 1,
        "InvalidAccessKeyId.NotFound": 1,
    }
