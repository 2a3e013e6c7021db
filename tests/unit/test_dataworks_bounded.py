"""A badly answering endpoint costs the client bounded memory and time: response size limits, the call deadline.

The memory and deadline tests run the client against real sockets: an HTTP/1.1 server on 127.0.0.1 that answers
with a scripted byte stream. The rest use httpx.MockTransport with a streamed body.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import json
import math
import random
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx
import pydantic
import pytest

from disync_operator.dataworks import (
    ClientOptions,
    DataWorksClient,
    GetDISyncInstanceInfoRequest,
    InstanceInfoResponse,
    InvalidParameterError,
    MalformedResponseError,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    TransportError,
)

INFO = GetDISyncInstanceInfoRequest(project_id=10000, task_type="DI_REALTIME", file_id=100)
START = StartDISyncInstanceRequest(project_id=10000, task_type="DI_REALTIME", file_id=100)
MIB = 1 << 20
LIMIT = 1_048_576
# Budget for the whole client call against a hostile body; the body itself is allocated before the baseline.
RSS_BUDGET_KIB = 20 * 1024
STATUS = Path("/proc/self/status")


def info_body(size: int | None = None) -> bytes:
    """A valid GetDISyncInstanceInfo answer, padded with JSON whitespace to exactly ``size`` bytes."""
    body = json.dumps({"RequestId": "rid", "Success": True, "Data": {"Status": "RUN"}}).encode()
    if size is not None:
        assert size >= len(body)
        body += b" " * (size - len(body))
    return body


# ------------------------------------------------------------------------------------------------- local server


class ScriptedServer:
    """HTTP/1.1 on 127.0.0.1: reads each request's head, then lets ``respond`` write whatever it likes.

    ``hung_up`` is set once a client has closed its connection (EOF or reset), ``bytes_sent`` counts what the
    script managed to hand to the socket, ``connections`` the connections accepted.
    """

    Script = Callable[[asyncio.StreamWriter, asyncio.Event, int], Awaitable[None]]

    def __init__(self, respond: Script) -> None:
        self._respond = respond
        self.hung_up = asyncio.Event()
        self.responding = asyncio.Event()
        self.bytes_sent = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._server is not None
        self._server.close()
        # The clients are closed by now, so every handler is about to see its EOF; stragglers are cancelled.
        handlers = list(self._handlers)
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=10)
            for task in pending:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
        await self._server.wait_closed()

    def write(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        self.bytes_sent += len(data)
        writer.write(data)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        number = self.connections
        closed = asyncio.Event()
        watcher: asyncio.Task[None] | None = None
        try:
            await reader.readuntil(b"\r\n\r\n")  # the client's requests have an empty body
            watcher = asyncio.create_task(self._watch(reader, closed))
            self.responding.set()
            await self._respond(writer, closed, number)
            await closed.wait()
        except (ConnectionError, asyncio.IncompleteReadError):
            closed.set()
        except asyncio.CancelledError:
            # Ends the handler quietly: on Python 3.11 a cancelled start_server handler is reported as an error.
            pass
        finally:
            if closed.is_set():
                self.hung_up.set()
            if watcher is not None:
                watcher.cancel()
            writer.close()
            self._handlers.discard(task)

    @staticmethod
    async def _watch(reader: asyncio.StreamReader, closed: asyncio.Event) -> None:
        # Reads (and drops) until the client closes: its EOF or reset is the signal the connection was not leaked.
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        closed.set()


def head(status: int = 200, **headers: str | int) -> bytes:
    lines = [f"HTTP/1.1 {status} X"] + [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def paced(server: ScriptedServer, writer: asyncio.StreamWriter, closed: asyncio.Event, data: bytes) -> None:
    """One byte per 0.2 s (the trickling sender under test), stopping as soon as the client hangs up."""
    for index in range(len(data)):
        server.write(writer, data[index : index + 1])
        await writer.drain()
        try:
            await asyncio.wait_for(closed.wait(), 0.2)
        except TimeoutError:
            continue
        return


def client_for(url: str, **options: Any) -> DataWorksClient:
    return DataWorksClient(url, StaticCredentialsProvider("ak", "sk"), options=ClientOptions(**options))


# --------------------------------------------------------------------------------------------------- memory


def kib(field: str) -> int:
    for line in STATUS.read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in {STATUS}")


def reset_peak() -> bool:
    """Make VmHWM start again from the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class MemoryProbe:
    """RSS growth across a block, and, where the kernel lets us reset it, the peak within the block."""

    def __enter__(self) -> Self:
        self.peak_measured = reset_peak()
        self.before = kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.after = kib("VmRSS")
        self.peak = kib("VmHWM")

    @property
    def growth(self) -> int:
        return self.after - self.before

    @property
    def peak_growth(self) -> int:
        return self.peak - self.before

    def check(self, budget_kib: int) -> None:
        print(f"RSS before {self.before} KiB, after {self.after} KiB (+{self.growth}), peak +{self.peak_growth} KiB")
        assert self.growth < budget_kib
        if self.peak_measured:
            assert self.peak_growth < budget_kib


@functools.cache
def gzip_bomb() -> bytes:
    """About 400 KB of gzip that inflates to 400 MiB of zeros, built without holding the inflated form."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(MIB)
    parts = [compressor.compress(block) for _ in range(400)]
    parts.append(compressor.flush())
    return b"".join(parts)


needs_proc = pytest.mark.skipif(not STATUS.exists(), reason="needs /proc/self/status (Linux)")


@needs_proc
async def test_gzip_bomb_is_refused_within_the_memory_budget() -> None:
    bomb = gzip_bomb()
    assert len(bomb) < 420_000
    assert len(bomb) < LIMIT  # under the limit as received: it is the decoded count that must stop it

    async def respond(writer: asyncio.StreamWriter, closed: asyncio.Event, _: int) -> None:
        server.write(writer, head(content_type="application/json", content_encoding="gzip", content_length=len(bomb)))
        server.write(writer, bomb)
        await writer.drain()

    async with ScriptedServer(respond) as server, client_for(server.url) as client:
        with MemoryProbe() as memory, pytest.raises(MalformedResponseError) as info:
            await client.get_instance_info(INFO)
        await asyncio.wait_for(server.hung_up.wait(), 10)
    memory.check(RSS_BUDGET_KIB)
    error = info.value
    assert error.retryable
    assert error.code == "ResponseTooLarge"
    assert f"response larger than {LIMIT} bytes" in str(error)
    assert error.http_status == 200


@needs_proc
async def test_large_plain_body_is_refused_early() -> None:
    total = 50_000_000
    chunk = b"x" * 65536

    async def respond(writer: asyncio.StreamWriter, closed: asyncio.Event, _: int) -> None:
        # Chunked, so no Content-Length announces the size: only counting can stop it.
        server.write(writer, head(content_type="application/json", transfer_encoding="chunked"))
        sent = 0
        while sent < total and not closed.is_set():
            server.write(writer, b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            await writer.drain()

    async with ScriptedServer(respond) as server, client_for(server.url) as client:
        with MemoryProbe() as memory, pytest.raises(MalformedResponseError) as info:
            await client.get_instance_info(INFO)
        await asyncio.wait_for(server.hung_up.wait(), 10)
    memory.check(RSS_BUDGET_KIB)
    assert info.value.code == "ResponseTooLarge"
    assert f"response larger than {LIMIT} bytes" in str(info.value)
    assert "xxxx" not in str(info.value)
    # The client hung up long before the end; what the server got rid of is at most the limit plus socket buffers.
    print(f"server handed {server.bytes_sent} of {total} bytes to the socket before the client hung up")
    assert server.bytes_sent < total / 2


async def test_content_length_above_the_limit_is_refused_before_reading() -> None:
    async def respond(writer: asyncio.StreamWriter, closed: asyncio.Event, _: int) -> None:
        # Announces 50 MB and sends none of it: a client that waited for the body would hit its read timeout.
        server.write(writer, head(x_acs_request_id="RID-big", content_length=50_000_000))
        await writer.drain()

    async with ScriptedServer(respond) as server, client_for(server.url, read_timeout=30) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(MalformedResponseError) as info:
            await client.get_instance_info(INFO)
        assert loop.time() - started < 10  # far below read_timeout: it did not wait for the body
        await asyncio.wait_for(server.hung_up.wait(), 10)
    assert info.value.code == "ResponseTooLarge"
    assert info.value.request_id == "RID-big"


# ------------------------------------------------------------------------------------------------- deadline

SLOW_BODY = info_body(101)


@pytest.mark.parametrize("what", ["body", "whole response"])
async def test_slow_sender_is_cut_at_the_call_deadline(what: str) -> None:
    deadline = 1.0
    outcomes: list[str] = []

    async def respond(writer: asyncio.StreamWriter, closed: asyncio.Event, _: int) -> None:
        response_head = head(content_type="application/json", content_length=len(SLOW_BODY))
        if what == "body":
            server.write(writer, response_head)
            await paced(server, writer, closed, SLOW_BODY)
        else:
            await paced(server, writer, closed, response_head + SLOW_BODY)

    loop = asyncio.get_running_loop()
    async with (
        ScriptedServer(respond) as server,
        client_for(server.url, call_timeout=deadline, on_call=lambda _a, o, _s: outcomes.append(o)) as client,
    ):
        url = server.url
        started = loop.time()
        with pytest.raises(TransportError) as info:
            await client.get_instance_info(INFO)
        elapsed = loop.time() - started
        # The sender would need 101 x 0.2 s = 20 s (more for the whole response); the call ends at its deadline.
        assert deadline * 0.9 <= elapsed < deadline + 2.0
        await asyncio.wait_for(server.hung_up.wait(), 10)
    error = info.value
    assert error.code == "CallTimeout"
    assert error.retryable
    assert error.request_may_have_been_sent is True
    assert error.message == f"no complete response within the call deadline of 1s ({url})"
    assert error.__cause__ is None
    assert error.__context__ is None
    assert outcomes == ["timeout"]  # a fixed outcome value, not the class name


async def test_after_a_call_timeout_the_client_is_whole() -> None:
    """The timed-out call's concurrency slot and connection are released: with one slot, the next call works."""

    async def respond(writer: asyncio.StreamWriter, closed: asyncio.Event, number: int) -> None:
        body = info_body()
        if number == 1:
            server.write(writer, head(content_length=len(body)))
            await paced(server, writer, closed, body)
        else:
            server.write(writer, head(content_length=len(body)) + body)
            await writer.drain()

    async with ScriptedServer(respond) as server, client_for(server.url, call_timeout=0.5, max_concurrency=1) as c:
        with pytest.raises(TransportError, match="CallTimeout"):
            await c.get_instance_info(INFO)
        await asyncio.wait_for(server.hung_up.wait(), 10)
        response = await asyncio.wait_for(c.get_instance_info(INFO), 10)
    assert isinstance(response, InstanceInfoResponse)
    assert server.connections == 2


async def test_cancelling_a_call_is_not_a_call_timeout() -> None:
    async def respond(writer: asyncio.StreamWriter, closed: asyncio.Event, _: int) -> None:
        await closed.wait()  # never answers

    async with ScriptedServer(respond) as server, client_for(server.url, call_timeout=30) as client:
        call = asyncio.create_task(client.start_instance(START))
        await asyncio.wait_for(server.responding.wait(), 10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await asyncio.wait_for(server.hung_up.wait(), 10)


# ---------------------------------------------------------------------------------------------------- options


def test_option_defaults() -> None:
    options = ClientOptions()
    assert options.max_response_bytes == 1_048_576
    assert options.call_timeout is None
    assert options.effective_call_timeout == 15.0
    assert ClientOptions(connect_timeout=2, read_timeout=3).effective_call_timeout == 5.0
    assert ClientOptions(call_timeout=7.5).effective_call_timeout == 7.5


@pytest.mark.parametrize(
    "options",
    [
        {"call_timeout": 0},
        {"call_timeout": -1},
        {"call_timeout": math.inf},
        {"call_timeout": math.nan},
        {"max_response_bytes": 0},
        {"max_response_bytes": -1},
    ],
)
def test_invalid_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        ClientOptions(**options)


# --------------------------------------------------------------------------------- limits with a streamed body


class Streamed(httpx.AsyncByteStream):
    """A response body httpx has not read yet (unlike a content= response), so the client streams it."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = list(chunks)
        self.chunks_read = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.chunks_read += 1
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


def pieces(data: bytes, size: int = 100) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


async def call_streamed(
    body: bytes, *, status: int = 200, limit: int = 1000, request: Any = INFO, **headers: str
) -> tuple[Any, Streamed, httpx.Request]:
    stream = Streamed(pieces(body))
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, headers={k.replace("_", "-"): v for k, v in headers.items()}, stream=stream)

    async with DataWorksClient(
        "https://dataworks.cn-shanghai.aliyuncs.com",
        StaticCredentialsProvider("ak", "sk"),
        options=ClientOptions(max_response_bytes=limit),
        transport=httpx.MockTransport(handler),
    ) as client:
        try:
            if isinstance(request, StartDISyncInstanceRequest):
                result: Any = await client.start_instance(request)
            else:
                result = await client.get_instance_info(request)
        except Exception as exc:
            result = exc
    return result, stream, seen[0]


def deflate(data: bytes, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush()


async def test_body_of_exactly_the_limit_is_accepted_one_more_byte_refused() -> None:
    ok, stream, request = await call_streamed(info_body(1000))
    assert isinstance(ok, InstanceInfoResponse)
    assert stream.closed
    assert request.headers["accept-encoding"] == "gzip, deflate"
    refused, stream, _ = await call_streamed(info_body(1001))
    assert isinstance(refused, MalformedResponseError)
    assert refused.code == "ResponseTooLarge"
    assert "response larger than 1000 bytes" in str(refused)
    assert stream.closed


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw deflate", "deflate, gzip", "identity"])
async def test_decoded_size_is_limited_whatever_the_coding(coding: str) -> None:
    def encode(data: bytes) -> bytes:
        if coding == "gzip":
            return gzip.compress(data)
        if coding == "deflate":
            return deflate(data, zlib.MAX_WBITS)
        if coding == "raw deflate":
            return deflate(data, -zlib.MAX_WBITS)
        if coding == "deflate, gzip":  # deflate applied first, then gzip: decoded in the reverse order
            return gzip.compress(deflate(data, zlib.MAX_WBITS))
        return data

    header = "deflate" if coding == "raw deflate" else coding
    ok, _, _ = await call_streamed(encode(info_body(1000)), content_encoding=header)
    assert isinstance(ok, InstanceInfoResponse)
    assert ok.data.status == "RUN"
    refused, _, _ = await call_streamed(encode(info_body(1001)), content_encoding=header)
    assert isinstance(refused, MalformedResponseError)
    assert refused.code == "ResponseTooLarge"


async def test_received_size_is_limited_before_decoding() -> None:
    # Incompressible data: gzip makes it longer, so more than 1000 bytes arrive for fewer decoded.
    noise = random.Random(0).randbytes(990)
    received = gzip.compress(noise)
    assert len(received) > 1000
    refused, stream, _ = await call_streamed(received, content_encoding="gzip")
    assert isinstance(refused, MalformedResponseError)
    assert refused.code == "ResponseTooLarge"
    assert stream.chunks_read == 11  # stopped at the chunk that crossed the limit
    # A coding the client cannot decode is passed through undecoded (as httpx does), and counted as received.
    refused, stream, _ = await call_streamed(noise + noise[:11], content_encoding="br")
    assert isinstance(refused, MalformedResponseError)
    assert stream.chunks_read == 11


async def test_content_length_above_the_limit_is_refused_unread() -> None:
    refused, stream, _ = await call_streamed(info_body(1001), content_length="1001", x_acs_request_id="RID-cl")
    assert isinstance(refused, MalformedResponseError)
    assert refused.code == "ResponseTooLarge"
    assert refused.request_id == "RID-cl"
    assert stream.chunks_read == 0
    assert stream.closed


async def test_oversized_error_response_keeps_status_request_id_and_retry_after() -> None:
    body = b'{"Code": "ServiceUnavailable", "Message": "SECRET-LOOKING-TEXT' + b"A" * 2000 + b'"}'
    refused, _, _ = await call_streamed(body, status=503, x_acs_request_id="RID-503", retry_after="7")
    assert isinstance(refused, MalformedResponseError)
    assert refused.retryable
    assert refused.http_status == 503
    assert refused.request_id == "RID-503"
    assert refused.retry_after == 7.0
    assert "SECRET-LOOKING-TEXT" not in str(refused)
    assert "AAAA" not in repr(refused)


async def test_compressed_error_document_is_still_classified() -> None:
    error = json.dumps({"RequestId": "rid", "Code": "InvalidParameter", "Message": "bad"}).encode()
    result, _, _ = await call_streamed(gzip.compress(error), status=400, content_encoding="gzip")
    assert isinstance(result, InvalidParameterError)
    assert result.request_id == "rid"


async def test_corrupt_compressed_body_is_malformed() -> None:
    result, stream, _ = await call_streamed(b"\x1f\x8b" + b"not gzip at all" * 5, content_encoding="gzip")
    assert isinstance(result, MalformedResponseError)
    assert result.code == "DecodingError"
    assert result.__context__ is None
    assert stream.closed


async def test_already_read_response_is_held_to_the_limit() -> None:
    # httpx.MockTransport with content= hands over a response it has already read: the limit still applies.
    def handler(request: httpx.Request) -> httpx.Response:
        response = httpx.Response(200, content=info_body(1001))
        del response.headers["content-length"]  # so that it is not refused on the header alone
        return response

    async with DataWorksClient(
        "https://dataworks.cn-shanghai.aliyuncs.com",
        StaticCredentialsProvider("ak", "sk"),
        options=ClientOptions(max_response_bytes=1000),
        transport=httpx.MockTransport(handler),
    ) as client:
        with pytest.raises(MalformedResponseError, match="response larger than 1000 bytes"):
            await client.get_instance_info(INFO)
