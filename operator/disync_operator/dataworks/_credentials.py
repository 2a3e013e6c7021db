"""Credentials and providers: static AccessKey, environment variables, and RRSA (AssumeRoleWithOIDC).

Secrets (AccessKey secret, STS security token, OIDC token) are held as ``pydantic.SecretStr`` or kept local to
one function, so they never reach ``repr()``, ``str()``, log records or exception text.

Every credential value a provider hands out has passed :func:`credential_problem`: it goes into HTTP headers, and a
value HTTP refuses (a line break, a space, a non-ASCII character) makes the HTTP library raise an error that quotes
the whole header, i.e. the secret. Refused here, a value is described ("contains a line break"), never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .. import __version__
from ._errors import CredentialsError, sanitize_snippet
from ._models import ErrorBody, WireModel
from ._signing import utc_timestamp

__all__ = [
    "CREDENTIAL_MAX_LENGTH",
    "ENV_ACCESS_KEY_ID",
    "ENV_ACCESS_KEY_SECRET",
    "ENV_OIDC_PROVIDER_ARN",
    "ENV_OIDC_TOKEN_FILE",
    "ENV_ROLE_ARN",
    "ENV_ROLE_SESSION_NAME",
    "ENV_SECURITY_TOKEN",
    "ENV_STS_ENDPOINT",
    "ENV_STS_REGION",
    "ENV_VPC_ENDPOINT_ENABLED",
    "Credentials",
    "CredentialsProvider",
    "EnvironmentCredentialsProvider",
    "OIDCRoleCredentialsProvider",
    "StaticCredentialsProvider",
    "credential_problem",
    "credentials_problem",
    "default_credentials_provider",
    "resolve_sts_endpoint",
]

log = logging.getLogger(__name__)

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"
ENV_ROLE_ARN = "ALIBABA_CLOUD_ROLE_ARN"
ENV_OIDC_PROVIDER_ARN = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN"
ENV_OIDC_TOKEN_FILE = "ALIBABA_CLOUD_OIDC_TOKEN_FILE"
ENV_ROLE_SESSION_NAME = "ALIBABA_CLOUD_ROLE_SESSION_NAME"
ENV_STS_ENDPOINT = "ALIBABA_CLOUD_STS_ENDPOINT"
ENV_STS_REGION = "ALIBABA_CLOUD_STS_REGION"
ENV_VPC_ENDPOINT_ENABLED = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED"

_RRSA_VARIABLES = (ENV_ROLE_ARN, ENV_OIDC_PROVIDER_ARN, ENV_OIDC_TOKEN_FILE)


class Credentials(BaseModel):
    """An AccessKey pair, optionally temporary (STS) with a security token and an expiry."""

    model_config = ConfigDict(frozen=True)

    access_key_id: str = Field(min_length=1)
    access_key_secret: SecretStr
    security_token: SecretStr | None = None
    expiration: datetime | None = None


@runtime_checkable
class CredentialsProvider(Protocol):
    async def get_credentials(self) -> Credentials: ...


# Longest accepted value per field. AccessKey ids are ~24 characters and secrets ~30; the limits leave room for
# other formats without letting a pasted file through. STS security tokens are long (about 1-2 KB typical, more
# with a session policy), so theirs is generous; past it a header is more likely garbage than a token.
CREDENTIAL_MAX_LENGTH: Mapping[str, int] = MappingProxyType(
    {"access_key_id": 128, "access_key_secret": 256, "security_token": 16384}
)
# Printable ASCII without the space: what every AccessKey, secret and STS token is made of, and always a valid HTTP
# header value (no folding, no encoding question).
_VALID_CREDENTIAL = re.compile(r"[\x21-\x7e]+")
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def credential_problem(field: str, value: str) -> str | None:
    """None if ``value`` is usable as ``field`` ("access_key_id", "access_key_secret" or "security_token"), else what
    is wrong with it, e.g. "contains a line break".

    The description never contains the value or any part of it (nor its length), so it may go to a status, an
    Event or a log. The value is checked as given: strip surrounding whitespace first if that is wanted.
    """
    limit = CREDENTIAL_MAX_LENGTH.get(field)
    if limit is None:
        raise ValueError(f"unknown credential field {field!r}; expected one of {', '.join(CREDENTIAL_MAX_LENGTH)}")
    if not value:
        return "is empty"
    problems: list[str] = []
    if not _VALID_CREDENTIAL.fullmatch(value):
        problems.append(_content_problem(value))
    if len(value) > limit:
        problems.append(f"is longer than {limit} characters")
    return " and ".join(problems) or None


def _content_problem(value: str) -> str:
    # The most telling problem first: a line break usually means a pasted file or a stray `echo`.
    chars = set(value)
    if chars & _LINE_BREAKS:
        return "contains a line break"
    if any(char.isspace() for char in chars):
        return "contains whitespace"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in chars):
        return "contains a control character"
    return "contains a non-ASCII character"


def credentials_problem(credentials: Credentials) -> str | None:
    """The first problem of ``credentials`` as "<field> <problem>", or None if every value is usable."""
    values = [
        ("access_key_id", credentials.access_key_id),
        ("access_key_secret", credentials.access_key_secret.get_secret_value()),
    ]
    if credentials.security_token is not None:
        values.append(("security_token", credentials.security_token.get_secret_value()))
    for field, value in values:
        problem = credential_problem(field, value)
        if problem is not None:
            return f"{field} {problem}"
    return None


def _secret(value: str | SecretStr) -> SecretStr:
    return value if isinstance(value, SecretStr) else SecretStr(value)


class StaticCredentialsProvider:
    """Fixed credentials, e.g. read by the operator from a Secret in the custom resource's namespace."""

    def __init__(
        self,
        access_key_id: str,
        access_key_secret: str | SecretStr,
        security_token: str | SecretStr | None = None,
    ) -> None:
        # Surrounding whitespace goes (a value read from a file or an `echo` ends in a line break); inside, none may be.
        key_id = access_key_id.strip()
        secret = _secret(access_key_secret).get_secret_value().strip()
        token = None if security_token is None else _secret(security_token).get_secret_value().strip()
        for field, value in (("access_key_id", key_id), ("access_key_secret", secret)):
            problem = credential_problem(field, value)
            if problem is not None:
                raise CredentialsError(f"static credentials: {field} {problem}")
        if token:
            problem = credential_problem("security_token", token)
            if problem is not None:
                raise CredentialsError(f"static credentials: security_token {problem}")
        self._credentials = Credentials(
            access_key_id=key_id,
            access_key_secret=SecretStr(secret),
            security_token=SecretStr(token) if token else None,
        )

    async def get_credentials(self) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticCredentialsProvider(access_key_id={self._credentials.access_key_id!r}, sts={self._sts})"

    @property
    def _sts(self) -> bool:
        return self._credentials.security_token is not None


class EnvironmentCredentialsProvider:
    """``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``_SECRET`` (/ ``_SECURITY_TOKEN``), read at every call so a rotated
    environment (or a test's mapping) is honoured."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ

    async def get_credentials(self) -> Credentials:
        key_id = self._environ.get(ENV_ACCESS_KEY_ID, "").strip()
        secret = self._environ.get(ENV_ACCESS_KEY_SECRET, "").strip()
        token = self._environ.get(ENV_SECURITY_TOKEN, "").strip()
        if not key_id or not secret:
            pairs = ((ENV_ACCESS_KEY_ID, key_id), (ENV_ACCESS_KEY_SECRET, secret))
            missing = [name for name, value in pairs if not value]
            raise CredentialsError(f"environment credentials incomplete: set {' and '.join(missing)}")
        checks = [("access_key_id", ENV_ACCESS_KEY_ID, key_id), ("access_key_secret", ENV_ACCESS_KEY_SECRET, secret)]
        if token:
            checks.append(("security_token", ENV_SECURITY_TOKEN, token))
        for field, variable, value in checks:
            problem = credential_problem(field, value)
            if problem is not None:
                raise CredentialsError(f"environment credentials: {variable} {problem}")
        return Credentials(
            access_key_id=key_id,
            access_key_secret=SecretStr(secret),
            security_token=SecretStr(token) if token else None,
        )

    def __repr__(self) -> str:
        return "EnvironmentCredentialsProvider()"


class _UnavailableCredentialsProvider:
    """Returned by :func:`default_credentials_provider` when nothing is configured: fails on use, not at
    start-up, so that an operator using only per-resource Secrets still starts."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def get_credentials(self) -> Credentials:
        raise CredentialsError(self._reason)

    def __repr__(self) -> str:
        return "UnavailableCredentialsProvider()"


# ------------------------------------------------------------------------------------------------------ RRSA


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def resolve_sts_endpoint(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """explicit > $ALIBABA_CLOUD_STS_ENDPOINT > sts[-vpc].$ALIBABA_CLOUD_STS_REGION.aliyuncs.com > sts.aliyuncs.com."""
    env = os.environ if environ is None else environ
    value = (explicit or "").strip() or env.get(ENV_STS_ENDPOINT, "").strip()
    if not value:
        region = env.get(ENV_STS_REGION, "").strip()
        if region:
            prefix = "sts-vpc" if _truthy(env.get(ENV_VPC_ENDPOINT_ENABLED)) else "sts"
            value = f"{prefix}.{region}.aliyuncs.com"
        else:
            value = "sts.aliyuncs.com"
    value = value.rstrip("/")
    return value if "://" in value else f"https://{value}"


class _STSCredentials(WireModel):
    access_key_id: str = Field(min_length=1)
    access_key_secret: SecretStr
    security_token: SecretStr
    expiration: datetime


class _STSResponse(WireModel):
    request_id: str | None = None
    credentials: _STSCredentials


class _Cached(BaseModel):
    model_config = ConfigDict(frozen=True)

    credentials: Credentials
    obtained_at: datetime
    stale_at: datetime
    expires_at: datetime


def _utcnow() -> datetime:
    return datetime.now(UTC)


class OIDCRoleCredentialsProvider:
    """RRSA: exchange the pod's projected ServiceAccount token for STS credentials (AssumeRoleWithOIDC).

    * The token file is re-read on every refresh (kubelet rotates it) and off the event loop.
    * Credentials are cached and refreshed ``refresh_margin`` seconds before expiry, or when less than a quarter
      of their lifetime remains if that comes later (so short sessions are not refreshed on every call).
    * One refresh at a time (asyncio.Lock); concurrent callers wait for it and share the result.
    * If a refresh fails while the cached credentials are still valid, those are returned (and the failure
      logged) so a short STS outage does not fail reconciliations; refreshing is retried after a short pause.
    * The call is anonymous (the OIDC token is the proof) and is sent as POST with the token and ARNs in the form
      body, as the Go credentials SDK does, so the token never appears in a URL or an httpx request log line.
    """

    STS_VERSION = "2015-04-01"
    _FAILED_REFRESH_PAUSE = timedelta(seconds=10)

    def __init__(
        self,
        role_arn: str,
        oidc_provider_arn: str,
        oidc_token_file: str | os.PathLike[str],
        *,
        role_session_name: str | None = None,
        sts_endpoint: str | None = None,
        duration_seconds: int = 3600,
        transport: httpx.AsyncBaseTransport | None = None,
        refresh_margin: float = 900.0,
        connect_timeout: float = 5.0,
        read_timeout: float = 10.0,
        policy: str | None = None,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not role_arn or not oidc_provider_arn or not str(oidc_token_file):
            raise CredentialsError("RRSA needs a role ARN, an OIDC provider ARN and an OIDC token file")
        if duration_seconds < 900:
            raise ValueError("duration_seconds must be at least 900 (STS minimum)")
        if refresh_margin < 0:
            raise ValueError("refresh_margin must not be negative")
        self.role_arn = role_arn
        self.oidc_provider_arn = oidc_provider_arn
        self.oidc_token_file = os.fspath(oidc_token_file)
        self.role_session_name = role_session_name or "disync-operator"
        self.sts_endpoint = resolve_sts_endpoint(sts_endpoint, environ)
        self.duration_seconds = duration_seconds
        self._policy = policy
        self._transport = transport
        self._refresh_margin = timedelta(seconds=refresh_margin)
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._clock = clock
        self._lock = asyncio.Lock()
        self._cached: _Cached | None = None
        self._no_refresh_before: datetime | None = None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, **kwargs: object
    ) -> OIDCRoleCredentialsProvider:
        """Build from the variables the ACK pod-identity webhook injects; CredentialsError if any is missing."""
        env = os.environ if environ is None else environ
        values = {name: env.get(name, "").strip() for name in _RRSA_VARIABLES}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise CredentialsError(f"RRSA credentials not configured: set {', '.join(missing)}")
        session = env.get(ENV_ROLE_SESSION_NAME, "").strip() or None
        return cls(
            values[ENV_ROLE_ARN],
            values[ENV_OIDC_PROVIDER_ARN],
            values[ENV_OIDC_TOKEN_FILE],
            role_session_name=session,
            environ=env,
            **kwargs,  # type: ignore[arg-type]
        )

    def __repr__(self) -> str:
        return (
            f"OIDCRoleCredentialsProvider(role_arn={self.role_arn!r}, oidc_provider_arn={self.oidc_provider_arn!r}, "
            f"oidc_token_file={self.oidc_token_file!r}, sts_endpoint={self.sts_endpoint!r})"
        )

    # ------------------------------------------------------------------------------------------- caching

    def _fresh(self, cached: _Cached | None, now: datetime) -> bool:
        return cached is not None and now < cached.stale_at

    async def get_credentials(self) -> Credentials:
        cached = self._cached
        if cached is not None and self._fresh(cached, self._clock()):
            return cached.credentials
        async with self._lock:
            # Another task may have refreshed while we waited for the lock.
            cached = self._cached
            now = self._clock()
            if cached is not None and self._fresh(cached, now):
                return cached.credentials
            usable = cached is not None and now < cached.expires_at
            if cached is not None and usable and self._no_refresh_before and now < self._no_refresh_before:
                return cached.credentials
            try:
                fresh = await self._assume_role()
            except CredentialsError as exc:
                if cached is not None and usable:
                    self._no_refresh_before = now + self._FAILED_REFRESH_PAUSE
                    log.warning("STS credential refresh failed, using cached credentials until expiry: %s", exc)
                    return cached.credentials
                raise
            self._cached = fresh
            self._no_refresh_before = None
            return fresh.credentials

    def _cache_entry(self, credentials: Credentials, obtained_at: datetime, expires_at: datetime) -> _Cached:
        lifetime = max(expires_at - obtained_at, timedelta(0))
        margin = min(self._refresh_margin, lifetime / 4)
        return _Cached(
            credentials=credentials, obtained_at=obtained_at, stale_at=expires_at - margin, expires_at=expires_at
        )

    # ------------------------------------------------------------------------------------------- STS call

    def _read_token(self) -> str:
        try:
            with open(self.oidc_token_file, encoding="utf-8") as handle:
                # A JWT has no whitespace; strip the newline a hand-written file may end with.
                token = handle.read().strip()
        except OSError as exc:
            raise CredentialsError(
                f"cannot read OIDC token file {self.oidc_token_file!r}: {exc.strerror or type(exc).__name__}"
            ) from None
        if not token:
            raise CredentialsError(f"OIDC token file {self.oidc_token_file!r} is empty")
        return token

    async def _assume_role(self) -> _Cached:
        token = await asyncio.to_thread(self._read_token)
        query = {
            "Action": "AssumeRoleWithOIDC",
            "Format": "JSON",
            "Version": self.STS_VERSION,
            "Timestamp": utc_timestamp(),
        }
        form = {
            "RoleArn": self.role_arn,
            "OIDCProviderArn": self.oidc_provider_arn,
            "OIDCToken": token,
            "RoleSessionName": self.role_session_name,
            "DurationSeconds": str(self.duration_seconds),
        }
        if self._policy:
            form["Policy"] = self._policy
        obtained_at = self._clock()
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._transport is None:
                    client = await stack.enter_async_context(httpx.AsyncClient(timeout=self._timeout))
                else:
                    # The caller owns an injected transport; closing our client would close it too.
                    client = httpx.AsyncClient(transport=self._transport, timeout=self._timeout)
                response = await client.post(
                    f"{self.sts_endpoint}/",
                    params=query,
                    data=form,
                    headers={"accept": "application/json", "user-agent": _user_agent()},
                )
        except httpx.HTTPError as exc:
            raise CredentialsError(
                f"AssumeRoleWithOIDC: cannot reach STS at {self.sts_endpoint}: {type(exc).__name__}",
                retryable=True,
            ) from None
        return self._parse(response, token, obtained_at)

    def _parse(self, response: httpx.Response, token: str, obtained_at: datetime) -> _Cached:
        status = response.status_code
        body = response.content
        if status != 200:
            error = ErrorBody.parse_error(body)
            transient = status >= 500 or status == 429
            if error is None:
                snippet = _redact(sanitize_snippet(body), token)
                raise CredentialsError(
                    f"AssumeRoleWithOIDC failed with a non-JSON response: {snippet!r}",
                    http_status=status,
                    retryable=transient,
                )
            code = error.code or ""
            message = _redact(error.message or "no error message", token)
            raise CredentialsError(
                f"AssumeRoleWithOIDC failed: {message}",
                http_status=status,
                code=error.code,
                api_message=message,
                request_id=error.request_id,
                recommend=error.recommend,
                retryable=transient or code.startswith(("Throttling", "InternalError", "ServiceUnavailable")),
            )
        try:
            parsed: _STSResponse | None = _STSResponse.model_validate_json(body)
        except ValidationError:
            parsed = None
        if parsed is None:
            # Never include the body: a half-valid success response carries the secret and token. Raised outside the
            # handler so that the ValidationError, which quotes the input, is not kept as __context__ either.
            raise CredentialsError(
                f"AssumeRoleWithOIDC returned HTTP 200 without well-formed Credentials ({len(body)} bytes)",
                http_status=status,
                retryable=True,
            )
        sts = parsed.credentials
        expires_at = sts.expiration if sts.expiration.tzinfo else sts.expiration.replace(tzinfo=UTC)
        credentials = Credentials(
            access_key_id=sts.access_key_id,
            access_key_secret=sts.access_key_secret,
            security_token=sts.security_token,
            expiration=expires_at,
        )
        problem = credentials_problem(credentials)
        if problem is not None:
            raise CredentialsError(
                f"AssumeRoleWithOIDC returned unusable credentials: {problem}", http_status=status, retryable=True
            )
        log.debug(
            "obtained STS credentials for %s (RequestId %s), expiring %s",
            self.role_arn,
            parsed.request_id,
            expires_at.isoformat(),
        )
        return self._cache_entry(credentials, obtained_at, expires_at)


def _redact(text: str, token: str) -> str:
    # STS echoes parts of rejected requests in some messages; make sure the OIDC token is never among them.
    return text.replace(token, "<redacted>") if token else text


def _user_agent() -> str:
    return f"disync-operator/{__version__}"


def default_credentials_provider(environ: Mapping[str, str] | None = None) -> CredentialsProvider:
    """AccessKey from the environment if set, else RRSA if fully configured, else a provider that explains
    what to configure when it is used."""
    env = os.environ if environ is None else environ
    if env.get(ENV_ACCESS_KEY_ID, "").strip() and env.get(ENV_ACCESS_KEY_SECRET, "").strip():
        return EnvironmentCredentialsProvider(env)
    rrsa_set = [name for name in _RRSA_VARIABLES if env.get(name, "").strip()]
    if len(rrsa_set) == len(_RRSA_VARIABLES):
        return OIDCRoleCredentialsProvider.from_environment(env)
    hint = (
        f"no default Alibaba Cloud credentials: set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} "
        f"(optionally {ENV_SECURITY_TOKEN}), or enable RRSA so that {', '.join(_RRSA_VARIABLES)} are set"
    )
    if rrsa_set:
        missing = [name for name in _RRSA_VARIABLES if name not in rrsa_set]
        hint += f" (RRSA is partially configured; missing {', '.join(missing)})"
    return _UnavailableCredentialsProvider(hint)
