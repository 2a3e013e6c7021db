"""An httpx transport that sends through aiohttp: httpx stays the clients' face (and tests' seam), aiohttp moves the
bytes.

Why (docs/design.md, measured in bench/): httpcore's pool probes every idle connection's socket and re-scans every
queued request whenever one is queued or released, and its TLS runs through anyio's stream wrappers; for the
operator's three small requests per resource that was about a quarter of its CPU, and more connections made it
worse. aiohttp (already installed: kopf's own client, and the operator's health server) keeps connections in O(1)
structures and parses with its C parser.

What httpx expects of a transport and what this one does:
- the body is a stream: read as it arrives, decoded by httpx (aiohttp's own decompression is off, so callers that
  bound what they read, like dataworks/_body.py, see the raw bytes), and closing it early closes the connection;
- failures are httpx's exception classes, with the request attached: "not sent" (connect errors and connect
  timeouts) is kept apart from "may have been sent", since callers decide on retries with it;
- a POST (every DataWorks call, the operator's Event and Lease creations) is sent at most once; aiohttp sends an
  idempotent request (GET, PUT) once more when the server hangs up before answering, as Go's net/http does for
  client-go (a Lease PUT carries its resourceVersion, so a repeat is refused, not applied twice);
- timeouts: httpx's per-request connect/read values (pool and write waits are bounded by the callers' own deadlines);
- trust: certifi's CA bundle unless a context is given, and HTTP(S)_PROXY/NO_PROXY from the environment, read once,
  as httpx's own transport does (aiohttp's trust_env would also read ~/.netrc and could replace an Authorization
  header with its credentials).
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable

import aiohttp
import certifi
import httpx

__all__ = ["AiohttpTransport"]

# Headers aiohttp computes from the request itself; passing httpx's copies would send them twice.
_COMPUTED = frozenset({b"host", b"content-length", b"transfer-encoding", b"connection"})
_CHUNK = 64 * 1024
_MAX_HEAD = 16 * 1024
# NO_PROXY matching as httpx and urllib do it (present at run time, absent from the type stubs).
_bypass: Callable[[str, dict[str, str]], bool] = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009


class _Body(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_chunked(_CHUNK):
                yield chunk
        except Exception as error:
            raise _httpx_error(error, self._request, sent=True) from None

    async def aclose(self) -> None:
        # A body read to the end gives the connection back to the pool; one left unread closes it.
        self._response.release()


def _timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    values: dict[str, float | None] = request.extensions.get("timeout", {})
    return aiohttp.ClientTimeout(
        total=None, connect=values.get("pool"), sock_connect=values.get("connect"), sock_read=values.get("read")
    )


def _httpx_error(error: BaseException, request: httpx.Request, *, sent: bool) -> httpx.TransportError:
    """The httpx class a caller would have seen from httpx's own transport. The message is the class name only:
    libraries quote request details in theirs, and those may carry credentials."""
    text = type(error).__name__
    if isinstance(error, TimeoutError):
        return (httpx.ReadTimeout if sent else httpx.ConnectTimeout)(text, request=request)
    if not sent:
        return httpx.ConnectError(text, request=request)
    if isinstance(error, aiohttp.ClientPayloadError):
        return httpx.RemoteProtocolError(text, request=request)
    return httpx.ReadError(text, request=request)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """At most `connections` connections, each kept alive `keepalive` seconds after its last request (below any
    server's idle timeout, so a request rarely meets a connection the server is closing)."""

    def __init__(self, *, connections: int, ssl_context: ssl.SSLContext | None = None, keepalive: float = 5.0) -> None:
        self._connections = connections
        self._ssl = ssl_context or ssl.create_default_context(cafile=certifi.where())
        self._keepalive = keepalive
        self._proxies = urllib.request.getproxies_environment()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp binds a session to the running event loop.
        if self._closed:
            raise RuntimeError("the transport is closed")  # as httpx's client refuses: no new connections after close
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._connections, limit_per_host=0, ssl=self._ssl, keepalive_timeout=self._keepalive
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                cookie_jar=aiohttp.DummyCookieJar(),
                # h11's (httpx's) limit for a response head; aiohttp's default (8 KiB a line) refuses answers httpx
                # reads, e.g. a long request id, which the callers bound themselves.
                max_line_size=_MAX_HEAD,
                max_field_size=_MAX_HEAD,
            )
        return self._session

    def _proxy(self, url: httpx.URL) -> str | None:
        if not self._proxies or _bypass(url.host, self._proxies):
            return None
        return self._proxies.get(url.scheme) or self._proxies.get("all")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower() not in _COMPUTED
        ]
        content = request.content  # httpx has it in memory: clients here send JSON or form bodies only
        sent = False
        try:
            response = await session.request(
                request.method,
                str(request.url),
                headers=headers,
                data=content or None,
                allow_redirects=False,
                proxy=self._proxy(request.url),
                timeout=_timeout(request),
                compress=None,
                auto_decompress=False,
            )
        except aiohttp.ClientConnectorError as error:
            raise _httpx_error(error, request, sent=False) from None
        except (ValueError, TypeError) as error:
            # aiohttp refuses a request it can't write as HTTP (e.g. a header value with a line break) before
            # sending anything: httpx calls that a local protocol error. Its text may quote the value: not kept.
            raise httpx.LocalProtocolError(type(error).__name__, request=request) from None
        except (TimeoutError, aiohttp.ClientError) as error:
            sent = not isinstance(error, aiohttp.ConnectionTimeoutError)
            raise _httpx_error(error, request, sent=sent) from None
        return httpx.Response(
            response.status,
            headers=[(name, value) for name, value in response.raw_headers],
            stream=_Body(response, request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None
