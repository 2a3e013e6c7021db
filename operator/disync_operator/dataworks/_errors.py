"""One exception hierarchy for everything the DataWorks client can raise.

The client makes exactly one attempt per call and leaves retry policy to the operator, so the important output
of this module is *classification*: every error says whether a later attempt could succeed (``retryable``) and,
when the server said so, how long to wait (``retry_after``, always in seconds).

No exception text ever contains a credential: messages are built only from HTTP status, API code/message,
request id and short, sanitised body snippets of DataWorks responses (which never echo credentials).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import ActionResponse, ErrorBody, InstanceInfoResponse

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "ClockSkewError",
    "CredentialsError",
    "DataWorksError",
    "InvalidParameterError",
    "MalformedResponseError",
    "NonceReusedError",
    "OperationFailedError",
    "RetryableError",
    "ServerError",
    "TerminalError",
    "ThrottlingError",
    "TransportError",
    "UnknownOutcomeError",
    "classify_error",
    "sanitize_snippet",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _one_line(text: str) -> str:
    # Error strings end up in CR status conditions and log lines; keep them on one line.
    return " ".join(_CONTROL.sub(" ", text).split())


def sanitize_snippet(body: bytes, limit: int = 120) -> str:
    """A short, printable, one-line excerpt of a response body for diagnostics."""
    text = _one_line(body[: limit * 4].decode("utf-8", errors="replace"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DataWorksError(Exception):
    """Base class. ``retryable`` is authoritative; the subclass tree mirrors it for ``except`` clauses."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        code: str | None = None,
        api_message: str | None = None,
        request_id: str | None = None,
        recommend: str | None = None,
        host_id: str | None = None,
        retry_after: float | None = None,
        action: str | None = None,
        retryable: bool | None = None,
        access_denied_detail: Any = None,
    ) -> None:
        self.message = _one_line(message)
        self.http_status = http_status
        self.code = code
        self.api_message = api_message
        self.request_id = request_id
        self.recommend = recommend
        self.host_id = host_id
        self.retry_after = retry_after
        self.action = action
        self.access_denied_detail = access_denied_detail
        if retryable is not None:
            # Instance-level override, e.g. a CredentialsError caused by an STS outage is worth retrying.
            self.retryable = retryable
        super().__init__(self.message)

    def __str__(self) -> str:
        parts: list[str] = []
        if self.action:
            parts.append(f"{self.action}:")
        if self.http_status is not None:
            parts.append(f"HTTP {self.http_status}")
        if self.code:
            parts.append(self.code)
        head = " ".join(parts)
        text = f"{head} - {self.message}" if head else self.message
        if self.request_id:
            text += f" (RequestId: {self.request_id})"
        if self.retry_after is not None:
            text += f" (retry after {self.retry_after:g}s)"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(http_status={self.http_status!r}, code={self.code!r}, "
            f"request_id={self.request_id!r}, retryable={self.retryable!r}, message={self.message!r})"
        )


class RetryableError(DataWorksError):
    """A later attempt (with a fresh signature) may succeed."""

    retryable = True


class ServerError(RetryableError):
    """5xx, ``InternalError*`` or ``ServiceUnavailable``."""


class ThrottlingError(RetryableError):
    """HTTP 429 or a ``Throttling*`` code; honour ``retry_after`` when set."""


class TransportError(RetryableError):
    """Timeouts, refused or reset connections, protocol errors: no usable HTTP response.

    ``code`` is the httpx exception class name (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``...), or
    ``CallTimeout`` when the whole exchange outlasted ``ClientOptions.effective_call_timeout``.

    ``request_may_have_been_sent`` is False only when the failure happened before any byte left (connect and
    pool errors); after a read timeout the server may have acted on the request.
    """

    def __init__(self, message: str, *, request_may_have_been_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_may_have_been_sent = request_may_have_been_sent


class MalformedResponseError(RetryableError):
    """The response is not a well-formed API response (HTML from a proxy, truncated or mistyped JSON), or it is
    longer than ``ClientOptions.max_response_bytes`` (``code`` ``"ResponseTooLarge"``; the body is left unread)."""


class UnknownOutcomeError(RetryableError):
    """HTTP 200 and ``Success=true``, but an action's ``Data.Status`` is neither ``success`` nor ``fail`` (e.g.
    ``RUNNING`` or empty): whether the action took effect is unknown. ``code`` is ``"UnknownOutcome"``.

    Retryable, and not a throttling error, so a caller treats the action as one that may have happened and checks
    the instance's state (GetDISyncInstanceInfo) before starting again. ``response`` is the parsed answer.
    """

    def __init__(self, message: str, *, response: ActionResponse | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.response = response


class ClockSkewError(RetryableError):
    """``InvalidTimeStamp.*``: the server rejected x-acs-date. Retrying only helps once the local clock is fixed."""


class NonceReusedError(RetryableError):
    """``SignatureNonceUsed``: retryable because every attempt is signed with a fresh nonce."""


class TerminalError(DataWorksError):
    """Retrying the same request will not help."""

    retryable = False


class InvalidParameterError(TerminalError):
    """``Param.Invalid``, ``Invalid*``, ``Missing*``."""


class AccessDeniedError(TerminalError):
    """``Forbidden*``, ``ResourceNotAuthorized*``: the RAM identity lacks permission."""


class AuthenticationError(TerminalError):
    """``SignatureDoesNotMatch``, ``IncompleteSignature``, ``InvalidAccessKeyId*``: wrong or disabled keys."""


class CredentialsError(TerminalError):
    """No usable credentials (missing configuration, STS refusal). Transient STS failures set ``retryable``."""


class OperationFailedError(TerminalError):
    """HTTP 200 but the operation reported failure (``Success=false`` or ``Data.Status == "fail"``)."""

    def __init__(
        self,
        message: str,
        *,
        response: ActionResponse | InstanceInfoResponse | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)
        self.response = response


def _error_class(http_status: int, code: str | None) -> type[DataWorksError]:
    # Order matters: specific codes beat generic status ranges (Forbidden.Not.Server comes with HTTP 500 but
    # means "DataWorks API not offered in this region", which no retry fixes).
    if http_status == 429:
        return ThrottlingError
    if code:
        if code.startswith("Throttling"):
            return ThrottlingError
        if code == "SignatureNonceUsed":
            return NonceReusedError
        if code.startswith("InvalidTimeStamp"):
            return ClockSkewError
        if code in ("SignatureDoesNotMatch", "IncompleteSignature") or code.startswith("InvalidAccessKeyId"):
            return AuthenticationError
        if code.startswith(("Forbidden", "ResourceNotAuthorized")):
            return AccessDeniedError
        if code.startswith(("InternalError", "ServiceUnavailable")):
            return ServerError
        if code == "Param.Invalid" or code.startswith(("Invalid", "Missing")):
            return InvalidParameterError
    if http_status >= 500:
        return ServerError
    return TerminalError


def classify_error(
    http_status: int,
    body: ErrorBody | None,
    *,
    retry_after: float | None,
    action: str | None,
    request_id: str | None = None,
    snippet: str | None = None,
) -> DataWorksError:
    """Build the exception for a non-2xx response. ``body`` is None when it was not a JSON error document."""
    if body is None:
        if http_status == 429:
            return ThrottlingError(
                f"throttled; non-JSON body: {snippet!r}" if snippet else "throttled",
                http_status=http_status,
                retry_after=retry_after,
                action=action,
                request_id=request_id,
            )
        return MalformedResponseError(
            f"error response is not a JSON error document: {snippet!r}",
            http_status=http_status,
            retry_after=retry_after,
            action=action,
            request_id=request_id,
        )
    cls = _error_class(http_status, body.code)
    api_message = body.message
    message = api_message or "no error message"
    if cls is ClockSkewError:
        message = f"{message} - the local clock is probably wrong (x-acs-date must be within 15 minutes of server time)"
    return cls(
        message,
        http_status=http_status,
        code=body.code,
        api_message=api_message,
        request_id=body.request_id or request_id,
        recommend=body.recommend,
        host_id=body.host_id,
        retry_after=retry_after,
        action=action,
        access_denied_detail=body.access_denied_detail,
    )


class CallOutcome(StrEnum):
    """How one call ended, for metrics: a small fixed set (the README lists it) rather than exception class names,
    so renaming a class can't break a dashboard or an alert."""

    SUCCESS = "success"
    THROTTLED = "throttled"  # ThrottlingError: HTTP 429 or a Throttling* code
    SERVER_ERROR = "server_error"  # ServerError: 5xx, InternalError*, ServiceUnavailable
    TIMEOUT = "timeout"  # TransportError from a timeout (connect, read, pool, or the whole call's deadline)
    NETWORK_ERROR = "network_error"  # TransportError otherwise: refused, reset, protocol errors
    BAD_RESPONSE = "bad_response"  # MalformedResponseError: not an API response, or larger than allowed
    UNKNOWN_OUTCOME = "unknown_outcome"  # UnknownOutcomeError: success, but Data.Status is neither success nor fail
    CLOCK_SKEW = "clock_skew"  # ClockSkewError: the server rejected our clock
    REJECTED = "rejected"  # InvalidParameterError, NonceReusedError: the request was refused as written
    ACCESS_DENIED = "access_denied"  # AccessDeniedError: the RAM identity lacks permission
    AUTH_FAILED = "auth_failed"  # AuthenticationError: wrong or disabled keys
    CREDENTIALS = "credentials"  # CredentialsError: no usable credentials (before or instead of the call)
    FAILED = "failed"  # OperationFailedError: HTTP 200, but the operation reported failure
    CANCELLED = "cancelled"  # the caller gave up (shutdown)
    OTHER = "other"  # anything else: a bug


_OUTCOMES: tuple[tuple[type[BaseException], CallOutcome], ...] = (
    (ThrottlingError, CallOutcome.THROTTLED),
    (ServerError, CallOutcome.SERVER_ERROR),
    (MalformedResponseError, CallOutcome.BAD_RESPONSE),
    (UnknownOutcomeError, CallOutcome.UNKNOWN_OUTCOME),
    (ClockSkewError, CallOutcome.CLOCK_SKEW),
    (InvalidParameterError, CallOutcome.REJECTED),
    (NonceReusedError, CallOutcome.REJECTED),
    (AccessDeniedError, CallOutcome.ACCESS_DENIED),
    (AuthenticationError, CallOutcome.AUTH_FAILED),
    (CredentialsError, CallOutcome.CREDENTIALS),
    (OperationFailedError, CallOutcome.FAILED),
)


def call_outcome(error: BaseException) -> CallOutcome:
    """The outcome label of a call that raised `error`."""
    if isinstance(error, TransportError):
        return CallOutcome.TIMEOUT if "Timeout" in (error.code or "") else CallOutcome.NETWORK_ERROR
    return next((outcome for cls, outcome in _OUTCOMES if isinstance(error, cls)), CallOutcome.OTHER)
