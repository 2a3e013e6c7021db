"""Credentials and providers: static AccessKey, environment variables, and RRSA (AssumeRoleWithOIDC).

Secrets (AccessKey secret, STS security token, OIDC token) are held as ``pydantic.SecretStr`` or kept local to
one function, so they never reach ``repr()``, ``str()``, log records or exception text.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from .. import __version__
from ._errors import CredentialsError, sanitize_snippet
from ._models import ErrorBody, WireModel
from ._signing import utc_timestamp

__all__ = [
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
        secret = _secret(access_key_secret)
        token = None if security_token is None else _secret(security_token)
        if not access_key_id.strip() or not secret.get_secret_value().strip():
            raise CredentialsError("AccessKey id and secret must both be non-empty")
        if token is not None and not token.get_secret_value().strip():
            token = None
        self._credentials = Credentials(
            access_key_id=access_key_id.strip(),
            access_key_secret=SecretStr(secret.get_secret_value().strip()),
            security_token=token,
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
            parsed = _STSResponse.model_validate_json(body)
        except ValidationError:
            # Never include the body: a half-valid success response carries the secret and token.
            raise CredentialsError(
                f"AssumeRoleWithOIDC returned HTTP 200 without well-formed Credentials ({len(body)} bytes)",
                http_status=status,
                retryable=True,
            ) from None
        sts = parsed.credentials
        expires_at = sts.expiration if sts.expiration.tzinfo else sts.expiration.replace(tzinfo=UTC)
        credentials = Credentials(
            access_key_id=sts.access_key_id,
            access_key_secret=sts.access_key_secret,
            security_token=sts.security_token,
            expiration=expires_at,
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
