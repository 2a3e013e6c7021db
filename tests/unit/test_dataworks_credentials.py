"""Credentials, providers and RRSA (AssumeRoleWithOIDC) against a stub STS; secrets must never leak."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from disync_operator.dataworks import (
    Credentials,
    CredentialsError,
    CredentialsProvider,
    DataWorksClient,
    DataWorksError,
    EnvironmentCredentialsProvider,
    GetDISyncInstanceInfoRequest,
    OIDCRoleCredentialsProvider,
    StaticCredentialsProvider,
    default_credentials_provider,
)
from disync_operator.dataworks._credentials import resolve_sts_endpoint

ROLE_ARN = "acs:ram::1234567890:role/disync-operator"
PROVIDER_ARN = "acs:ram::1234567890:oidc-provider/ack-rrsa-c123"
OIDC_TOKEN_1 = "eyJhbGciOiJSUzI1NiJ9.first-oidc-token-payload.sig1"
OIDC_TOKEN_2 = "eyJhbGciOiJSUzI1NiJ9.second-oidc-token-payload.sig2"
STS_SECRET = "sts-access-key-secret-VALUE"
STS_TOKEN = "CAIS-sts-security-token-VALUE"
STATIC_SECRET = "static-secret-VALUE"
ALL_SECRETS = (OIDC_TOKEN_1, OIDC_TOKEN_2, STS_SECRET, STS_TOKEN, STATIC_SECRET)
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sts_success(expiration: datetime, n: int = 1) -> dict[str, Any]:
    return {
        "RequestId": f"sts-req-{n}",
        "AssumedRoleUser": {"Arn": f"{ROLE_ARN}/disync-operator", "AssumedRoleId": "3000:disync-operator"},
        "Credentials": {
            "AccessKeyId": f"STS.key{n}",
            "AccessKeySecret": f"{STS_SECRET}-{n}",
            "SecurityToken": f"{STS_TOKEN}-{n}",
            "Expiration": iso(expiration),
        },
    }


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in ALL_SECRETS:
            assert secret not in text, f"secret leaked: {text[:200]!r}"


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class StubSTS:
    """An httpx MockTransport handler standing in for STS; records what each call sent."""

    def __init__(self, clock: FakeClock, lifetime: timedelta = timedelta(hours=1)) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.calls: list[dict[str, Any]] = []
        self.next_error: httpx.Response | Exception | None = None

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "query": dict(parse_qsl(request.url.query.decode())),
                "form": dict(parse_qsl(request.content.decode())),
                "headers": dict(request.headers),
                "url": str(request.url),
            }
        )
        if self.next_error is not None:
            error, self.next_error = self.next_error, None
            if isinstance(error, Exception):
                raise error
            return error
        return httpx.Response(200, json=sts_success(self.clock() + self.lifetime, len(self.calls)))


def write_token(path: Path, text: str) -> None:
    # Sync on purpose: tests rewrite the token file between refreshes, as kubelet does.
    path.write_text(text)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(OIDC_TOKEN_1)
    return path


def oidc(token_file: Path, stub: StubSTS, **kwargs: Any) -> OIDCRoleCredentialsProvider:
    return OIDCRoleCredentialsProvider(
        ROLE_ARN,
        PROVIDER_ARN,
        token_file,
        sts_endpoint="sts-vpc.cn-shanghai.aliyuncs.com",
        transport=httpx.MockTransport(stub),
        clock=stub.clock,
        **kwargs,
    )


# ----------------------------------------------------------------------------------------- credentials


def test_credentials_hide_secrets() -> None:
    creds = Credentials(
        access_key_id="AK", access_key_secret=SecretStr(STS_SECRET), security_token=SecretStr(STS_TOKEN)
    )
    assert_no_secrets(repr(creds), str(creds), str(creds.model_dump()), creds.model_dump_json())
    assert creds.access_key_secret.get_secret_value() == STS_SECRET
    with pytest.raises(ValueError, match="frozen"):
        creds.access_key_id = "other"  # type: ignore[misc]


async def test_static_provider() -> None:
    provider = StaticCredentialsProvider(" AK ", f" {STATIC_SECRET} ")
    creds = await provider.get_credentials()
    assert creds.access_key_id == "AK"
    assert creds.access_key_secret.get_secret_value() == STATIC_SECRET
    assert creds.security_token is None
    assert isinstance(provider, CredentialsProvider)
    assert_no_secrets(repr(provider), str(provider), repr(creds))
    sts = await StaticCredentialsProvider("STS.x", "s", STS_TOKEN).get_credentials()
    assert sts.security_token is not None
    assert sts.security_token.get_secret_value() == STS_TOKEN


@pytest.mark.parametrize(("key_id", "secret"), [("", "s"), ("ak", ""), ("  ", "s"), ("ak", "  ")])
def test_static_provider_rejects_empty(key_id: str, secret: str) -> None:
    with pytest.raises(CredentialsError):
        StaticCredentialsProvider(key_id, secret)


async def test_environment_provider() -> None:
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": "AK", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STATIC_SECRET}
    provider = EnvironmentCredentialsProvider(env)
    creds = await provider.get_credentials()
    assert (creds.access_key_id, creds.security_token) == ("AK", None)
    env["ALIBABA_CLOUD_SECURITY_TOKEN"] = STS_TOKEN
    creds = await provider.get_credentials()  # read at call time
    assert creds.security_token is not None
    assert creds.security_token.get_secret_value() == STS_TOKEN
    assert_no_secrets(repr(provider), repr(creds))


async def test_environment_provider_missing_names_variables() -> None:
    with pytest.raises(CredentialsError) as info:
        await EnvironmentCredentialsProvider({"ALIBABA_CLOUD_ACCESS_KEY_ID": "AK"}).get_credentials()
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in str(info.value)
    assert "ALIBABA_CLOUD_ACCESS_KEY_ID" not in str(info.value)


async def test_default_provider_prefers_access_key(token_file: Path) -> None:
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "AK",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": STATIC_SECRET,
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
    }
    provider = default_credentials_provider(env)
    assert isinstance(provider, EnvironmentCredentialsProvider)
    assert (await provider.get_credentials()).access_key_id == "AK"


def test_default_provider_uses_rrsa(token_file: Path) -> None:
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
        "ALIBABA_CLOUD_STS_REGION": "cn-shanghai",
        "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true",
        "ALIBABA_CLOUD_ROLE_SESSION_NAME": "my-session",
    }
    provider = default_credentials_provider(env)
    assert isinstance(provider, OIDCRoleCredentialsProvider)
    assert provider.sts_endpoint == "https://sts-vpc.cn-shanghai.aliyuncs.com"
    assert provider.role_session_name == "my-session"
    assert provider.oidc_token_file == str(token_file)


@pytest.mark.parametrize(
    ("env", "must_mention"),
    [
        ({}, ["ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_OIDC_TOKEN_FILE"]),
        (
            {"ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN},
            ["partially", "ALIBABA_CLOUD_OIDC_PROVIDER_ARN", "ALIBABA_CLOUD_OIDC_TOKEN_FILE"],
        ),
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": "AK"}, ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]),
    ],
)
async def test_default_provider_unconfigured_explains(env: dict[str, str], must_mention: list[str]) -> None:
    provider = default_credentials_provider(env)
    with pytest.raises(CredentialsError) as info:
        await provider.get_credentials()
    for name in must_mention:
        assert name in str(info.value)
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("explicit", "env", "expected"),
    [
        ("sts.example.com", {"ALIBABA_CLOUD_STS_ENDPOINT": "other"}, "https://sts.example.com"),
        (
            None,
            {"ALIBABA_CLOUD_STS_ENDPOINT": "sts-vpc.cn-beijing.aliyuncs.com", "ALIBABA_CLOUD_STS_REGION": "x"},
            "https://sts-vpc.cn-beijing.aliyuncs.com",
        ),
        (None, {"ALIBABA_CLOUD_STS_REGION": "cn-hangzhou"}, "https://sts.cn-hangzhou.aliyuncs.com"),
        (
            None,
            {"ALIBABA_CLOUD_STS_REGION": "cn-hangzhou", "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "true"},
            "https://sts-vpc.cn-hangzhou.aliyuncs.com",
        ),
        (
            None,
            {"ALIBABA_CLOUD_STS_REGION": "cn-hangzhou", "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED": "false"},
            "https://sts.cn-hangzhou.aliyuncs.com",
        ),
        (None, {}, "https://sts.aliyuncs.com"),
        ("http://127.0.0.1:9999/", {}, "http://127.0.0.1:9999"),
    ],
)
def test_sts_endpoint_resolution(explicit: str | None, env: dict[str, str], expected: str) -> None:
    assert resolve_sts_endpoint(explicit, env) == expected


def test_from_environment_requires_all_rrsa_variables() -> None:
    with pytest.raises(CredentialsError) as info:
        OIDCRoleCredentialsProvider.from_environment({"ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN})
    assert "ALIBABA_CLOUD_OIDC_PROVIDER_ARN" in str(info.value)
    assert "ALIBABA_CLOUD_OIDC_TOKEN_FILE" in str(info.value)


def test_oidc_rejects_short_duration(token_file: Path) -> None:
    with pytest.raises(ValueError, match="900"):
        OIDCRoleCredentialsProvider(ROLE_ARN, PROVIDER_ARN, token_file, duration_seconds=600)


# -------------------------------------------------------------------------------------------------- RRSA


async def test_oidc_request_parameters(token_file: Path) -> None:
    stub = StubSTS(FakeClock())
    provider = oidc(token_file, stub, role_session_name="sess", duration_seconds=1800)
    creds = await provider.get_credentials()
    assert creds.access_key_id == "STS.key1"
    assert creds.access_key_secret.get_secret_value() == f"{STS_SECRET}-1"
    assert creds.security_token is not None
    assert creds.security_token.get_secret_value() == f"{STS_TOKEN}-1"
    assert creds.expiration == T0 + timedelta(hours=1)
    (call,) = stub.calls
    assert call["method"] == "POST"
    assert call["url"].startswith("https://sts-vpc.cn-shanghai.aliyuncs.com/?")
    assert call["path"] == "/"
    params = call["query"] | call["form"]
    assert params["Action"] == "AssumeRoleWithOIDC"
    assert params["Version"] == "2015-04-01"
    assert params["Format"] == "JSON"
    assert params["RoleArn"] == ROLE_ARN
    assert params["OIDCProviderArn"] == PROVIDER_ARN
    assert params["OIDCToken"] == OIDC_TOKEN_1
    assert params["RoleSessionName"] == "sess"
    assert params["DurationSeconds"] == "1800"
    datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
    # The token travels in the body only, never in the URL (URLs end up in logs); the call is anonymous.
    assert OIDC_TOKEN_1 not in call["url"]
    assert call["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in call["headers"]


async def test_oidc_caches_until_refresh_point_and_rereads_token(token_file: Path) -> None:
    clock = FakeClock()
    stub = StubSTS(clock)
    provider = oidc(token_file, stub)  # refresh_margin 900 s, lifetime 3600 s -> refresh 15 min before expiry
    first = await provider.get_credentials()
    clock.now = T0 + timedelta(seconds=2600)  # 1000 s left
    assert await provider.get_credentials() is first
    assert len(stub.calls) == 1
    write_token(token_file, OIDC_TOKEN_2 + "\n")  # kubelet rotated the projected token
    clock.now = T0 + timedelta(seconds=2701)  # 899 s left: inside the margin, still valid
    second = await provider.get_credentials()
    assert len(stub.calls) == 2
    assert second.access_key_id == "STS.key2"
    assert stub.calls[1]["form"]["OIDCToken"] == OIDC_TOKEN_2
    assert stub.calls[0]["form"]["OIDCToken"] == OIDC_TOKEN_1


async def test_oidc_short_lifetime_refreshes_at_a_quarter(token_file: Path) -> None:
    clock = FakeClock()
    stub = StubSTS(clock, lifetime=timedelta(seconds=100))
    provider = oidc(token_file, stub)
    await provider.get_credentials()
    clock.now = T0 + timedelta(seconds=74)  # 26 s of 100 left: more than a quarter
    await provider.get_credentials()
    assert len(stub.calls) == 1
    clock.now = T0 + timedelta(seconds=76)
    await provider.get_credentials()
    assert len(stub.calls) == 2


async def test_oidc_expired_credentials_always_refresh(token_file: Path) -> None:
    clock = FakeClock()
    stub = StubSTS(clock, lifetime=timedelta(seconds=-5))
    provider = oidc(token_file, stub)
    await provider.get_credentials()
    await provider.get_credentials()
    assert len(stub.calls) == 2


async def test_oidc_one_refresh_for_concurrent_callers(token_file: Path) -> None:
    clock = FakeClock()
    gate = asyncio.Event()
    entered = asyncio.Event()
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        entered.set()
        await gate.wait()
        return httpx.Response(200, json=sts_success(clock() + timedelta(hours=1)))

    provider = OIDCRoleCredentialsProvider(
        ROLE_ARN, PROVIDER_ARN, token_file, transport=httpx.MockTransport(handler), clock=clock
    )
    tasks = [asyncio.create_task(provider.get_credentials()) for _ in range(5)]
    await asyncio.wait_for(entered.wait(), timeout=10)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert all(r is results[0] for r in results)


@pytest.mark.parametrize(
    ("response", "code", "retryable"),
    [
        (
            httpx.Response(
                400,
                json={
                    "RequestId": "r1",
                    "Code": "AuthenticationFail.OIDCToken.Expired",
                    "Message": "The OIDC token has expired.",
                },
            ),
            "AuthenticationFail.OIDCToken.Expired",
            False,
        ),
        (
            httpx.Response(
                403,
                json={
                    "RequestId": "r2",
                    "Code": "AuthenticationFail.NoPermission",
                    "Message": "No such OIDC Provider registered.",
                },
            ),
            "AuthenticationFail.NoPermission",
            False,
        ),
        (
            httpx.Response(
                404, json={"RequestId": "r3", "Code": "EntityNotExist.Role", "Message": "The role not exists."}
            ),
            "EntityNotExist.Role",
            False,
        ),
        (
            httpx.Response(400, json={"RequestId": "r4", "Code": "Throttling.User", "Message": "too frequent"}),
            "Throttling.User",
            True,
        ),
        (
            httpx.Response(500, json={"RequestId": "r5", "Code": "InternalError", "Message": "oops"}),
            "InternalError",
            True,
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), None, True),
    ],
)
async def test_oidc_sts_errors(token_file: Path, response: httpx.Response, code: str | None, retryable: bool) -> None:
    stub = StubSTS(FakeClock())
    stub.next_error = response
    with pytest.raises(CredentialsError) as info:
        await oidc(token_file, stub).get_credentials()
    error = info.value
    assert error.code == code
    assert error.retryable is retryable
    assert error.http_status == response.status_code
    if code:
        assert code in str(error)
        assert error.api_message
        assert error.api_message in str(error)
    assert_no_secrets(str(error), repr(error))


async def test_oidc_error_echoing_token_is_redacted(token_file: Path) -> None:
    stub = StubSTS(FakeClock())
    stub.next_error = httpx.Response(
        400, json={"Code": "InvalidParameter.OIDCToken", "Message": f"bad token {OIDC_TOKEN_1} given"}
    )
    with pytest.raises(CredentialsError) as info:
        await oidc(token_file, stub).get_credentials()
    assert "<redacted>" in str(info.value)
    assert_no_secrets(str(info.value), repr(info.value), str(info.value.api_message))


@pytest.mark.parametrize(
    "body",
    [
        {
            "RequestId": "r",
            "Credentials": {
                "AccessKeyId": "STS.k",
                "AccessKeySecret": STS_SECRET,
                "Expiration": "2030-01-01T13:00:00Z",
            },
        },
        {
            "RequestId": "r",
            "Credentials": {
                "AccessKeyId": "STS.k",
                "AccessKeySecret": STS_SECRET,
                "SecurityToken": STS_TOKEN,
                "Expiration": "tomorrow",
            },
        },
        {"RequestId": "r"},
    ],
)
async def test_oidc_malformed_success_never_quotes_body(token_file: Path, body: dict[str, Any]) -> None:
    stub = StubSTS(FakeClock())
    stub.next_error = httpx.Response(200, json=body)
    with pytest.raises(CredentialsError) as info:
        await oidc(token_file, stub).get_credentials()
    assert info.value.retryable
    assert_no_secrets(str(info.value), repr(info.value))


async def test_oidc_network_error(token_file: Path) -> None:
    stub = StubSTS(FakeClock())
    stub.next_error = httpx.ConnectError("connection refused")
    with pytest.raises(CredentialsError) as info:
        await oidc(token_file, stub).get_credentials()
    assert info.value.retryable
    assert "ConnectError" in str(info.value)


@pytest.mark.parametrize("content", [None, "", "   \n"])
async def test_oidc_missing_or_empty_token_file(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    stub = StubSTS(FakeClock())
    with pytest.raises(CredentialsError) as info:
        await oidc(path, stub).get_credentials()
    assert str(path) in str(info.value)
    assert stub.calls == []


async def test_oidc_keeps_valid_cache_when_refresh_fails(token_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    stub = StubSTS(clock)
    provider = oidc(token_file, stub)
    first = await provider.get_credentials()
    clock.now = T0 + timedelta(minutes=50)  # stale (10 min left) but valid
    stub.next_error = httpx.Response(503, json={"Code": "ServiceUnavailable", "Message": "down"})
    with caplog.at_level(logging.WARNING):
        assert await provider.get_credentials() is first
    assert "refresh failed" in caplog.text
    assert len(stub.calls) == 2
    # Within the pause after a failure, STS is not hammered on every call.
    assert await provider.get_credentials() is first
    assert len(stub.calls) == 2
    clock.now += timedelta(seconds=11)
    second = await provider.get_credentials()
    assert second.access_key_id == "STS.key3"
    # Once actually expired, a failed refresh must surface.
    clock.now = T0 + timedelta(hours=3)
    stub.next_error = httpx.Response(503, json={"Code": "ServiceUnavailable", "Message": "down"})
    with pytest.raises(CredentialsError):
        await provider.get_credentials()


async def test_oidc_credentials_used_by_client(token_file: Path) -> None:
    stub = StubSTS(FakeClock(datetime.now(UTC)))
    provider = oidc(token_file, stub)
    seen: list[httpx.Request] = []

    def dataworks(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"RequestId": "r", "Success": True, "Data": {"Status": "RUN"}})

    async with DataWorksClient(
        "https://dataworks.cn-shanghai.aliyuncs.com", provider, transport=httpx.MockTransport(dataworks)
    ) as client:
        await client.get_instance_info(GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2))
    (request,) = seen
    assert request.headers["x-acs-security-token"] == f"{STS_TOKEN}-1"
    assert request.headers["x-acs-accesskey-id"] == "STS.key1"
    assert "Credential=STS.key1," in request.headers["authorization"]


async def test_secrets_absent_from_logs_reprs_and_errors(token_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # everything, including httpx/httpcore debug output
    clock = FakeClock()
    stub = StubSTS(clock)
    provider = oidc(token_file, stub)
    static = StaticCredentialsProvider("AK", STATIC_SECRET, STS_TOKEN)
    texts: list[str] = [repr(provider), str(provider), repr(static), str(static)]

    def dataworks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"RequestId": "r", "Code": "Forbidden.Access", "Message": "denied"})

    async with DataWorksClient(
        "https://dataworks.cn-shanghai.aliyuncs.com", provider, transport=httpx.MockTransport(dataworks)
    ) as client:
        req = GetDISyncInstanceInfoRequest(project_id=1, task_type="DI_REALTIME", file_id=2)
        for creds in (provider, static):
            with pytest.raises(DataWorksError) as info:
                await client.get_instance_info(req, credentials=creds)
            texts += [str(info.value), repr(info.value)]
        texts.append(repr(client))
    texts.append(repr(await provider.get_credentials()))
    clock.now += timedelta(hours=2)
    stub.next_error = httpx.Response(400, json={"Code": "AuthenticationFail.OIDCToken.Expired", "Message": "x"})
    with pytest.raises(CredentialsError) as failure:
        await provider.get_credentials()
    texts += [str(failure.value), repr(failure.value)]
    texts += [record.getMessage() for record in caplog.records]
    texts.append(caplog.text)
    assert caplog.records, "expected some log output to inspect"
    assert_no_secrets(*texts)


# --------------------------------------------------------------------------------- a real local STS server


@pytest.fixture
async def sts_server() -> AsyncIterator[tuple[str, list[dict[str, str]], Callable[[], None]]]:
    received: list[dict[str, str]] = []
    state = {"fail": False}

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        received.append({**dict(request.query), **{k: str(v) for k, v in form.items()}, "_method": request.method})
        if state["fail"]:
            return web.json_response(
                {"RequestId": "x", "Code": "AuthenticationFail.OIDCToken.IssuerNotMatch", "Message": "issuer"},
                status=400,
            )
        return web.json_response(sts_success(datetime.now(UTC) + timedelta(hours=1), len(received)))

    def fail() -> None:
        state["fail"] = True

    app = web.Application()
    app.router.add_route("*", "/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", received, fail
    finally:
        await runner.cleanup()


async def test_oidc_against_local_sts_server(
    sts_server: tuple[str, list[dict[str, str]], Callable[[], None]], token_file: Path
) -> None:
    endpoint, received, fail = sts_server
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE_ARN,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER_ARN,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": str(token_file),
        "ALIBABA_CLOUD_STS_ENDPOINT": endpoint,
    }
    provider = OIDCRoleCredentialsProvider.from_environment(env, refresh_margin=0)
    creds = await provider.get_credentials()
    assert creds.access_key_id == "STS.key1"
    (params,) = received
    assert params["_method"] == "POST"
    assert params["Action"] == "AssumeRoleWithOIDC"
    assert params["OIDCToken"] == OIDC_TOKEN_1
    assert params["RoleSessionName"] == "disync-operator"
    assert params["DurationSeconds"] == "3600"

    fresh = OIDCRoleCredentialsProvider.from_environment(env)
    write_token(token_file, OIDC_TOKEN_2)
    fail()
    with pytest.raises(CredentialsError) as info:
        await fresh.get_credentials()
    assert info.value.code == "AuthenticationFail.OIDCToken.IssuerNotMatch"
    assert received[-1]["OIDCToken"] == OIDC_TOKEN_2
    assert_no_secrets(str(info.value))
