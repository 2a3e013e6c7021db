"""Classification of every documented error, malformed responses, network failures and operation failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from disync_operator.dataworks import (
    AccessDeniedError,
    AuthenticationError,
    CallOutcome,
    ClientOptions,
    ClockSkewError,
    CredentialsError,
    DataWorksClient,
    DataWorksError,
    GetDISyncInstanceInfoRequest,
    InvalidParameterError,
    MalformedResponseError,
    NonceReusedError,
    OperationFailedError,
    RetryableError,
    ServerError,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    StopDISyncInstanceRequest,
    TerminalError,
    TerminateDISyncInstanceRequest,
    ThrottlingError,
    TransportError,
    UnknownOutcomeError,
    call_outcome,
)

INFO = GetDISyncInstanceInfoRequest(project_id=10000, task_type="DI_REALTIME", file_id=100)
START = StartDISyncInstanceRequest(project_id=10000, task_type="DI_REALTIME", file_id=100)
HOST_ID = "dataworks.cn-shanghai.aliyuncs.com"


def client_for(handler: Callable[[httpx.Request], httpx.Response], **options: Any) -> DataWorksClient:
    return DataWorksClient(
        "https://dataworks.cn-shanghai.aliyuncs.com",
        StaticCredentialsProvider("ak", "sk"),
        transport=httpx.MockTransport(handler),
        options=ClientOptions(**options) if options else None,
    )


async def call_with(response: httpx.Response, request: Any = INFO) -> Any:
    async with client_for(lambda _: response) as client:
        if isinstance(request, StartDISyncInstanceRequest):
            return await client.start_instance(request)
        return await client.get_instance_info(request)


def error_body(code: str | None, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "RequestId": "0bc1411515937635973****",
        "HostId": HOST_ID,
        "Message": message,
        "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product=dataworks-public",
    }
    if code is not None:
        body["Code"] = code
    body.update(extra)
    return body


# dataworks-api.md §4: the DataWorks public table, the per-operation table and the POP gateway table.
DOCUMENTED = [
    (500, "InternalError.System", "An internal system error occurred. Try again later.", ServerError),
    (500, "InternalError.UserId.Missing", "An internal system error occurred. Try again later.", ServerError),
    (403, "ResourceNotAuthorized.Api", "You are not authorized to access the resources.", AccessDeniedError),
    (429, "Throttling.Api", "The request for this resource has exceeded your available limit.", ThrottlingError),
    (429, "Throttling.System", "The DataWorks system is busy. Try again later.", ThrottlingError),
    (429, "Throttling.User", "Your request is too frequent. Try again later.", ThrottlingError),
    (
        429,
        "Throttling.Api.Risk",
        "The request for this resource has exceeded your daily available limit.",
        ThrottlingError,
    ),
    (429, "Throttling.Resource", "the number of API calls reached the upper limit", ThrottlingError),
    (500, "Forbidden.Not.Server", "The dataworksAPI service is not available in this area.", AccessDeniedError),
    (403, "Forbidden.Access", "Access is forbidden. Try again later.", AccessDeniedError),
    (400, "Param.Invalid", "The parameter is invalid.", InvalidParameterError),
    (400, "Invalid.Param", "The request parameter is invalid.", InvalidParameterError),
    (400, "Throttling.User", "Request was denied due to user flow control.", ThrottlingError),
    (400, "Throttling", "Request was denied due to request throttling.", ThrottlingError),
    (
        400,
        "SignatureDoesNotMatch",
        "Specified signature is not matched with our calculation. server string to sign is:ACS3-HMAC-SHA256\nabc",
        AuthenticationError,
    ),
    (400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.", AuthenticationError),
    (400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", ClockSkewError),
    (400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.", ClockSkewError),
    (400, "SignatureNonceUsed", "Specified signature nonce was used already.", NonceReusedError),
    (400, "InvalidAccessKeyId.NotFound", "Specified access key is not found.", AuthenticationError),
    (
        404,
        "InvalidAccessKeyId.NotFound",
        "The Access Key ID provided does not exist in our records.",
        AuthenticationError,
    ),
    (400, "InvalidAccessKeyId.Inactive", "Specified access key is disabled.", AuthenticationError),
    (400, "MissingProjectId", "ProjectId is mandatory for this action.", InvalidParameterError),
    (
        404,
        "InvalidApi.NotFound",
        "Specified api is not found, please check your url and method.",
        InvalidParameterError,
    ),
    (404, "InvalidProduct.NotFound", "Cannot find product according to your domain.", InvalidParameterError),
    (500, "InternalError", "The request processing has failed due to some unknown error.", ServerError),
    (503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.", ServerError),
    (400, "InvalidParameter", 'The specified parameter "SecurityToken.Expired" is not valid.', InvalidParameterError),
    (418, "SomethingNew", "An unknown client error.", TerminalError),
    (502, "SomethingNew", "An unknown server error.", ServerError),
]


@pytest.mark.parametrize(("status", "code", "message", "expected"), DOCUMENTED)
async def test_documented_error_bodies(status: int, code: str, message: str, expected: type[DataWorksError]) -> None:
    with pytest.raises(DataWorksError) as info:
        await call_with(httpx.Response(status, json=error_body(code, message)))
    error = info.value
    assert type(error) is expected
    assert error.retryable is issubclass(expected, RetryableError)
    assert error.retryable is (not issubclass(expected, TerminalError))
    assert error.http_status == status
    assert error.code == code
    assert error.api_message == message
    assert error.request_id == "0bc1411515937635973****"
    assert error.host_id == HOST_ID
    assert error.recommend is not None
    assert code in error.recommend
    assert error.retry_after is None
    assert error.action == "GetDISyncInstanceInfo"
    text = str(error)
    assert "\n" not in text
    assert code in text
    assert "0bc1411515937635973****" in text
    assert " ".join(message.split()) in text
    assert code in repr(error)


async def test_clock_skew_message_blames_the_local_clock() -> None:
    with pytest.raises(ClockSkewError) as info:
        await call_with(httpx.Response(400, json=error_body("InvalidTimeStamp.Expired", "expired")))
    assert info.value.retryable
    assert "local clock is probably wrong" in str(info.value)


async def test_nonce_reuse_is_retryable() -> None:
    with pytest.raises(NonceReusedError) as info:
        await call_with(httpx.Response(400, json=error_body("SignatureNonceUsed", "used")))
    assert isinstance(info.value, RetryableError)
    assert info.value.retryable


async def test_access_denied_detail_and_camel_case_keys() -> None:
    detail = {
        "AuthAction": "dataworks:StartDISyncInstance",
        "AuthPrincipalType": "SubUser",
        "AuthPrincipalOwnerId": 1234567890,
        "NoPermissionType": "ImplicitDeny",
        "Extra": "kept",
    }
    body = {
        "requestId": "rid",
        "code": "Forbidden.Access",
        "message": "Access is forbidden.",
        "AccessDeniedDetail": detail,
    }
    with pytest.raises(AccessDeniedError) as info:
        await call_with(httpx.Response(403, json=body))
    error = info.value
    assert (error.code, error.request_id, error.api_message) == ("Forbidden.Access", "rid", "Access is forbidden.")
    assert error.access_denied_detail is not None
    assert error.access_denied_detail.auth_action == "dataworks:StartDISyncInstance"
    assert error.access_denied_detail.auth_principal_owner_id == "1234567890"


async def test_error_without_code_is_classified_by_status() -> None:
    with pytest.raises(TerminalError) as info:
        await call_with(httpx.Response(400, json={"RequestId": "r", "Message": "odd"}))
    assert type(info.value) is TerminalError
    with pytest.raises(ServerError):
        await call_with(httpx.Response(500, json={"RequestId": "r"}))


async def test_request_id_header_used_when_body_has_none() -> None:
    response = httpx.Response(502, text="<html>bad gateway</html>", headers={"x-acs-request-id": "hdr-id"})
    with pytest.raises(MalformedResponseError) as info:
        await call_with(response)
    assert info.value.request_id == "hdr-id"


# --------------------------------------------------------------------------------------------- malformed


HTML_502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>" + (
    "x" * 500
)


@pytest.mark.parametrize(
    ("status", "content", "snippet"),
    [
        (502, HTML_502.encode(), "502 Bad Gateway"),
        (500, b"", None),
        (403, b"<html>WAF</html>", "WAF"),
        (200, b"", None),
        (200, b'{"RequestId": "r", "Success": tr', '{"RequestId": "r", "Success": tr'),
        (200, b'{"RequestId": "r", "Success": "yes", "Data": {"Status": "success"}}', "yes"),
        (200, b'{"RequestId": "r", "Success": true, "Data": []}', "[]"),
        (200, b'{"RequestId": 5, "Success": true, "Data": {"Status": "success"}}', None),
        (200, b'{"RequestId": "r", "Success": true, "Data": {"Status": 1}}', None),
        (200, b'{"RequestId": "r", "Success": true}', None),
        (200, b"[1, 2]", None),
        (200, b"null", None),
        (200, b"\xff\xfe\x00garbage", None),
        (302, b"", None),
    ],
)
async def test_malformed_bodies(status: int, content: bytes, snippet: str | None) -> None:
    with pytest.raises(MalformedResponseError) as info:
        await call_with(httpx.Response(status, content=content))
    error = info.value
    assert error.retryable
    assert error.http_status == status
    text = str(error)
    assert f"HTTP {status}" in text
    assert "\n" not in text
    assert "\r" not in text
    assert len(text) < 400
    if snippet:
        assert snippet in text


async def test_malformed_action_response_on_start() -> None:
    with pytest.raises(MalformedResponseError):
        await call_with(
            httpx.Response(200, json={"RequestId": "r", "Success": 1, "Data": {"Status": "success"}}), START
        )


async def test_429_with_html_body_is_still_throttling() -> None:
    with pytest.raises(ThrottlingError) as info:
        await call_with(httpx.Response(429, text="<html>slow down</html>", headers={"Retry-After": "3"}))
    assert info.value.retryable
    assert info.value.retry_after == 3.0


async def test_error_document_with_http_200_is_classified() -> None:
    with pytest.raises(ThrottlingError) as info:
        await call_with(httpx.Response(200, json=error_body("Throttling.User", "flow control")))
    assert info.value.code == "Throttling.User"


# ------------------------------------------------------------------------------------------- retry-after


@pytest.mark.parametrize(
    ("status", "code", "headers", "expected"),
    [
        (429, "Throttling.User", {"x-acs-retry-after": "1500"}, 1.5),
        (400, "Throttling.User", {"x-acs-retry-after": "250"}, 0.25),
        (429, "Throttling.Api", {"Retry-After": "7"}, 7.0),
        (429, "Throttling.Api", {"Retry-After": "7", "x-acs-retry-after": "2000"}, 2.0),
        (429, "Throttling.Api", {"x-acs-retry-after": "soon"}, None),
        (429, "Throttling.Api", {"x-acs-retry-after": "0"}, None),
        (500, "InternalError.System", {"x-acs-retry-after": "3000"}, 3.0),
        (400, "Param.Invalid", {"Retry-After": "5"}, None),
    ],
)
async def test_retry_after(status: int, code: str, headers: dict[str, str], expected: float | None) -> None:
    with pytest.raises(DataWorksError) as info:
        await call_with(httpx.Response(status, json=error_body(code, "m"), headers=headers))
    assert info.value.retry_after == expected
    if expected is not None:
        assert "retry after" in str(info.value)


# ------------------------------------------------------------------------------------------------ network


@pytest.mark.parametrize(
    ("exc_type", "sent"),
    [
        (httpx.ConnectTimeout, False),
        (httpx.ConnectError, False),
        (httpx.PoolTimeout, False),
        (httpx.ReadTimeout, True),
        (httpx.WriteTimeout, True),
        (httpx.RemoteProtocolError, True),
        (httpx.ReadError, True),
        (httpx.WriteError, True),
    ],
)
async def test_network_errors_are_retryable_transport_errors(exc_type: type[httpx.TransportError], sent: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type("connection reset by peer", request=request)

    async with client_for(handler) as client:
        with pytest.raises(TransportError) as info:
            await client.get_instance_info(INFO)
    error = info.value
    assert error.retryable
    assert error.code == exc_type.__name__
    assert error.request_may_have_been_sent is sent
    assert error.http_status is None
    assert exc_type.__name__ in str(error)
    # Only the class survives: httpx's own text may quote a header value (a credential), so it is dropped, and the
    # httpx exception is reachable neither as the cause nor as the context.
    assert "connection reset by peer" not in str(error) + repr(error)
    assert error.__cause__ is None
    assert error.__context__ is None


async def test_local_protocol_error_is_terminal() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.LocalProtocolError("bad header")

    async with client_for(handler) as client:
        with pytest.raises(TerminalError) as info:
            await client.get_instance_info(INFO)
    assert not info.value.retryable


async def test_real_connection_refused() -> None:
    # A port nothing listens on: the real transport path (no mock) must classify too.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with DataWorksClient(f"http://127.0.0.1:{port}", StaticCredentialsProvider("ak", "sk")) as client:
        with pytest.raises(TransportError) as info:
            await client.get_instance_info(INFO)
    assert info.value.code == "ConnectError"
    assert info.value.request_may_have_been_sent is False


# --------------------------------------------------------------------------------------- operation failures


ACTIONS = [
    ("start_instance", StartDISyncInstanceRequest),
    ("stop_instance", StopDISyncInstanceRequest),
    ("terminate_instance", TerminateDISyncInstanceRequest),
]


@pytest.mark.parametrize(("method", "factory"), ACTIONS)
@pytest.mark.parametrize(
    "body",
    [
        {"RequestId": "rid", "Success": True, "Data": {"Status": "fail", "Message": "fileId:[100] is invalid."}},
        {"RequestId": "rid", "Success": False, "Data": {"Status": "fail", "Message": "fileId:[100] is invalid."}},
        {"RequestId": "rid", "Success": False, "Data": {"Status": "success", "Message": "fileId:[100] is invalid."}},
    ],
)
async def test_action_failure_raises_operation_failed(method: str, factory: Any, body: dict[str, Any]) -> None:
    async with client_for(lambda _: httpx.Response(200, json=body)) as client:
        with pytest.raises(OperationFailedError) as info:
            await getattr(client, method)(factory(project_id=1, task_type="DI_REALTIME", file_id=100))
    error = info.value
    assert not error.retryable
    assert error.api_message == "fileId:[100] is invalid."
    assert error.request_id == "rid"
    assert error.http_status == 200
    assert error.response is not None
    assert error.response.request_id == "rid"
    assert error.response.data.message == "fileId:[100] is invalid."
    assert "fileId:[100] is invalid." in str(error)
    assert "rid" in str(error)


async def test_action_failure_with_odd_body_still_operation_failed() -> None:
    body = {"RequestId": "rid", "Success": False, "Data": None}
    with pytest.raises(OperationFailedError) as info:
        await call_with(httpx.Response(200, json=body), START)
    assert info.value.request_id == "rid"
    assert info.value.response is None


@pytest.mark.parametrize("status", ["success", "SUCCESS"])
async def test_action_success(status: str) -> None:
    body = {"RequestId": "rid", "Success": True, "Data": {"Status": status, "Message": "null"}}
    response = await call_with(httpx.Response(200, json=body), START)
    assert response.data.status == status


@pytest.mark.parametrize("status", ["RUN", "PAUSE", "NORUN", "WAIT", "KILLING", "success", "fail"])
async def test_instance_info_returns_any_status(status: str) -> None:
    body = {"RequestId": "rid", "Success": True, "Data": {"Status": status, "Message": "fileId:[100] is invalid."}}
    response = await call_with(httpx.Response(200, json=body))
    assert response.data.status == status


async def test_instance_info_success_false_raises() -> None:
    body = {"RequestId": "rid", "Success": False, "Data": {"Status": "fail", "Message": "nope"}}
    with pytest.raises(OperationFailedError) as info:
        await call_with(httpx.Response(200, json=body))
    assert info.value.api_message == "nope"
    assert info.value.response is not None


# -------------------------------------------------------------------------------------------- observability


async def test_on_call_hook_reports_outcomes() -> None:
    calls: list[tuple[str, str, float]] = []
    responses = iter(
        [
            httpx.Response(200, json={"RequestId": "r", "Success": True, "Data": {"Status": "RUN"}}),
            httpx.Response(429, json=error_body("Throttling.User", "slow")),
            httpx.Response(200, json={"RequestId": "r", "Success": True, "Data": {"Status": "fail", "Message": "x"}}),
        ]
    )
    async with client_for(lambda _: next(responses), on_call=lambda *a: calls.append(a)) as client:
        await client.get_instance_info(INFO)
        with pytest.raises(ThrottlingError):
            await client.get_instance_info(INFO)
        with pytest.raises(OperationFailedError):
            await client.start_instance(START)
    assert [(a, o) for a, o, _ in calls] == [
        ("GetDISyncInstanceInfo", "success"),
        ("GetDISyncInstanceInfo", "throttled"),
        ("StartDISyncInstance", "failed"),
    ]
    assert all(seconds >= 0 for _, _, seconds in calls)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (ThrottlingError("x", code="Throttling.User"), "throttled"),
        (ServerError("x", http_status=503), "server_error"),
        (TransportError("x", code="ReadTimeout"), "timeout"),
        (TransportError("x", code="ConnectTimeout", request_may_have_been_sent=False), "timeout"),
        (TransportError("x", code="CallTimeout"), "timeout"),
        (TransportError("x", code="ConnectError", request_may_have_been_sent=False), "network_error"),
        (TransportError("x", code="RemoteProtocolError"), "network_error"),
        (MalformedResponseError("x", code="ResponseTooLarge"), "bad_response"),
        (UnknownOutcomeError("x", code="UnknownOutcome"), "unknown_outcome"),
        (ClockSkewError("x", code="InvalidTimeStamp.Expired"), "clock_skew"),
        (InvalidParameterError("x", code="Invalid.Param"), "rejected"),
        (NonceReusedError("x", code="SignatureNonceUsed"), "rejected"),
        (AccessDeniedError("x", code="Forbidden.RAM"), "access_denied"),
        (AuthenticationError("x", code="SignatureDoesNotMatch"), "auth_failed"),
        (CredentialsError("x"), "credentials"),
        (OperationFailedError("x"), "failed"),
        (RuntimeError("a bug"), "other"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v,
)
def test_outcome_labels_are_a_fixed_set(error: BaseException, outcome: str) -> None:
    assert call_outcome(error) == outcome
    assert outcome in {o.value for o in CallOutcome}


async def test_broken_hook_does_not_break_calls(caplog: pytest.LogCaptureFixture) -> None:
    def hook(action: str, outcome: str, seconds: float) -> None:
        raise RuntimeError("hook bug")

    ok = httpx.Response(200, json={"RequestId": "r", "Success": True, "Data": {"Status": "RUN"}})
    async with client_for(lambda _: ok, on_call=hook) as client:
        response = await client.get_instance_info(INFO)
    assert response.data.status == "RUN"
    assert "on_call hook failed" in caplog.text


def test_error_str_is_one_line_with_code_message_and_request_id() -> None:
    error = ThrottlingError(
        "Your request\nis too frequent.",
        http_status=429,
        code="Throttling.User",
        api_message="Your request\nis too frequent.",
        request_id="RID-1",
        retry_after=1.5,
        action="StartDISyncInstance",
    )
    assert str(error) == (
        "StartDISyncInstance: HTTP 429 Throttling.User - Your request is too frequent. (RequestId: RID-1) "
        "(retry after 1.5s)"
    )
    assert json.dumps(repr(error))
