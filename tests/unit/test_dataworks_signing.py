"""ACS3-HMAC-SHA256 cross-checked against the official SDK's own functions (alibabacloud_tea_openapi 0.4.6).

The emulator verifies signatures with the same ``_signing`` module, so agreement between client and emulator
proves nothing on its own; these tests pin both to what the official SDK computes.
"""

from __future__ import annotations

import asyncio
import string
from dataclasses import dataclass
from urllib.parse import parse_qsl

import httpx
from alibabacloud_tea_openapi.utils import (  # type: ignore[import-untyped]
    Utils,
    get_canonical_query_string,
    get_canonicalized_headers,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disync_operator.dataworks import (
    ClientOptions,
    DataWorksClient,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    TaskType,
    _signing,
)

SIGN_TYPE = "ACS3-HMAC-SHA256"
# Headers httpx adds on its own; they are transport details, not part of the signed request.
TRANSPORT_HEADERS = {"content-length", "accept-encoding", "connection", "authorization"}


@dataclass
class RequestLike:
    """The four attributes Utils.get_authorization reads."""

    method: str
    pathname: str
    query: dict[str, str]
    headers: dict[str, str]


def test_documented_v3_vector() -> None:
    headers = {
        "host": "ecs.cn-shanghai.aliyuncs.com",
        "x-acs-action": "RunInstances",
        "x-acs-version": "2014-05-26",
        "x-acs-date": "2023-10-26T10:22:32Z",
        "x-acs-signature-nonce": "3156853299f313e23d1673dc12e1703d",
        "x-acs-content-sha256": _signing.EMPTY_PAYLOAD_SHA256,
    }
    query = {"ImageId": "win2019_1809_x64_dtc_zh-cn_40G_alibase_20230811.vhd", "RegionId": "cn-shanghai"}
    ours = _signing.authorization(
        method="POST",
        path="/",
        query=query,
        headers=headers,
        payload_sha256=_signing.EMPTY_PAYLOAD_SHA256,
        access_key_id="YourAccessKeyId",
        access_key_secret="YourAccessKeySecret",
    )
    assert ours.endswith(",Signature=06563a9e1b43f5dfe96b81484da74bceab24a1d853912eee15083a6f0f3283c0")
    assert ours.startswith(
        "ACS3-HMAC-SHA256 Credential=YourAccessKeyId,SignedHeaders=host;x-acs-action;x-acs-content-sha256;"
        "x-acs-date;x-acs-signature-nonce;x-acs-version,"
    )
    sdk = Utils.get_authorization(
        RequestLike("POST", "/", query, headers),
        SIGN_TYPE,
        _signing.EMPTY_PAYLOAD_SHA256,
        "YourAccessKeyId",
        "YourAccessKeySecret",
    )
    assert ours == sdk


def test_upstream_canonical_query_vector() -> None:
    assert _signing.canonical_query({"test": " ~/*-+"}) == "test=%20~%2F%2A-%2B"
    assert get_canonical_query_string({"test": " ~/*-+"}) == "test=%20~%2F%2A-%2B"


# Values that stress percent-encoding: reserved characters, space, unicode (incl. astral), controls.
_tricky = st.sampled_from(list(" *+/~%&=?#\"'{}[]:,;!$@^|\\`<>éß中文😀\t\x00-_."))
_any_char = st.characters(codec="utf-8")
query_values = st.text(alphabet=st.one_of(_tricky, _any_char), min_size=1, max_size=60)
ids = st.integers(min_value=1, max_value=2**63 - 1)
access_key_ids = st.text(alphabet=string.ascii_letters + string.digits + ".", min_size=1, max_size=30)
secrets_ = st.text(alphabet=_any_char, min_size=1, max_size=40).map(str.strip).filter(bool)
# What the client accepts as a credential value: printable ASCII without the space (see credential_problem).
credential_secrets = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
header_safe = string.ascii_letters + string.digits + "+/=-_.:;()@"
tokens = st.none() | st.text(alphabet=header_safe, min_size=1, max_size=200)
agents = (
    st.text(alphabet=string.ascii_letters + string.digits + "/.()-_; ", min_size=1, max_size=60)
    .map(str.strip)
    .filter(bool)
)


def _capture(
    req: StartDISyncInstanceRequest, provider: StaticCredentialsProvider, options: ClientOptions
) -> httpx.Request:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"RequestId": "r", "Success": True, "Data": {"Status": "success"}})

    async def run() -> None:
        transport = httpx.MockTransport(handler)
        async with DataWorksClient(
            "https://dataworks.cn-shanghai.aliyuncs.com", provider, options=options, transport=transport
        ) as client:
            await client.start_instance(req)

    asyncio.run(run())
    assert len(seen) == 1
    return seen[0]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    project_id=ids,
    file_id=ids,
    task_type=st.sampled_from(TaskType),
    start_param=st.none() | query_values,
    ak=access_key_ids,
    secret=credential_secrets,
    token=tokens,
    agent=agents,
)
def test_client_authorization_matches_official_sdk(
    project_id: int,
    file_id: int,
    task_type: TaskType,
    start_param: str | None,
    ak: str,
    secret: str,
    token: str | None,
    agent: str,
) -> None:
    req = StartDISyncInstanceRequest(
        project_id=project_id, task_type=task_type, file_id=file_id, start_param=start_param
    )
    request = _capture(req, StaticCredentialsProvider(ak, secret, token), ClientOptions(user_agent=agent))

    raw_query = request.url.query.decode("ascii")
    query = dict(parse_qsl(raw_query, keep_blank_values=True, strict_parsing=True))
    # The server decodes the wire query; that must give back exactly the request's parameters...
    assert query == req.to_query()
    # ...and the wire query must be the SDK's canonical form byte for byte.
    assert raw_query == get_canonical_query_string(query)

    # Every header we sent except transport details must be covered by the signature, as the SDK would sign it.
    sent = {name: value for name, value in request.headers.items() if name not in TRANSPORT_HEADERS}
    expected = Utils.get_authorization(
        RequestLike(request.method, request.url.path, query, sent),
        SIGN_TYPE,
        _signing.EMPTY_PAYLOAD_SHA256,
        ak,
        secret,
    )
    assert request.headers["authorization"] == expected
    assert request.content == b""
    assert ("x-acs-security-token" in sent) is (token is not None)


header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)
header_values = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    path=st.sampled_from(["/", "/a/b", "/x%20y"]),
    query=st.dictionaries(
        st.text(alphabet=string.ascii_letters + "._-", min_size=1, max_size=10), query_values, max_size=6
    ),
    headers=st.dictionaries(header_names, header_values, min_size=1, max_size=8),
    payload=st.binary(max_size=64),
    secret=secrets_,
)
def test_signing_functions_match_official_sdk(
    method: str, path: str, query: dict[str, str], headers: dict[str, str], payload: bytes, secret: str
) -> None:
    import hashlib

    payload_hex = hashlib.sha256(payload).hexdigest()
    # Header names differing only in case are merged, values sorted and comma-joined, by both implementations.
    assert _signing.canonical_headers(headers) == get_canonicalized_headers(headers)
    assert _signing.canonical_query(query) == get_canonical_query_string(query)
    ours = _signing.authorization(
        method=method,
        path=path,
        query=query,
        headers=headers,
        payload_sha256=payload_hex,
        access_key_id="AK",
        access_key_secret=secret,
    )
    assert ours == Utils.get_authorization(
        RequestLike(method, path, query, headers), SIGN_TYPE, payload_hex, "AK", secret
    )
