"""Hostile answers: over-long and dirty fields, odd Data.Status values, huge and compressed-huge bodies, trickled
answers. Each mode over HTTP, the generators behind them (deterministic, bounded), and what the project's client
makes of each."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from disync_operator.dataworks import (
    ClientOptions,
    DataWorksClient,
    MalformedResponseError,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    TaskType,
    TransportError,
    UnknownOutcomeError,
)
from disync_operator.emulator import Emulator, FaultConfig, RequestRecord, demo_config
from disync_operator.emulator._faults import FaultEngine
from disync_operator.emulator._hostile import (
    CLEAN_TEXT,
    DIRTY_TEXT,
    GzipBomb,
    long_header_value,
    long_request_id,
    long_text,
    padded_body,
)
from disync_operator.emulator.cli import build_config
from disync_operator.emulator.testing import sign_request

AK, SECRET = "LTAIdemoAccessKeyId", "demo-secret-not-real"
TASK: dict[str, str | int] = {"ProjectId": 10000, "FileId": 100, "TaskType": "DI_REALTIME"}
START, STOP, INFO = "StartDISyncInstance", "StopDISyncInstance", "GetDISyncInstanceInfo"
MIB = 1 << 20
# What a header value may not hold (h11 refuses it): C0 controls and DEL; spaces only inside.
HEADER_FORBIDDEN = {chr(c) for c in range(0x20)} | {"\x7f"}


@pytest.fixture
async def emu() -> AsyncIterator[tuple[Emulator, str]]:
    emulator = Emulator(demo_config())
    async with emulator.serve() as url:
        yield emulator, url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


def signed(url: str, action: str, **params: str | int) -> tuple[httpx.URL, dict[str, str]]:
    req = sign_request(url, action, {**TASK, **params}, access_key_id=AK, access_key_secret=SECRET)
    return httpx.URL(req.url), req.headers


async def call(http: httpx.AsyncClient, url: str, action: str = START, **kwargs: Any) -> httpx.Response:
    target, headers = signed(url, action)
    return await http.post(target, headers=headers, **kwargs)


async def put_faults(http: httpx.AsyncClient, url: str, **faults: Any) -> None:
    response = await http.put(f"{url}/_emulator/faults", json=faults)
    assert response.status_code == 200, response.text


async def finished(emulator: Emulator, action: str = START, within: float = 10) -> RequestRecord:
    """The last entry of `action` once its streamed answer has ended (the log is told after the last write)."""
    deadline = time.monotonic() + within
    while True:
        entries = emulator.request_log.entries(action=action)
        if entries and entries[-1].answer_end is not None:
            return entries[-1]
        assert time.monotonic() < deadline, entries
        await asyncio.sleep(0.01)  # polling interval, bounded by the deadline above


def client(url: str, **options: Any) -> DataWorksClient:
    return DataWorksClient(url, StaticCredentialsProvider(AK, SECRET), options=ClientOptions(**options))


START_REQUEST = StartDISyncInstanceRequest(project_id=10000, task_type=TaskType.DI_REALTIME, file_id=100)


# -- the generators ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 37, 4097, 100_000])
@pytest.mark.parametrize("dirty", [False, True])
def test_long_texts_have_exactly_the_length_asked_for(length: int, dirty: bool) -> None:
    assert len(long_text(length, dirty=dirty)) == length
    assert long_text(length, dirty=dirty) == long_text(length, dirty=dirty)  # deterministic
    rid = "0A1B2C3D-0000-4000-8000-000000000000"
    assert len(long_request_id(rid, length, dirty=dirty)) == length
    assert len(long_header_value(rid, length, dirty=dirty)) == length
    if length > len(rid):
        assert long_request_id(rid, length, dirty=dirty).startswith(rid + "-")
        assert long_header_value(rid, length, dirty=dirty).startswith(rid + "-")


def test_dirty_texts_carry_escapes_and_controls_but_headers_only_what_http_allows() -> None:
    message = long_text(1000, dirty=True)
    for char in ("\x1b[", "\x07", "\x00", "\r", "\x08", "\x7f", "\x9b"):
        assert char in message
    assert "\x1b" in long_request_id("R", 100, dirty=True)
    header = long_header_value("R", 1000, dirty=True)
    assert "\x9b" in header  # the C1 CSI: a terminal escape that is valid obs-text
    assert not set(header) & HEADER_FORBIDDEN
    assert header == header.strip()
    clean = long_text(1000, dirty=False)
    assert clean.startswith(CLEAN_TEXT)
    assert all(char.isprintable() or char in "\n\t" for char in clean)
    assert not all(char.isprintable() or char in "\n\t" for char in DIRTY_TEXT)


def test_padded_body_is_the_answer_then_whitespace_in_bounded_chunks() -> None:
    payload = b'{"Success":true}'
    chunks = list(padded_body(payload, 300_000))
    assert chunks[0] == payload
    assert all(len(c) <= 64 * 1024 for c in chunks)
    body = b"".join(chunks)
    assert len(body) == 300_000
    assert json.loads(body) == {"Success": True}  # valid JSON: only its size is wrong
    assert b"".join(padded_body(payload, 3)) == payload  # never shorter than the answer
    # Lazy: a terabyte costs nothing until it is read.
    huge = padded_body(payload, 1 << 40)
    assert sum(len(c) for c in itertools.islice(huge, 10)) == len(payload) + 9 * 64 * 1024


def test_gzip_bomb_is_one_valid_gzip_member_of_the_answer_and_whitespace() -> None:
    payload = b'{"Success":true,"Data":{"Status":"success"}}'
    inflated = 3 * MIB + 12_345
    bomb = GzipBomb(payload, inflated)
    wire = b"".join(bomb)
    assert len(wire) == bomb.length
    assert wire == b"".join(GzipBomb(payload, inflated))  # deterministic (MTIME 0)
    content = zlib.decompress(wire, zlib.MAX_WBITS | 16)  # checks CRC-32 and ISIZE too
    assert len(content) == inflated
    assert content.startswith(payload)
    assert json.loads(content) == json.loads(payload)
    assert len(wire) < 5_000
    # Shorter than the answer: just the answer, gzipped.
    assert zlib.decompress(b"".join(GzipBomb(payload, 10)), zlib.MAX_WBITS | 16) == payload


def test_a_400_mb_bomb_is_small_on_the_wire_and_generated_in_small_pieces() -> None:
    bomb = GzipBomb(b"{}", 400_000_000)
    assert 300_000 < bomb.length < 500_000  # deflate's ceiling is about 1032:1
    sizes = [len(chunk) for chunk in bomb]
    assert sum(sizes) == bomb.length
    assert max(sizes) < 20_000
    # Its first piece alone already inflates past 1 MiB: a reader without an output limit is the one in danger.
    first_two = b"".join(itertools.islice(iter(GzipBomb(b"{}", 400_000_000)), 2))
    assert len(zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(first_two)) > MIB


# -- the engine ----------------------------------------------------------------------------------------------


def test_hostile_options_are_scoped_to_actions_and_draw_nothing() -> None:
    engine = FaultEngine(FaultConfig(long_fields=10, data_status="RUNNING", actions=[START]))
    hostile = engine.decide(START).hostile
    assert hostile is not None
    assert (hostile.long_fields, hostile.data_status, hostile.streamed) == (10, "RUNNING", False)
    assert engine.decide(INFO).hostile is None
    assert FaultEngine(FaultConfig()).decide(START).hostile is None
    # No RNG draw: the seeded rate faults come out the same with or without hostile options.
    rates: dict[str, Any] = {"seed": 3, "error_rate": 0.3, "truncated_rate": 0.2}
    plain, shaped = FaultEngine(FaultConfig(**rates)), FaultEngine(FaultConfig(**rates, big_body_bytes=10))
    kinds = [plain.decide(INFO).kind for _ in range(300)]
    assert kinds == [shaped.decide(INFO).kind for _ in range(300)]
    assert {"error", "truncated", None} == set(kinds)


@pytest.mark.parametrize(
    "body",
    [
        {"big_body_bytes": 10, "gzip_bomb_bytes": 10},
        {"long_fields": -1},
        {"long_fields": 2_000_000},
        {"long_header_max": 0},
        {"big_body_bytes": 1 << 40},
        {"trickle_seconds_per_byte": 11},
        {"trickle_max_seconds": 0},
        {"data_status": "x" * 5000},
    ],
)
async def test_hostile_options_are_validated(emu: tuple[Emulator, str], http: httpx.AsyncClient, body: Any) -> None:
    emulator, url = emu
    response = await http.put(f"{url}/_emulator/faults", json=body)
    assert response.status_code == 400, body
    assert emulator.faults.config == FaultConfig()


async def test_hostile_options_round_trip(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    _, url = emu
    options = {
        "long_fields": 5000,
        "long_fields_dirty": True,
        "long_header_max": 100,
        "data_status": "",
        "gzip_bomb_bytes": 400_000_000,
        "declare_length": True,
        "trickle_seconds_per_byte": 0.5,
        "trickle_max_seconds": 30,
        "actions": [START],
    }
    await put_faults(http, url, **options)
    current = (await http.get(f"{url}/_emulator/faults")).json()
    assert FaultConfig.model_validate(current) == FaultConfig.model_validate(options)


def test_cli_flags_set_hostile_options() -> None:
    config = build_config(
        None,
        {"long_fields": 300, "long_fields_dirty": True, "data_status": "RUNNING", "trickle_seconds_per_byte": 0.5},
        {},
    )
    faults = config.faults
    assert (faults.long_fields, faults.long_fields_dirty, faults.data_status) == (300, True, "RUNNING")
    assert (faults.trickle_seconds_per_byte, faults.big_body_bytes, faults.declare_length) == (0.5, 0, False)


# -- over HTTP -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dirty", [False, True])
async def test_long_fields(emu: tuple[Emulator, str], http: httpx.AsyncClient, dirty: bool) -> None:
    emulator, url = emu
    await put_faults(http, url, long_fields=20_000, long_fields_dirty=dirty, long_header_max=9000)
    response = await call(http, url)
    assert response.status_code == 200
    body = response.json()
    entry = emulator.request_log.entries()[-1]
    assert len(body["Data"]["Message"]) == 20_000
    assert len(body["RequestId"]) == 20_000
    assert body["RequestId"].startswith(entry.request_id)  # the log keeps the short id it started with
    header = response.headers["x-acs-request-id"]
    assert len(header) == 9000
    assert ("\x9b" in header) is dirty
    assert ("\x1b" in body["Data"]["Message"]) is dirty
    assert body["Data"]["Status"] == "success"
    assert emulator.state.instance(10000, 100).start_count == 1  # performed
    assert (entry.http_status, entry.code, entry.fault) == (200, "success", "long_fields")
    # A short limit: the header is shorter than the body's fields.
    await put_faults(http, url, long_fields=300)
    response = await call(http, url, INFO)
    assert len(response.headers["x-acs-request-id"]) == 300
    assert len(response.json()["Data"]["Message"]) == 300


async def test_long_fields_in_error_documents_after_authentication(
    emu: tuple[Emulator, str], http: httpx.AsyncClient
) -> None:
    emulator, url = emu
    await put_faults(http, url, long_fields=5000, long_fields_dirty=True, error_rate=1)
    response = await call(http, url)
    assert response.status_code == 500
    document = response.json()
    assert (len(document["Message"]), len(document["RequestId"]), document["Code"]) == (
        5000,
        5000,
        "InternalError.System",
    )
    assert len(response.headers["x-acs-request-id"]) == 5000
    assert emulator.request_log.entries()[-1].fault == "error+long_fields"
    # A request that fails authentication gets the plain answer, like every other fault.
    target, headers = signed(url, START)
    headers["Authorization"] = headers["Authorization"].replace("Signature=", "Signature=00")
    rejected = await http.post(target, headers=headers)
    assert rejected.status_code == 400
    assert len(rejected.json()["Message"]) < 1000


@pytest.mark.parametrize("answer", ["RUNNING", "", "SUCCESS!", "x" * 4096])
async def test_data_status_answers_start_and_stop_with_it_but_performs_them(
    emu: tuple[Emulator, str], http: httpx.AsyncClient, answer: str
) -> None:
    emulator, url = emu
    await put_faults(http, url, data_status=answer)
    started = await call(http, url)
    assert started.json()["Data"]["Status"] == answer
    assert emulator.state.instance(10000, 100).start_count == 1
    info = await call(http, url, INFO)
    assert info.json()["Data"]["Status"] == "WAIT"  # a state, not an outcome: left alone
    stopped = await call(http, url, STOP)
    assert stopped.json()["Data"]["Status"] == answer
    assert emulator.state.instance(10000, 100).stop_count == 1
    assert [(e.action, e.code, e.fault) for e in emulator.request_log.entries()] == [
        (START, "success", "data_status"),
        (INFO, "success", None),
        (STOP, "success", "data_status"),
    ]


async def test_data_status_leaves_a_failed_action_failed(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, data_status="RUNNING")
    target, headers = signed(url, START, FileId=999)
    response = await http.post(target, headers=headers)
    assert response.json()["Data"]["Status"] == "fail"
    assert emulator.request_log.entries()[-1].fault is None


@pytest.mark.parametrize("declare", [False, True])
async def test_big_body(emu: tuple[Emulator, str], http: httpx.AsyncClient, declare: bool) -> None:
    emulator, url = emu
    await put_faults(http, url, big_body_bytes=5_000_000, declare_length=declare)
    response = await call(http, url)
    assert response.status_code == 200
    assert len(response.content) == 5_000_000
    assert response.json()["Data"]["Status"] == "success"
    if declare:
        assert response.headers["content-length"] == "5000000"
    else:
        assert response.headers["transfer-encoding"] == "chunked"
        assert "content-length" not in response.headers
    assert emulator.state.instance(10000, 100).start_count == 1
    entry = await finished(emulator)
    assert (entry.fault, entry.sent_bytes, entry.answer_end) == ("big_body", 5_000_000, "complete")


async def test_big_body_is_streamed_and_stops_when_the_client_goes(
    emu: tuple[Emulator, str], http: httpx.AsyncClient
) -> None:
    emulator, url = emu
    await put_faults(http, url, big_body_bytes=4 << 30)  # 4 GiB: only the generator knows
    target, headers = signed(url, START)
    async with http.stream("POST", target, headers=headers) as response:
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > MIB:
                break
    entry = await finished(emulator)
    assert entry.answer_end == "client_gone"
    assert entry.sent_bytes is not None
    assert entry.sent_bytes < 1 << 30


@pytest.mark.parametrize("declare", [False, True])
async def test_gzip_bomb(emu: tuple[Emulator, str], http: httpx.AsyncClient, declare: bool) -> None:
    emulator, url = emu
    await put_faults(http, url, gzip_bomb_bytes=3 * MIB, declare_length=declare)
    target, headers = signed(url, START)
    async with http.stream("POST", target, headers=headers) as response:
        assert response.headers["content-encoding"] == "gzip"
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
        if declare:
            assert response.headers["content-length"] == str(len(raw))
    assert len(raw) < 10_000
    content = zlib.decompress(raw, zlib.MAX_WBITS | 16)
    assert len(content) == 3 * MIB
    assert json.loads(content)["Data"]["Status"] == "success"
    assert emulator.state.instance(10000, 100).start_count == 1
    entry = await finished(emulator)
    assert (entry.fault, entry.sent_bytes, entry.answer_end) == ("gzip_bomb", len(raw), "complete")


async def test_trickle_sends_the_head_at_once_and_the_body_byte_by_byte(
    emu: tuple[Emulator, str], http: httpx.AsyncClient
) -> None:
    emulator, url = emu
    await put_faults(http, url, trickle_seconds_per_byte=0.01)
    target, headers = signed(url, START)
    began = time.monotonic()
    async with http.stream("POST", target, headers=headers) as response:
        head = time.monotonic() - began
        length = int(response.headers["content-length"])
        pieces = [chunk async for chunk in response.aiter_raw()]
    elapsed = time.monotonic() - began
    assert json.loads(b"".join(pieces))["Data"]["Status"] == "success"
    assert head < elapsed / 2
    assert elapsed >= (length - 1) * 0.01
    assert len(pieces) > length / 4  # arrived in many small pieces
    entry = await finished(emulator)
    assert (entry.fault, entry.sent_bytes, entry.answer_end) == ("trickle", length, "complete")
    assert entry.answer_seconds is not None
    assert entry.answer_seconds >= (length - 1) * 0.01


async def test_trickle_is_cut_after_its_maximum(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, trickle_seconds_per_byte=0.05, trickle_max_seconds=0.3)
    began = time.monotonic()
    with pytest.raises(httpx.TransportError):
        await call(http, url)
    assert time.monotonic() - began < 5
    entry = await finished(emulator)
    assert entry.answer_end == "cut"
    assert entry.sent_bytes is not None
    assert 3 <= entry.sent_bytes <= 9


async def test_trickle_ends_when_the_client_gives_up(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, trickle_seconds_per_byte=0.05)
    with pytest.raises(httpx.TimeoutException):
        await call(http, url, timeout=httpx.Timeout(10, read=0.01))
    entry = await finished(emulator)
    assert entry.answer_end == "client_gone"
    assert entry.answer_seconds is not None
    assert entry.answer_seconds < 3


async def test_stop_ends_a_trickle(http: httpx.AsyncClient) -> None:
    config = demo_config().model_copy(update={"faults": FaultConfig(trickle_seconds_per_byte=5)})
    emulator = Emulator(config)
    url = await emulator.start()
    pending = asyncio.ensure_future(call(http, url, timeout=httpx.Timeout(60)))
    deadline = time.monotonic() + 10
    while not emulator.request_log.entries():  # poll until the answer is being trickled
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    began = time.monotonic()
    await emulator.stop()
    assert time.monotonic() - began < 10
    with pytest.raises(httpx.TransportError):
        await pending
    assert emulator.request_log.entries()[-1].answer_end == "stopped"


async def test_hostile_modes_scoped_to_actions(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, big_body_bytes=MIB, long_fields=500, actions=[INFO])
    started = await call(http, url)
    assert len(started.content) < 500
    assert started.json()["Data"]["Message"] is None
    info = await call(http, url, INFO)
    assert len(info.content) == MIB
    await finished(emulator, INFO)
    assert [e.fault for e in emulator.request_log.entries()] == [None, "long_fields+big_body"]


async def test_truncation_wins_over_body_modes(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    await put_faults(http, url, truncated_rate=1, big_body_bytes=MIB, data_status="RUNNING")
    response = await call(http, url)
    assert len(response.content) < 200
    assert emulator.request_log.entries()[-1].fault == "truncated+data_status"


# -- what the project's client makes of them -----------------------------------------------------------------


async def test_the_client_refuses_big_bodies_and_bombs(emu: tuple[Emulator, str], http: httpx.AsyncClient) -> None:
    emulator, url = emu
    async with client(url, max_response_bytes=MIB) as dataworks:
        for faults in (
            {"big_body_bytes": 50_000_000},
            {"big_body_bytes": 50_000_000, "declare_length": True},
            {"gzip_bomb_bytes": 400_000_000},
            {"gzip_bomb_bytes": 400_000_000, "declare_length": True},
        ):
            await put_faults(http, url, **faults)
            with pytest.raises(MalformedResponseError) as caught:
                await dataworks.start_instance(START_REQUEST)
            assert caught.value.code == "ResponseTooLarge", faults
            assert caught.value.retryable
    assert emulator.state.instance(10000, 100).start_count == 4  # every one was performed


async def test_the_client_flags_an_odd_status_and_cuts_a_trickle(
    emu: tuple[Emulator, str], http: httpx.AsyncClient
) -> None:
    _, url = emu
    async with client(url, connect_timeout=1, read_timeout=0.5, call_timeout=0.6) as dataworks:
        await put_faults(http, url, data_status="RUNNING")
        with pytest.raises(UnknownOutcomeError):
            await dataworks.start_instance(START_REQUEST)
        await put_faults(http, url, trickle_seconds_per_byte=0.1)
        began = time.monotonic()
        with pytest.raises(TransportError) as caught:
            await dataworks.start_instance(START_REQUEST)
        assert caught.value.code == "CallTimeout"
        assert time.monotonic() - began < 3
        await put_faults(http, url, long_fields=20_000, long_fields_dirty=True)
        answer = await dataworks.start_instance(START_REQUEST)
        assert len(answer.request_id or "") == 20_000
