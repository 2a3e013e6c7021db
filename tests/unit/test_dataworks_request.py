"""Request shape of the DataWorks client: method, path, query as signed, headers, body, per-attempt freshness."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pydantic
import pytest

from disync_operator.dataworks import (
    ActionResponse,
    ClientOptions,
    CredentialsError,
    DataWorksClient,
    GetDISyncInstanceInfoRequest,
    InstanceInfoData,
    InstanceInfoResponse,
    SolutionInfo,
    SolutionStep,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    StopDISyncInstanceRequest,
    TaskType,
    TerminateDISyncInstanceRequest,
    _signing,
    resolve_endpoint,
)
from disync_operator.dataworks import _client as client_module

AK, SK = "testAccessKeyId", "testAccessKeySecret"
OK_ACTION = {"RequestId": "req-1", "Success": True, "Data": {"Status": "success", "Message": None}}
BASE_SIGNED = {
    "accept",
    "host",
    "user-agent",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
}
START_PARAM = '{"failoverLimit":{"count":10,"interval":30},"errorLimit":{"record":0}}'


class Recorder:
    def __init__(self, body: dict[str, Any] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.body = body or OK_ACTION

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json=self.body)


def make_client(
    recorder: Recorder, endpoint: str = "https://dataworks.cn-shanghai.aliyuncs.com", **kwargs: Any
) -> DataWorksClient:
    creds = kwargs.pop("credentials", StaticCredentialsProvider(AK, SK))
    return DataWorksClient(endpoint, creds, transport=httpx.MockTransport(recorder), **kwargs)


def recompute_authorization(request: httpx.Request, secret: str) -> str:
    parsed = _signing.parse_authorization(request.headers["authorization"])
    assert parsed is not None
    signed = {name: request.headers[name] for name in parsed.signed_headers}
    query = dict(httpx.QueryParams(request.url.query.decode()))
    return _signing.authorization(
        method=request.method,
        path=request.url.path,
        query=query,
        headers=signed,
        payload_sha256=_signing.EMPTY_PAYLOAD_SHA256,
        access_key_id=parsed.access_key_id,
        access_key_secret=secret,
    )


async def test_start_request_shape() -> None:
    recorder = Recorder()
    async with make_client(recorder) as client:
        response = await client.start_instance(
            StartDISyncInstanceRequest(
                project_id=12345, task_type=TaskType.DI_REALTIME, file_id=678, start_param=START_PARAM
            )
        )
    assert response == ActionResponse.model_validate(OK_ACTION)
    (request,) = recorder.requests
    assert request.method == "POST"
    assert request.url.scheme == "https"
    assert request.url.path == "/"
    expected_query = {"FileId": "678", "ProjectId": "12345", "StartParam": START_PARAM, "TaskType": "DI_REALTIME"}
    # Byte-identical to the signed canonical query (sorted keys, RFC 3986, %20 never '+').
    assert request.url.query.decode() == _signing.canonical_query(expected_query)
    assert request.url.query.decode().startswith("FileId=678&ProjectId=12345&StartParam=%7B%22failoverLimit%22%3A")
    assert request.content == b""
    assert request.headers["content-length"] == "0"
    headers = request.headers
    assert headers["host"] == "dataworks.cn-shanghai.aliyuncs.com"
    assert headers["x-acs-action"] == "StartDISyncInstance"
    assert headers["x-acs-version"] == "2020-05-18"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", headers["x-acs-date"])
    assert re.fullmatch(r"[0-9a-f]{32}", headers["x-acs-signature-nonce"])
    assert headers["x-acs-content-sha256"] == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"] == "disync-operator/0.1.0"
    assert "x-acs-security-token" not in headers
    assert "x-acs-accesskey-id" not in headers
    parsed = _signing.parse_authorization(headers["authorization"])
    assert parsed is not None
    assert parsed.algorithm == "ACS3-HMAC-SHA256"
    assert parsed.access_key_id == AK
    assert set(parsed.signed_headers) == BASE_SIGNED
    assert list(parsed.signed_headers) == sorted(parsed.signed_headers)
    assert headers["authorization"] == recompute_authorization(request, SK)


@pytest.mark.parametrize(
    ("method", "factory", "action"),
    [
        ("start_instance", StartDISyncInstanceRequest, "StartDISyncInstance"),
        ("stop_instance", StopDISyncInstanceRequest, "StopDISyncInstance"),
        ("terminate_instance", TerminateDISyncInstanceRequest, "TerminateDISyncInstance"),
        ("get_instance_info", GetDISyncInstanceInfoRequest, "GetDISyncInstanceInfo"),
    ],
)
async def test_each_operation(method: str, factory: Callable[..., Any], action: str) -> None:
    recorder = Recorder()
    async with make_client(recorder) as client:
        await getattr(client, method)(factory(project_id=7, task_type="DI_SOLUTION", file_id=9))
    (request,) = recorder.requests
    assert request.headers["x-acs-action"] == action
    assert request.url.query == b"FileId=9&ProjectId=7&TaskType=DI_SOLUTION"
    assert request.content == b""


@pytest.mark.parametrize("start_param", [None, ""])
async def test_start_param_omitted(start_param: str | None) -> None:
    recorder = Recorder()
    async with make_client(recorder) as client:
        await client.start_instance(
            StartDISyncInstanceRequest(project_id=1, task_type="DI_REALTIME", file_id=2, start_param=start_param)
        )
    assert recorder.requests[0].url.query == b"FileId=2&ProjectId=1&TaskType=DI_REALTIME"


async def test_fresh_nonce_and_date_per_attempt(monkeypatch: pytest.MonkeyPatch) -> None:
    stamps = iter(["2030-01-01T00:00:01Z", "2030-01-01T00:00:02Z", "2030-01-01T00:00:03Z"])
    monkeypatch.setattr(client_module, "utc_timestamp", lambda: next(stamps))
    recorder = Recorder()
    req = GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2)
    async with make_client(recorder) as client:
        for _ in range(3):
            await client.get_instance_info(req)
    nonces = [r.headers["x-acs-signature-nonce"] for r in recorder.requests]
    dates = [r.headers["x-acs-date"] for r in recorder.requests]
    assert len(set(nonces)) == 3
    assert dates == ["2030-01-01T00:00:01Z", "2030-01-01T00:00:02Z", "2030-01-01T00:00:03Z"]
    assert len({r.headers["authorization"] for r in recorder.requests}) == 3
    for request in recorder.requests:
        assert request.headers["authorization"] == recompute_authorization(request, SK)


async def test_sts_credentials_send_and_sign_security_token() -> None:
    recorder = Recorder()
    creds = StaticCredentialsProvider("STS.id", "sts-secret", "sts-token-value")
    async with make_client(recorder, credentials=creds) as client:
        await client.stop_instance(StopDISyncInstanceRequest(project_id=1, task_type="DI_REALTIME", file_id=2))
    (request,) = recorder.requests
    assert request.headers["x-acs-security-token"] == "sts-token-value"
    assert request.headers["x-acs-accesskey-id"] == "STS.id"
    parsed = _signing.parse_authorization(request.headers["authorization"])
    assert parsed is not None
    assert parsed.access_key_id == "STS.id"
    assert set(parsed.signed_headers) == BASE_SIGNED | {"x-acs-security-token", "x-acs-accesskey-id"}
    assert request.headers["authorization"] == recompute_authorization(request, "sts-secret")


async def test_per_call_credentials_override_client_default() -> None:
    recorder = Recorder()
    req = GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2)
    async with make_client(recorder) as client:
        await client.get_instance_info(req)
        await client.get_instance_info(req, credentials=StaticCredentialsProvider("other-id", "other-secret"))
    first, second = (_signing.parse_authorization(r.headers["authorization"]) for r in recorder.requests)
    assert first is not None
    assert second is not None
    assert first.access_key_id == AK
    assert second.access_key_id == "other-id"
    assert recorder.requests[1].headers["authorization"] == recompute_authorization(
        recorder.requests[1], "other-secret"
    )


async def test_no_credentials_anywhere_raises_before_sending() -> None:
    recorder = Recorder()
    client = DataWorksClient("https://dataworks.cn-shanghai.aliyuncs.com", transport=httpx.MockTransport(recorder))
    async with client:
        with pytest.raises(CredentialsError) as info:
            await client.get_instance_info(
                GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2)
            )
    assert not info.value.retryable
    assert "credentials" in str(info.value)
    assert recorder.requests == []


async def test_failing_third_party_provider_becomes_credentials_error() -> None:
    class Broken:
        async def get_credentials(self) -> Any:
            raise RuntimeError("secret-looking-detail")

    recorder = Recorder()
    async with make_client(recorder, credentials=Broken()) as client:
        with pytest.raises(CredentialsError) as info:
            await client.get_instance_info(
                GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2)
            )
    assert "secret-looking-detail" not in str(info.value)
    assert "Broken" in str(info.value)
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("endpoint", "host", "url_prefix"),
    [
        ("https://dataworks.cn-shanghai.aliyuncs.com", "dataworks.cn-shanghai.aliyuncs.com", "https://dataworks."),
        ("https://dataworks.cn-shanghai.aliyuncs.com/", "dataworks.cn-shanghai.aliyuncs.com", "https://dataworks."),
        ("http://127.0.0.1:18080", "127.0.0.1:18080", "http://127.0.0.1:18080/?"),
    ],
)
async def test_host_header_matches_endpoint(endpoint: str, host: str, url_prefix: str) -> None:
    recorder = Recorder()
    async with make_client(recorder, endpoint=endpoint) as client:
        assert client.endpoint == endpoint.rstrip("/")
        await client.get_instance_info(GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2))
    (request,) = recorder.requests
    assert request.headers["host"] == host
    assert str(request.url).startswith(url_prefix)
    assert request.headers.get_list("host") == [host]


@pytest.mark.parametrize(
    "endpoint", ["ftp://x", "dataworks.cn-shanghai.aliyuncs.com", "https://x/prefix", "https://x/?a=b", "https://"]
)
def test_bad_endpoint_rejected(endpoint: str) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        DataWorksClient(endpoint)


async def test_custom_user_agent_is_sent_and_signed() -> None:
    recorder = Recorder()
    options = ClientOptions(user_agent="  my-agent/1.0 (test)  ")
    async with make_client(recorder, options=options) as client:
        await client.get_instance_info(GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2))
    assert recorder.requests[0].headers["user-agent"] == "my-agent/1.0 (test)"
    assert recorder.requests[0].headers["authorization"] == recompute_authorization(recorder.requests[0], SK)


def test_client_options_validation_and_defaults() -> None:
    options = ClientOptions()
    assert (options.connect_timeout, options.read_timeout, options.qps, options.max_concurrency) == (
        5.0,
        10.0,
        None,
        16,
    )
    assert options.user_agent.startswith("disync-operator/")
    for bad in ({"qps": 0}, {"max_concurrency": 0}, {"connect_timeout": -1}, {"user_agent": "a\nb"}):
        with pytest.raises(pydantic.ValidationError):
            ClientOptions(**bad)


async def test_aclose_closes_transport() -> None:
    closed: list[bool] = []

    class Transport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json=OK_ACTION)

        async def aclose(self) -> None:
            closed.append(True)

    client = DataWorksClient("http://127.0.0.1:1", StaticCredentialsProvider(AK, SK), transport=Transport())
    async with client:
        await client.stop_instance(StopDISyncInstanceRequest(project_id=1, task_type="DI_REALTIME", file_id=2))
        assert closed == []
    assert closed == [True]


async def test_instance_info_with_solution_info_parsed() -> None:
    body = {
        "RequestId": "r",
        "Success": True,
        "Data": {
            "Status": "success",
            "Message": None,
            "Name": None,
            "SolutionInfo": {
                "Id": 77,
                "CreatorName": "alice",
                "Status": "run",
                "StepDetail": [{"StepId": 1, "StepName": "full", "Status": "success", "Info": "ok"}],
                "Unknown": "ignored",
            },
        },
    }
    recorder = Recorder(body)
    async with make_client(recorder) as client:
        info = await client.get_instance_info(
            GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_SOLUTION", file_id=2)
        )
    assert info.data.solution_info == SolutionInfo(
        id=77,
        creator_name="alice",
        status="run",
        step_detail=(SolutionStep(step_id=1, step_name="full", status="success", info="ok"),),
    )


# ------------------------------------------------------------------------------------------------ models


@pytest.mark.parametrize(
    "kwargs",
    [
        {"project_id": 0, "task_type": "DI_REALTIME", "file_id": 1},
        {"project_id": 1, "task_type": "DI_REALTIME", "file_id": -5},
        {"project_id": 1, "task_type": "DI_BATCH", "file_id": 1},
        {"project_id": 1, "task_type": "DI_REALTIME"},
    ],
)
def test_request_validation(kwargs: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        StartDISyncInstanceRequest(**kwargs)


def test_request_query_round_trip_for_emulator() -> None:
    req = StartDISyncInstanceRequest(project_id=10000, task_type=TaskType.DI_REALTIME, file_id=100, start_param="{}")
    query = req.to_query()
    assert query == {"FileId": "100", "ProjectId": "10000", "TaskType": "DI_REALTIME", "StartParam": "{}"}
    assert StartDISyncInstanceRequest.from_query(query) == req
    assert (
        StopDISyncInstanceRequest.from_query({"FileId": "1", "ProjectId": "2", "TaskType": "DI_REALTIME"}).file_id == 1
    )
    assert TaskType("DI_SOLUTION") is TaskType.DI_SOLUTION
    assert str(TaskType.DI_REALTIME) == "DI_REALTIME"


def test_response_models_serialise_to_wire_names() -> None:
    response = InstanceInfoResponse(
        request_id="r", success=True, data=InstanceInfoData(status="RUN", name="task", solution_info=None)
    )
    assert response.to_wire() == {
        "RequestId": "r",
        "Success": True,
        "Data": {"Status": "RUN", "Message": None, "Name": "task", "SolutionInfo": None},
    }
    assert InstanceInfoResponse.parse_wire(response.to_wire_json()) == response


# ---------------------------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("region", "vpc", "override", "expected"),
    [
        ("cn-shanghai", False, None, "https://dataworks.cn-shanghai.aliyuncs.com"),
        ("cn-shanghai", True, None, "https://dataworks-vpc.cn-shanghai.aliyuncs.com"),
        (" cn-shanghai ", False, None, "https://dataworks.cn-shanghai.aliyuncs.com"),
        # The SDK sends these to the central endpoint, whatever the network.
        ("cn-qingdao", False, None, "https://dataworks.aliyuncs.com"),
        ("cn-qingdao", True, None, "https://dataworks.aliyuncs.com"),
        (None, False, "dataworks.example.internal", "https://dataworks.example.internal"),
        ("cn-shanghai", True, "http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("oss-cn-hangzhou", False, "http://127.0.0.1:8080", "http://127.0.0.1:8080"),  # the override wins
        ("cn-shanghai", False, "  ", "https://dataworks.cn-shanghai.aliyuncs.com"),
    ],
)
def test_resolve_endpoint(region: str | None, vpc: bool, override: str | None, expected: str) -> None:
    assert resolve_endpoint(region, vpc=vpc, override=override) == expected


def test_resolve_endpoint_extra_region() -> None:
    # A region newer than the SDK pin, allowed by the operator's configuration.
    extra = ["ap-southeast-7"]
    assert resolve_endpoint("ap-southeast-7", extra_regions=extra) == "https://dataworks.ap-southeast-7.aliyuncs.com"
    assert (
        resolve_endpoint("ap-southeast-7", vpc=True, extra_regions=extra)
        == "https://dataworks-vpc.ap-southeast-7.aliyuncs.com"
    )


@pytest.mark.parametrize("region", [None, "", "  ", "cn shanghai", "cn-shanghai.evil.com/", "ap-southeast-7"])
def test_resolve_endpoint_rejects_missing_or_bad_region(region: str | None) -> None:
    with pytest.raises(ValueError, match="region"):
        resolve_endpoint(region)
