"""The aiohttp-backed httpx transport (transport.py) against real sockets: a scripted HTTP/1.1 server on 127.0.0.1.

What callers rely on: requests go out as httpx built them (once each header), answers come back as httpx
responses whose raw bytes are what was sent (decoding is httpx's), connections are reused, a body closed early
closes its connection, and failures keep httpx's classes, including "never sent" (connect) apart from "may have
been sent" (anything after).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest

from disync_operator.transport import AiohttpTransport

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # the request head+body -> keep the connection?


@dataclass
class Server:
    port: int = 0
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    closed_by_client: asyncio.Event = field(default_factory=asyncio.Event)


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[Server]:
    server = Server()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    server.closed_by_client.set()
                    return
                server.requests.append(request)
                if not await answer(request, writer):
                    return
        finally:
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()


def ok(body: bytes, *headers: str) -> Answer:
    async def answer(_: bytes, writer: asyncio.StreamWriter) -> bool:
        head = "".join(f"{h}\r\n" for h in (f"Content-Length: {len(body)}", *headers))
        writer.write(f"HTTP/1.1 200 OK\r\n{head}\r\n".encode() + body)
        await writer.drain()
        return True

    return answer


def client(port: int, transport: AiohttpTransport, **kwargs: float) -> httpx.AsyncClient:
    timeout = httpx.Timeout(kwargs.get("read", 5.0), connect=kwargs.get("connect", 5.0))
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", transport=transport, timeout=timeout)


async def test_requests_go_out_once_each_and_reuse_one_connection() -> None:
    async with (
        serving(ok(b'{"a": 1}', "Content-Type: application/json", "X-Id: 7")) as server,
        client(server.port, AiohttpTransport(connections=4)) as http,
    ):
        first = await http.post("/x?y=1", json={"k": "v"}, headers={"Authorization": "Bearer t"})
        second = await http.get("/z")
    assert first.status_code == 200
    assert first.json() == {"a": 1}
    assert first.headers["x-id"] == "7"
    assert second.status_code == 200
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /x?y=1 HTTP/1.1"
    names = [line.split(b":", 1)[0].lower() for line in lines[1:]]
    assert sorted(names) == sorted(set(names)), names  # no header twice (Host, Content-Length are aiohttp's)
    assert b"authorization: Bearer t" in head.lower().replace(b"bearer", b"Bearer")
    assert body == b'{"k":"v"}'


async def test_compressed_answers_reach_httpx_raw() -> None:
    packed = gzip.compress(b'{"big": "' + b"x" * 1000 + b'"}')
    async with (
        serving(ok(packed, "Content-Encoding: gzip")) as server,
        client(server.port, AiohttpTransport(connections=1)) as http,
    ):
        async with http.stream("GET", "/") as response:
            raw = b"".join([chunk async for chunk in response.aiter_raw()])
        decoded = await http.get("/")
    assert raw == packed  # callers that bound decoding (dataworks/_body.py) see the wire bytes
    assert decoded.json() == {"big": "x" * 1000}


async def test_a_body_closed_unread_closes_its_connection() -> None:
    async with serving(ok(b"y" * 1_000_000)) as server, client(server.port, AiohttpTransport(connections=1)) as http:
        async with http.stream("GET", "/") as response:
            async for _ in response.aiter_raw():
                break
        await asyncio.wait_for(server.closed_by_client.wait(), 5)
        assert (await http.get("/")).status_code == 200
    assert server.connections == 2


async def test_a_refused_connection_is_a_connect_error() -> None:
    async with serving(ok(b"")) as server:
        port = server.port
    async with client(port, AiohttpTransport(connections=1)) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("/")


async def test_a_hang_up_after_the_request_is_a_read_error_and_a_post_is_sent_once() -> None:
    async def hang_up(_: bytes, __: asyncio.StreamWriter) -> bool:
        return False

    async with serving(hang_up) as server, client(server.port, AiohttpTransport(connections=1)) as http:
        with pytest.raises(httpx.ReadError):  # the request went out: not a ConnectError
            await http.post("/", content=b"start")
        posts = len(server.requests)
        with pytest.raises(httpx.ReadError):
            await http.get("/")
    # Every DataWorks call is a POST: never repeated by the transport, so "may have been sent" means at most once.
    assert posts == 1
    # An idempotent method is sent again once on a fresh connection, as Go's net/http does for client-go.
    assert len(server.requests) == 3


async def test_no_answer_within_the_read_timeout_is_a_read_timeout() -> None:
    async def silent(_: bytes, __: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(5)
        return False

    async with serving(silent) as server, client(server.port, AiohttpTransport(connections=1), read=0.2) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/")


async def test_a_header_that_http_cannot_carry_is_refused_before_sending() -> None:
    async with serving(ok(b"")) as server, client(server.port, AiohttpTransport(connections=1)) as http:
        with pytest.raises(httpx.LocalProtocolError) as raised:
            await http.get("/", headers={"X-Token": "line\r\nInjected: yes"})
    assert "line" not in str(raised.value)  # the value is not quoted
    assert server.requests == []


async def test_a_long_answer_header_is_read_as_httpx_reads_it() -> None:
    async with (
        serving(ok(b"{}", "X-Acs-Request-Id: " + "r" * 10_000)) as server,
        client(server.port, AiohttpTransport(connections=1)) as http,
    ):
        response = await http.get("/")
    assert len(response.headers["x-acs-request-id"]) == 10_000


async def test_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(ok(b"via proxy")) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
        transport = AiohttpTransport(connections=1)
        async with httpx.AsyncClient(transport=transport) as http:
            response = await http.get("http://dataworks.example.invalid/api")
            with pytest.raises(httpx.ConnectError):  # NO_PROXY: straight to a name that does not resolve
                await http.get("http://bypassed.invalid/")
    assert response.text == "via proxy"
    assert proxy.requests[0].startswith(b"GET http://dataworks.example.invalid/api HTTP/1.1")
    assert len(proxy.requests) == 1


async def test_a_closed_transport_opens_nothing_new() -> None:
    async with serving(ok(b"")) as server:
        transport = AiohttpTransport(connections=1)
        async with client(server.port, transport) as http:
            assert (await http.get("/")).status_code == 200
        with pytest.raises(RuntimeError):
            await transport.handle_async_request(httpx.Request("GET", f"http://127.0.0.1:{server.port}/"))
    assert server.connections == 1
