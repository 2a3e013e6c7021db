"""The async DataWorks OpenAPI client for the DI sync-instance operations.

One :class:`DataWorksClient` per endpoint, one pooled ``httpx.AsyncClient`` inside it, shared by every custom
resource; credentials may differ per call. Each call is a single signed attempt: the operator owns retries and
backoff, the client's job is to classify the outcome precisely (see ``_errors``).

A failure while a request is built or sent is reported by the exception's class and a fixed text only: HTTP
libraries quote the offending header value in their messages, and that value may be a credential. Such errors are
raised outside the ``except`` block, so the original exception is not reachable as ``__cause__`` or ``__context__``
either (where a traceback printer or a log handler would find it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import __version__
from ..transport import AiohttpTransport
from ._body import ACCEPT_ENCODING, read_limited
from ._credentials import Credentials, CredentialsProvider, credentials_problem
from ._errors import (
    CallOutcome,
    CredentialsError,
    DataWorksError,
    MalformedResponseError,
    OperationFailedError,
    TerminalError,
    TransportError,
    UnknownOutcomeError,
    call_outcome,
    classify_error,
    sanitize_snippet,
)
from ._models import (
    ActionResponse,
    ApiResponse,
    ErrorBody,
    GetDISyncInstanceInfoRequest,
    InstanceInfoResponse,
    StartDISyncInstanceRequest,
    StopDISyncInstanceRequest,
    TerminateDISyncInstanceRequest,
    _InstanceRequest,
)
from ._signing import EMPTY_PAYLOAD_SHA256, authorization, canonical_query, new_nonce, utc_timestamp
from ._throttle import CallBudget

__all__ = ["API_VERSION", "ClientOptions", "DataWorksClient", "build_signed_request"]

log = logging.getLogger(__name__)

API_VERSION = "2020-05-18"

CallHook = Callable[[str, str, float], None]
_R = TypeVar("_R", bound=ApiResponse)


# Runs before a call is sent; returns the monotonic time by which the call must leave, or None for no limit.
BeforeSend = Callable[[], Awaitable[float | None]]


class ClientOptions(BaseModel):
    """Tuning for one :class:`DataWorksClient`.

    ``qps`` and ``max_concurrency`` are shared by all calls of the client (i.e. of one endpoint), which is what
    DataWorks' per-account API throttling cares about. ``on_call(action, outcome, seconds)`` is invoked after
    every call with its ``CallOutcome`` (a fixed set of strings), for metrics; ``seconds`` is the HTTP round
    trip (local queueing for the rate limit and concurrency cap excluded).

    ``connect_timeout`` and ``read_timeout`` bound each network step (``read_timeout`` each single read), so a
    sender trickling bytes never trips them; ``call_timeout`` bounds the whole exchange, connect + send + reading
    the complete response, and defaults to ``connect_timeout + read_timeout``. :attr:`effective_call_timeout` is
    the deadline in force. ``max_response_bytes`` caps a response body, both as received (compressed) and as
    decoded; a longer one is abandoned unread (``MalformedResponseError``, code ``ResponseTooLarge``).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    call_timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_response_bytes: int = Field(default=1_048_576, gt=0)
    qps: float | None = Field(default=None, gt=0)
    max_concurrency: int = Field(default=16, ge=1)
    user_agent: str = Field(default=f"disync-operator/{__version__}", min_length=1)
    on_call: CallHook | None = None

    @field_validator("user_agent")
    @classmethod
    def _clean_user_agent(cls, value: str) -> str:
        # The signed value is the stripped one; the sent value must be byte-identical.
        value = value.strip()
        if not value or not value.isprintable():
            raise ValueError("user_agent must be non-empty printable text")
        return value

    @property
    def effective_call_timeout(self) -> float:
        """Seconds one call may take from the moment it starts connecting (after credentials, rate limit,
        concurrency cap and ``before_send``) until its response is complete: ``call_timeout``, or
        ``connect_timeout + read_timeout`` when that is unset. Once the request may have left, the call ends
        within this time, so a lease on a started action must be longer than it."""
        if self.call_timeout is not None:
            return self.call_timeout
        return self.connect_timeout + self.read_timeout


def build_signed_request(
    *,
    base_url: str,
    host: str,
    action: str,
    query: dict[str, str],
    credentials: Credentials,
    user_agent: str,
    date: str | None = None,
    nonce: str | None = None,
) -> tuple[str, dict[str, str]]:
    """(URL, headers) of a signed V3 RPC call with an empty body, as the official SDK sends it.

    The URL carries the canonical query verbatim, so what the server sees is exactly what was signed. Every
    header except Authorization is signed (the V3 rule: "every common header present must be signed").
    """
    headers = {
        "host": host,
        "x-acs-action": action,
        "x-acs-version": API_VERSION,
        "x-acs-date": date or utc_timestamp(),
        "x-acs-signature-nonce": nonce or new_nonce(),
        "x-acs-content-sha256": EMPTY_PAYLOAD_SHA256,
        "accept": "application/json",
        "user-agent": user_agent,
    }
    if credentials.security_token is not None:
        headers["x-acs-accesskey-id"] = credentials.access_key_id
        headers["x-acs-security-token"] = credentials.security_token.get_secret_value()
    headers["authorization"] = authorization(
        method="POST",
        path="/",
        query=query,
        headers=headers,
        payload_sha256=EMPTY_PAYLOAD_SHA256,
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret.get_secret_value(),
    )
    return f"{base_url}/?{canonical_query(query)}", headers


# A retry-after beyond this is not advice but a broken or hostile header: capped, so a CR is retried within the hour
# and the wait stays representable (an "inf" or "1e308" once overflowed the operator's next-retry timestamp).
MAX_RETRY_AFTER = 3600.0


def _retry_after(headers: httpx.Headers, status: int) -> float | None:
    """Seconds to wait (finite, at most MAX_RETRY_AFTER): ``x-acs-retry-after`` (milliseconds, as the SDK reads it)
    or a 429's ``Retry-After``."""
    seconds = _raw_retry_after(headers, status)
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _raw_retry_after(headers: httpx.Headers, status: int) -> float | None:
    raw = headers.get("x-acs-retry-after")
    if raw:
        try:
            millis = float(raw)
        except ValueError:
            millis = 0.0
        if millis > 0:
            return millis / 1000.0
    raw = headers.get("retry-after")
    if raw and status in (429, 503):
        try:
            seconds = float(raw)
        except ValueError:
            try:
                seconds = (parsedate_to_datetime(raw) - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                return None
        return max(seconds, 0.0)
    return None


# Fixed texts per httpx exception class, most specific first (the first isinstance match wins).
_SEND_FAILURES: tuple[tuple[type[Exception], str], ...] = (
    (httpx.ConnectTimeout, "connect timed out"),
    (httpx.ReadTimeout, "read timed out"),
    (httpx.WriteTimeout, "write timed out"),
    (httpx.PoolTimeout, "timed out waiting for a free connection"),
    (httpx.TimeoutException, "timed out"),
    (httpx.ConnectError, "connection failed"),
    (httpx.ReadError, "reading the response failed"),
    (httpx.WriteError, "sending the request failed"),
    (httpx.CloseError, "closing the connection failed"),
    (httpx.NetworkError, "network error"),
    (httpx.ProxyError, "the proxy failed the request"),
    (httpx.UnsupportedProtocol, "unsupported URL scheme"),
    (httpx.RemoteProtocolError, "the server broke the HTTP protocol"),
    (httpx.LocalProtocolError, "the request could not be encoded (a header value is invalid)"),
    (httpx.ProtocolError, "HTTP protocol error"),
    (httpx.DecodingError, "cannot decode the response body"),
    (httpx.TransportError, "transport failure"),
)
# No byte of the request left: the connection, or a pooled one, was never obtained.
_NOT_SENT = (httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ConnectError)


def _call_timeout(deadline: float, action: str, base_url: str) -> TransportError:
    # The request may be executing server-side whatever phase the deadline cut (connect, send or read): the caller
    # must verify rather than assume it never arrived.
    return TransportError(
        f"no complete response within the call deadline of {deadline:g}s ({base_url})",
        request_may_have_been_sent=True,
        code="CallTimeout",
        action=action,
    )


def _send_failure(exc: Exception, action: str, base_url: str) -> DataWorksError:
    """The error to raise for ``exc`` from ``httpx.AsyncClient.send``: the class name as ``code`` and a fixed text,
    never ``str(exc)``."""
    code = type(exc).__name__
    text = next((text for cls, text in _SEND_FAILURES if isinstance(exc, cls)), "unexpected error sending the request")
    message = f"{text} ({base_url})"
    if isinstance(exc, _NOT_SENT):
        return TransportError(message, request_may_have_been_sent=False, code=code, action=action)
    if isinstance(exc, httpx.DecodingError):
        return MalformedResponseError(text, code=code, action=action)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
        return TerminalError(message, code=code, action=action)
    # Any other transport error, and anything unexpected (not an httpx error): bytes may have left, so the caller
    # must not assume the request never arrived.
    return TransportError(message, code=code, action=action)


# A Data.Status is quoted in an error, which ends up in CR status and logs: cleaned and short.
_STATUS_QUOTE_LEN = 40


def _quote_status(status: str) -> str:
    # Sliced before encoding: the value may be up to max_response_bytes long. "replace" because JSON can carry lone
    # surrogates, which UTF-8 cannot encode.
    return sanitize_snippet(status[: _STATUS_QUOTE_LEN * 4].encode("utf-8", "replace"), limit=_STATUS_QUOTE_LEN)


def _unknown_outcome(action: str, http_status: int, response: ActionResponse) -> UnknownOutcomeError:
    quoted = _quote_status(response.data.status)
    return UnknownOutcomeError(
        f"{action} answered Success=true with Data.Status {quoted!r}, neither success nor fail: whether it took "
        "effect is unknown",
        code="UnknownOutcome",
        response=response,
        http_status=http_status,
        # No api_message: summaries prefer it to the message, and the message is what names the odd status.
        request_id=response.request_id,
        action=action,
    )


class DataWorksClient:
    def __init__(
        self,
        endpoint: str,
        credentials: CredentialsProvider | None = None,
        *,
        options: ClientOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: CallBudget | None = None,
    ) -> None:
        """`budget`: a QPS limit and concurrency cap shared with other clients (default: this client's own, from
        `options`)."""
        url = httpx.URL(endpoint)
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"endpoint must be an http(s) base URL, got {endpoint!r}")
        if url.path not in ("", "/") or url.query or url.fragment:
            # V3 signs the path; every operation is POST "/", so a base path would break signatures.
            raise ValueError(f"endpoint must not have a path, query or fragment, got {endpoint!r}")
        self._host = url.netloc.decode("ascii")
        self._base_url = f"{url.scheme}://{self._host}"
        self._credentials = credentials
        self._options = options or ClientOptions()
        opts = self._options
        # aiohttp moves the bytes unless a test swaps the transport (transport.py says why); requests go straight to
        # it (_exchange), so the httpx client only builds them (timeouts, default headers) and closes the transport.
        self._transport = transport or AiohttpTransport(connections=opts.max_concurrency)
        self._http = httpx.AsyncClient(
            transport=self._transport,
            timeout=httpx.Timeout(
                connect=opts.connect_timeout, read=opts.read_timeout, write=opts.read_timeout, pool=opts.read_timeout
            ),
            headers={"accept-encoding": ACCEPT_ENCODING},
        )
        self._budget = budget or CallBudget(opts.qps, opts.max_concurrency)

    @property
    def endpoint(self) -> str:
        return self._base_url

    @property
    def options(self) -> ClientOptions:
        return self._options

    def __repr__(self) -> str:
        return f"DataWorksClient(endpoint={self._base_url!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----------------------------------------------------------------------------------------- operations

    async def start_instance(
        self,
        req: StartDISyncInstanceRequest,
        *,
        credentials: CredentialsProvider | None = None,
        before_send: BeforeSend | None = None,
    ) -> ActionResponse:
        """Start the instance. ``before_send`` runs once the rate limit lets this call go, before it takes a
        concurrency slot; if it raises, nothing is sent. It returns the monotonic time by which the request must
        leave (or None): if no slot frees up by then, nothing is sent (``TransportError`` ``SendWindowClosed``,
        ``request_may_have_been_sent=False``). The operator records its start intent there, so the intent's
        timestamp is close to the send time, and its lease covers the wait for a slot and the call."""
        return await self._call(req, ActionResponse, credentials, before_send)

    async def stop_instance(
        self,
        req: StopDISyncInstanceRequest,
        *,
        credentials: CredentialsProvider | None = None,
        before_send: BeforeSend | None = None,
    ) -> ActionResponse:
        """Stop the instance; ``before_send`` as for ``start_instance`` (a suspend's stop intent is written there)."""
        return await self._call(req, ActionResponse, credentials, before_send)

    async def terminate_instance(
        self, req: TerminateDISyncInstanceRequest, *, credentials: CredentialsProvider | None = None
    ) -> ActionResponse:
        return await self._call(req, ActionResponse, credentials)

    async def get_instance_info(
        self, req: GetDISyncInstanceInfoRequest, *, credentials: CredentialsProvider | None = None
    ) -> InstanceInfoResponse:
        # Data.Status "fail" is a legitimate answer here (e.g. "fileId:[N] is invalid."); the caller decides.
        return await self._call(req, InstanceInfoResponse, credentials)

    # ------------------------------------------------------------------------------------------ internals

    async def _call(
        self,
        req: _InstanceRequest,
        response_cls: type[_R],
        credentials: CredentialsProvider | None,
        before_send: BeforeSend | None = None,
    ) -> _R:
        action = req.action
        outcome: str = CallOutcome.SUCCESS
        elapsed = 0.0
        called = True
        try:
            creds = await self._resolve_credentials(credentials)
            if before_send is None:
                async with self._budget.slot():
                    started = time.monotonic()
                    try:
                        status, headers, body = await self._send(action, req.to_query(), creds)
                    finally:
                        elapsed = time.monotonic() - started
            else:
                # The QPS limit first, then the caller's work (the operator's start intent: a Kubernetes write), and
                # only then a concurrency slot: a slot held during that write would idle while the API server
                # answers, and under load cap the starts per second below the QPS limit (bench VS).
                await self._budget.token()
                called = False  # until it leaves: called off, or no slot in time, is no DataWorks call
                send_by = await before_send()
                async with self._budget.cap(send_by) as free:
                    if not free:
                        raise TransportError(
                            "not sent: no DataWorks call slot freed up in time (the concurrency cap stayed full)",
                            code="SendWindowClosed",
                            request_may_have_been_sent=False,
                            action=action,
                        )
                    called = True
                    started = time.monotonic()
                    try:
                        status, headers, body = await self._send(action, req.to_query(), creds)
                    finally:
                        elapsed = time.monotonic() - started
            result = self._parse(action, response_cls, status, headers, body)
            log.debug("DataWorks %s -> HTTP %s, RequestId %s, %.3fs", action, status, result.request_id, elapsed)
            return result
        except asyncio.CancelledError:
            outcome = CallOutcome.CANCELLED
            raise
        except DataWorksError as exc:
            outcome = call_outcome(exc)
            log.debug("DataWorks %s failed: %s", action, exc)
            raise
        except BaseException as exc:
            outcome = call_outcome(exc)
            raise
        finally:
            if called:
                self._report(action, outcome, elapsed)

    def _report(self, action: str, outcome: str, seconds: float) -> None:
        hook = self._options.on_call
        if hook is None:
            return
        try:
            hook(action, outcome, seconds)
        except Exception:
            # Metrics must never break API calls.
            log.exception("on_call hook failed")

    async def _resolve_credentials(self, override: CredentialsProvider | None) -> Credentials:
        provider = override if override is not None else self._credentials
        if provider is None:
            raise CredentialsError(
                "no credentials: pass a CredentialsProvider to DataWorksClient(...) or to the call (credentials=...)"
            )
        try:
            credentials = await provider.get_credentials()
        except DataWorksError:
            raise
        except Exception as exc:
            failure = type(exc).__name__
        else:
            # Checked whatever the provider: a value HTTP refuses would make httpx quote it in its error message.
            problem = credentials_problem(credentials)
            if problem is None:
                return credentials
            raise CredentialsError(f"credentials provider {type(provider).__name__} returned unusable {problem}")
        # Only the type, raised outside the handler: a third-party provider's message could quote what it was
        # loading, and it must not survive as __context__ either.
        raise CredentialsError(f"credentials provider {type(provider).__name__} failed: {failure}") from None

    def _signed_request(self, action: str, query: dict[str, str], creds: Credentials) -> httpx.Request:
        # Date and nonce are minted here, per attempt: a retried call must never reuse a nonce.
        url, headers = build_signed_request(
            base_url=self._base_url,
            host=self._host,
            action=action,
            query=query,
            credentials=creds,
            user_agent=self._options.user_agent,
        )
        return self._http.build_request("POST", url, headers=headers, content=b"")

    def _build_request(self, action: str, query: dict[str, str], creds: Credentials) -> httpx.Request:
        # The work is in _signed_request so that its frame, whose locals hold the plain header values, is part of
        # the discarded exception's traceback only, not of the one raised here.
        try:
            return self._signed_request(action, query, creds)
        except Exception as exc:
            code = type(exc).__name__
        # Nothing was sent, and the same credentials would fail again: terminal until they change. (Validated
        # credentials cannot get here; this is the backstop for whatever slips through, e.g. a non-ASCII value
        # that httpx refuses to encode with a UnicodeEncodeError quoting it.)
        raise CredentialsError(
            "the signed request could not be built: a credential or header value is not a valid HTTP header value",
            code=code,
            action=action,
        ) from None

    async def _send(self, action: str, query: dict[str, str], creds: Credentials) -> tuple[int, httpx.Headers, bytes]:
        request = self._build_request(action, query, creds)
        deadline = self._options.effective_call_timeout
        # httpx's timeouts are per step (each read may take read_timeout), so one byte a second would hold a call
        # for as long as the sender likes: this deadline bounds the whole exchange.
        timer = asyncio.timeout(deadline)
        failure: DataWorksError
        try:
            async with timer:
                status, headers, body = await self._exchange(request)
        except Exception as exc:
            # Whatever surfaced once the deadline passed (normally TimeoutError), the deadline is the cause.
            if timer.expired():
                failure = _call_timeout(deadline, action, self._base_url)
            else:
                failure = _send_failure(exc, action, self._base_url)
        else:
            if body is None:
                raise self._too_large(action, status, headers)
            return status, headers, body
        # Raised outside the handler: `from None` alone would still keep the httpx error as __context__.
        raise failure from None

    async def _exchange(self, request: httpx.Request) -> tuple[int, httpx.Headers, bytes | None]:
        """Status, headers and body (None: longer than max_response_bytes, left unread)."""
        # Straight to the transport: the client's redirect, cookie and auth steps have nothing to do for a signed
        # POST whose answer is read here (and cost a tenth of the operator's CPU per call; bench/).
        response = await self._transport.handle_async_request(request)
        try:
            body = await read_limited(response, self._options.max_response_bytes)
        finally:
            # Also on the limit, the deadline or a cancellation: an unread response's connection is closed here,
            # not returned to the pool or left open.
            await response.aclose()
        return response.status_code, response.headers, body

    def _too_large(self, action: str, status: int, headers: httpx.Headers) -> MalformedResponseError:
        # The headers are kept for diagnostics and retry timing, as for any other error; the body is not quoted.
        return MalformedResponseError(
            f"response larger than {self._options.max_response_bytes} bytes; not read ({self._base_url})",
            code="ResponseTooLarge",
            http_status=status,
            request_id=headers.get("x-acs-request-id"),
            retry_after=_retry_after(headers, status),
            action=action,
        )

    def _parse(self, action: str, response_cls: type[_R], status: int, headers: httpx.Headers, body: bytes) -> _R:
        header_request_id = headers.get("x-acs-request-id")
        retry_after = _retry_after(headers, status)
        if status >= 400:
            raise classify_error(
                status,
                ErrorBody.parse_error(body),
                retry_after=retry_after,
                action=action,
                request_id=header_request_id,
                snippet=sanitize_snippet(body),
            )
        if not 200 <= status < 300:
            raise MalformedResponseError(
                f"unexpected HTTP status; body: {sanitize_snippet(body)!r}",
                http_status=status,
                action=action,
                request_id=header_request_id,
            )
        try:
            result = response_cls.parse_wire(body)
        except ValidationError:
            raise self._unparseable_success(action, status, body, header_request_id, retry_after) from None
        if isinstance(result, ActionResponse):
            data = result.data
            # The API documents "success" and "fail" but answers them in varying case ("SUCCESS" has been seen), so
            # case is ignored; any other value (e.g. "RUNNING", "") is not an outcome and must not pass as success.
            outcome = data.status.lower()
            if not result.success or outcome == "fail":
                raise OperationFailedError(
                    data.message
                    or f"{action} reported Success={result.success}, Status={_quote_status(data.status)!r}",
                    response=result,
                    http_status=status,
                    api_message=data.message,
                    request_id=result.request_id,
                    action=action,
                )
            if outcome != "success":
                raise _unknown_outcome(action, status, result)
        elif isinstance(result, InstanceInfoResponse) and not result.success:
            raise OperationFailedError(
                result.data.message or f"{action} reported Success=false",
                response=result,
                http_status=status,
                api_message=result.data.message,
                request_id=result.request_id,
                action=action,
            )
        return result

    @staticmethod
    def _unparseable_success(
        action: str, status: int, body: bytes, request_id: str | None, retry_after: float | None
    ) -> DataWorksError:
        try:
            raw = json.loads(body)
        except ValueError:
            raw = None
        if isinstance(raw, dict):
            raw_request_id = raw.get("RequestId")
            request_id = raw_request_id if isinstance(raw_request_id, str) else request_id
            if raw.get("Success") is False:
                # The body is odd (e.g. Data null), but it unambiguously says the operation failed.
                return OperationFailedError(
                    f"{action} reported Success=false", http_status=status, request_id=request_id, action=action
                )
            if "Success" not in raw:
                # Some gateways answer an error document with HTTP 200.
                error = ErrorBody.parse_error(body)
                if error is not None and error.code:
                    return classify_error(status, error, retry_after=retry_after, action=action)
        return MalformedResponseError(
            f"unexpected response body: {sanitize_snippet(body)!r}",
            http_status=status,
            request_id=request_id,
            action=action,
        )
