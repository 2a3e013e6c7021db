"""ACS3-HMAC-SHA256 verification by the emulator, over HTTP with hand-signed httpx requests."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from disync_operator.dataworks._signing import authorization, utc_timestamp
from disync_operator.emulator import Emulator, EmulatorConfig
from disync_operator.emulator._auth import NonceCache
from disync_operator.emulator.testing import RawRequest, sign_request

AK, SECRET = "LTAItestKey", "test-secret-value"
STS_AK, STS_SECRET, STS_TOKEN = "STS.testKey", "sts-secret-value", "sts-token-value"
EXPIRED_AK = "STS.expiredKey"
PARAMS = {"ProjectId": 10000, "FileId": 100, "TaskType": "DI_REALTIME"}
ERROR_KEYS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def config() -> EmulatorConfig:
    return EmulatorConfig.model_validate(
        {
            "access_keys": [
                {"id": AK, "secret": SECRET},
                {"id": STS_AK, "secret": STS_SECRET, "security_token": STS_TOKEN},
                {
                    "id": EXPIRED_AK,
                    "secret": STS_SECRET,
                    "security_token": STS_TOKEN,
                    "security_token_expiration": "2001-01-01T00:00:00Z",
                },
            ],
            "projects": [{"id": 10000, "tasks": [{"file_id": 100, "task_type": "DI_REALTIME", "name": "t"}]}],
        }
    )


@pytest.fixture
async def emu() -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator(config())
    async with emulator.serve() as url:
        yield emulator, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def signed(url: str, action: str = "GetDISyncInstanceInfo", **kwargs: Any) -> RawRequest:
    kwargs.setdefault("access_key_id", AK)
    kwargs.setdefault("access_key_secret", SECRET)
    params = kwargs.pop("params", PARAMS)
    return sign_request(url, action, params, **kwargs)


async def send(http: httpx.AsyncClient, req: RawRequest) -> httpx.Response:
    return await http.post(httpx.URL(req.url), headers=req.headers, content=req.body)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_KEYS
    assert body["Code"] == code
    assert body["RequestId"] == response.headers["x-acs-request-id"]
    assert code in body["Recommend"]
    return body


async def test_valid_request(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    response = await send(http, signed(url))
    assert response.status_code == 200
    body = response.json()
    assert body["Success"] is True
    assert body["Data"]["Status"] == "NORUN"
    assert body["RequestId"] == response.headers["x-acs-request-id"]


async def test_sdk_style_wire_encoding_verifies(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    """The official SDK puts '+' for spaces on the wire (urlencode) but signs %20; both must verify."""
    emulator, url = emu
    params = {**PARAMS, "StartParam": '{"failoverLimit": {"count": 10, "interval": 30}}'}
    wire = urlencode({k: str(v) for k, v in params.items()})
    assert "+" in wire
    response = await send(http, signed(url, "StartDISyncInstance", params=params, wire_query=wire))
    assert response.status_code == 200, response.text
    assert emulator.state.instance(10000, 100).last_start_param == {"failoverLimit": {"count": 10, "interval": 30}}


async def test_tampered_signature(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url)
    original = req.headers["Authorization"]
    last = original[-1]
    req.headers["Authorization"] = original[:-1] + ("0" if last != "0" else "1")
    body = assert_error(await send(http, req), 400, "SignatureDoesNotMatch")
    assert "server string to sign is:ACS3-HMAC-SHA256\n" in body["Message"]
    assert SECRET not in body["Message"]


async def test_wrong_secret(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    body = assert_error(await send(http, signed(url, access_key_secret="not-the-secret")), 400, "SignatureDoesNotMatch")
    assert SECRET not in body["Message"]


async def test_tampered_query(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url, wire_query="FileId=101&ProjectId=10000&TaskType=DI_REALTIME")
    assert_error(await send(http, req), 400, "SignatureDoesNotMatch")


async def test_payload_hash_mismatch(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url)
    req.body = b"smuggled"
    body = assert_error(await send(http, req), 400, "SignatureDoesNotMatch")
    assert "x-acs-content-sha256" in body["Message"]


async def test_signed_body_accepted(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    response = await send(http, signed(url, body=b"ignored=1"))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("offset", [-16 * 60, 16 * 60])
async def test_expired_date(emu: tuple[Emulator, str], http: httpx.AsyncClient, offset: int) -> None:
    _, url = emu
    req = signed(url, date=utc_timestamp(time.time() + offset))
    assert_error(await send(http, req), 400, "InvalidTimeStamp.Expired")


async def test_date_within_window(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    assert (await send(http, signed(url, date=utc_timestamp(time.time() - 14 * 60)))).status_code == 200


@pytest.mark.parametrize("date", ["2024-01-01 10:00:00", "2024-13-01T10:00:00Z", "1700000000", "2024-01-01T10:00:00"])
async def test_malformed_date(emu: tuple[Emulator, str], http: httpx.AsyncClient, date: str) -> None:
    _, url = emu
    assert_error(await send(http, signed(url, date=date)), 400, "InvalidTimeStamp.Format")


async def test_nonce_replay(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    first = signed(url, nonce="nonce-once")
    assert (await send(http, first)).status_code == 200
    # Same nonce, freshly signed (so only the nonce is wrong).
    assert_error(await send(http, signed(url, nonce="nonce-once")), 400, "SignatureNonceUsed")
    codes = [r.code for r in emulator.request_log.entries()]
    assert codes == ["success", "SignatureNonceUsed"]


async def test_forged_request_does_not_burn_nonce(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    forged = signed(url, nonce="shared-nonce", access_key_secret="guess")
    assert_error(await send(http, forged), 400, "SignatureDoesNotMatch")
    assert (await send(http, signed(url, nonce="shared-nonce"))).status_code == 200


async def test_unknown_access_key(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    assert_error(await send(http, signed(url, access_key_id="LTAIunknown")), 404, "InvalidAccessKeyId.NotFound")
    assert emulator.request_log.entries()[-1].access_key_id == "LTAIunknown"


async def test_missing_authorization(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url)
    del req.headers["Authorization"]
    assert_error(await send(http, req), 400, "IncompleteSignature")


async def test_legacy_algorithm_rejected(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url)
    req.headers["Authorization"] = req.headers["Authorization"].replace("ACS3-HMAC-SHA256", "ACS3-HMAC-SM3", 1)
    assert_error(await send(http, req), 400, "IncompleteSignature")


async def test_unsigned_acs_header(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url)
    req.headers["x-acs-extra"] = "1"
    body = assert_error(await send(http, req), 400, "IncompleteSignature")
    assert "x-acs-extra" in body["Message"]


@pytest.mark.parametrize("dropped", ["x-acs-signature-nonce", "x-acs-date", "x-acs-content-sha256"])
async def test_required_header_missing(emu: tuple[Emulator, str], http: httpx.AsyncClient, dropped: str) -> None:
    _, url = emu
    host = url.removeprefix("http://")
    headers = {
        "host": host,
        "x-acs-action": "GetDISyncInstanceInfo",
        "x-acs-version": "2020-05-18",
        "x-acs-date": utc_timestamp(),
        "x-acs-signature-nonce": "n-" + dropped,
        "x-acs-content-sha256": hashlib.sha256(b"").hexdigest(),
    }
    del headers[dropped]
    query = {k: str(v) for k, v in PARAMS.items()}
    headers["Authorization"] = authorization(
        method="POST",
        path="/",
        query=query,
        headers=headers,
        payload_sha256=hashlib.sha256(b"").hexdigest(),
        access_key_id=AK,
        access_key_secret=SECRET,
    )
    req = RawRequest(url=url + "/?FileId=100&ProjectId=10000&TaskType=DI_REALTIME", headers=headers)
    body = assert_error(await send(http, req), 400, "IncompleteSignature")
    assert dropped in body["Message"]


async def test_host_must_be_signed(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url)
    auth = req.headers["Authorization"]
    req.headers["Authorization"] = auth.replace("SignedHeaders=host;", "SignedHeaders=")
    assert_error(await send(http, req), 400, "IncompleteSignature")


async def test_sts_token(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    ok = signed(url, access_key_id=STS_AK, access_key_secret=STS_SECRET, security_token=STS_TOKEN)
    assert (await send(http, ok)).status_code == 200
    missing = signed(url, access_key_id=STS_AK, access_key_secret=STS_SECRET)
    assert_error(await send(http, missing), 400, "MissingSecurityToken")
    wrong = signed(url, access_key_id=STS_AK, access_key_secret=STS_SECRET, security_token="other-token")
    body = assert_error(await send(http, wrong), 400, "InvalidSecurityToken.Mismatch")
    assert STS_TOKEN not in body["Message"]
    # A permanent key must not come with a token.
    stray = signed(url, security_token=STS_TOKEN)
    assert_error(await send(http, stray), 400, "InvalidSecurityToken.Mismatch")


async def test_sts_token_expired(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url, access_key_id=EXPIRED_AK, access_key_secret=STS_SECRET, security_token=STS_TOKEN)
    assert_error(await send(http, req), 400, "InvalidSecurityToken.Expired")


async def test_accesskey_id_header_must_match(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url, extra_signed_headers={"x-acs-accesskey-id": "someone-else"})
    assert_error(await send(http, req), 400, "IncompleteSignature")


async def test_missing_and_unknown_action_and_version(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    req = signed(url)
    del req.headers["x-acs-action"]
    assert_error(await send(http, req), 400, "MissingAction")
    assert_error(await send(http, signed(url, "DescribeInstances")), 404, "InvalidAction.NotFound")
    assert_error(await send(http, signed(url, version="2024-05-18")), 400, "InvalidVersion")


async def test_legacy_action_query_param_is_not_honoured(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    response = await http.post(url + "/?Action=GetDISyncInstanceInfo&Version=2020-05-18&FileId=100")
    assert_error(response, 400, "MissingAction")


def test_nonce_cache_expires_and_is_bounded() -> None:
    now = [0.0]
    cache = NonceCache(window=900, capacity=3, clock=lambda: now[0])
    assert cache.check_and_add("ak", "a")
    assert not cache.check_and_add("ak", "a")
    assert cache.check_and_add("other-ak", "a")  # nonces are per AccessKey
    now[0] = 901
    assert cache.check_and_add("ak", "a")  # the old entry expired with the timestamp window
    for nonce in "bcdef":
        assert cache.check_and_add("ak", nonce)
    assert len(cache) == 3


def test_config_never_reveals_secrets() -> None:
    cfg = config()
    text = repr(cfg) + str(cfg.model_dump()) + cfg.model_dump_json()
    assert SECRET not in text
    assert STS_TOKEN not in text
    assert cfg.access_keys[2].security_token_expiration == dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
