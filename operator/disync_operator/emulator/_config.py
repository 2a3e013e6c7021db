"""Pydantic models of the emulator's YAML configuration.

Every model forbids unknown keys: a misspelt fault or timing would otherwise be silently ignored and a test would
pass for the wrong reason.
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

TaskType = Literal["DI_REALTIME", "DI_SOLUTION"]
TASK_TYPES: tuple[str, ...] = ("DI_REALTIME", "DI_SOLUTION")

ACTIONS: tuple[str, ...] = (
    "StartDISyncInstance",
    "StopDISyncInstance",
    "GetDISyncInstanceInfo",
    "TerminateDISyncInstance",
)
API_VERSION = "2020-05-18"

_DEMO_RESOURCE = "demo-emulator.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AccessKeyConfig(_Strict):
    """One AccessKey the emulator accepts; with ``security_token`` it behaves as an STS credential."""

    id: str = Field(min_length=1)
    # SecretStr keeps the secret out of reprs, validation errors and anything we might log.
    secret: SecretStr
    security_token: SecretStr | None = None
    # When set, requests signed with this key after that instant fail with InvalidSecurityToken.Expired,
    # so credential-refresh paths can be exercised.
    security_token_expiration: dt.datetime | None = None
    projects: list[int] | Literal["*"] = "*"

    @field_validator("secret")
    @classmethod
    def _secret_not_empty(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value():
            raise ValueError("secret must not be empty")
        return value

    @field_validator("security_token_expiration")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        # A naive datetime would compare differently depending on the host's zone; the cloud's Expiration is UTC.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    def may_access(self, project_id: int) -> bool:
        return self.projects == "*" or project_id in self.projects


class TaskConfig(_Strict):
    file_id: int = Field(gt=0)
    task_type: TaskType
    name: str = Field(min_length=1)


class ProjectConfig(_Strict):
    id: int = Field(gt=0)
    tasks: list[TaskConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_files(self) -> ProjectConfig:
        seen: set[int] = set()
        for task in self.tasks:
            if task.file_id in seen:
                raise ValueError(f"project {self.id}: duplicate file_id {task.file_id}")
            seen.add(task.file_id)
        return self


class TimingsConfig(_Strict):
    """How long the transient states last; the state machine derives them lazily from timestamps."""

    start_wait_seconds: float = Field(default=0.2, ge=0)
    stop_seconds: float = Field(default=0.1, ge=0)
    stop_state: Literal["PAUSE", "NORUN"] = "PAUSE"


class ConsoleFailure(_Strict):
    """``POST /_emulator/console/{project}/{file}/fail``: the real-time task fails, as a task does when its source
    goes away. A task running now fails at once; each of the next ``times`` starts (``null``: every start from now
    on) runs ``run_seconds`` after its WAIT, then fails. ``times: 0`` heals it."""

    times: int | None = Field(default=None, ge=0, le=1_000_000)
    run_seconds: float = Field(default=0, ge=0, le=3600)
    state: Literal["PAUSE", "NORUN"] = "NORUN"


class FaultConfig(_Strict):
    """Injected misbehaviour. The five ``*_rate`` faults are mutually exclusive per request (one RNG draw picks at
    most one), so their sum must not exceed 1. The hostile-answer options below them shape the answers that get
    no such fault (and the error documents), and combine with each other."""

    seed: int = 0
    # Only requests whose action is listed are affected; None means every action.
    actions: list[str] | None = None
    latency_ms: float = Field(default=0, ge=0, le=600_000)
    jitter_ms: float = Field(default=0, ge=0, le=600_000)
    # The cloud's own time to act on a request that reached it: the action takes effect this long after it
    # arrived, whether or not its client still waits (a client that goes away does not undo it), then it answers.
    execution_ms: float = Field(default=0, ge=0, le=600_000)
    error_rate: float = Field(default=0, ge=0, le=1)
    malformed_rate: float = Field(default=0, ge=0, le=1)
    truncated_rate: float = Field(default=0, ge=0, le=1)
    hang_rate: float = Field(default=0, ge=0, le=1)
    reset_rate: float = Field(default=0, ge=0, le=1)
    # Bounded so a forgotten hang cannot pin a connection (and a test) forever.
    hang_seconds: float = Field(default=30, ge=0, le=300)
    throttle_qps: float | None = Field(default=None, gt=0)
    throttle_burst: float | None = Field(default=None, ge=1)
    drop_start_response: int = Field(default=0, ge=0)

    # Hostile answers (see _hostile.py). Deterministic: no RNG draw, every answer to a matching action gets them.
    # Text fields of N characters: Data.Message and RequestId of 200 answers, Message and RequestId of error
    # documents, and the x-acs-request-id header (at most long_header_max characters: HTTP clients refuse
    # response heads beyond a limit, httpcore's is 100 KiB, and that would be a different fault).
    long_fields: int = Field(default=0, ge=0, le=1_000_000)
    # ANSI escape sequences and control characters (ESC, BEL, NUL, CR, DEL, C1 CSI) throughout those fields; the
    # header only gets what a header can carry (the 8-bit C1 CSI, obs-text).
    long_fields_dirty: bool = False
    long_header_max: int = Field(default=8192, ge=1, le=65_536)
    # Start/Stop/Terminate answers that would say "success" say this Data.Status instead; the action is performed.
    data_status: str | None = Field(default=None, max_length=4096)
    # A performed action's 200 answer padded with JSON whitespace to this many bytes, streamed (never held).
    big_body_bytes: int = Field(default=0, ge=0, le=16 * 2**30)
    # A performed action's 200 answer sent with Content-Encoding: gzip, inflating to this many bytes (the answer
    # and whitespace): about 1 KiB on the wire per MiB inflated, streamed from a precomputed block.
    gzip_bomb_bytes: int = Field(default=0, ge=0, le=64 * 2**30)
    # Send Content-Length for those two (default: chunked transfer encoding, so the reader must count).
    declare_length: bool = False
    # A performed action's 200 answer: head at once, then the body one byte at a time with this pause between
    # bytes; cut (connection reset) after trickle_max_seconds at most.
    trickle_seconds_per_byte: float = Field(default=0, ge=0, le=10)
    trickle_max_seconds: float = Field(default=60, gt=0, le=300)

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            unknown = sorted(set(value) - set(ACTIONS))
            if unknown:
                raise ValueError(f"unknown action(s) {unknown}; known: {list(ACTIONS)}")
        return value

    @model_validator(mode="after")
    def _rates_exclusive(self) -> FaultConfig:
        total = self.error_rate + self.malformed_rate + self.truncated_rate + self.hang_rate + self.reset_rate
        if total > 1 + 1e-9:
            raise ValueError(f"error/malformed/truncated/hang/reset rates sum to {total:g}; they must sum to <= 1")
        return self

    @model_validator(mode="after")
    def _one_body_size(self) -> FaultConfig:
        if self.big_body_bytes and self.gzip_bomb_bytes:
            raise ValueError("big_body_bytes and gzip_bomb_bytes are exclusive: set at most one")
        return self

    def applies_to(self, action: str) -> bool:
        return self.actions is None or action in self.actions


class OidcRoleConfig(_Strict):
    """A RAM role that trusts an OIDC provider: AssumeRoleWithOIDC hands out the credentials of `access_key_id`
    (one of `access_keys`, with a security token)."""

    role_arn: str = Field(min_length=1)
    oidc_provider_arn: str = Field(min_length=1)
    access_key_id: str = Field(min_length=1)


class StsConfig(_Strict):
    """The emulator's STS (RRSA): the OIDC provider it trusts, by issuer and JSON Web Key Set (a Kubernetes API
    server's /.well-known/openid-configuration issuer and /openid/v1/jwks), and the roles that trust it."""

    issuer: str = Field(min_length=1)
    audience: str = "sts.aliyuncs.com"
    jwks: dict[str, Any]
    roles: list[OidcRoleConfig] = Field(min_length=1)


class EmulatorConfig(_Strict):
    access_keys: list[AccessKeyConfig] = Field(min_length=1)
    projects: list[ProjectConfig] = Field(default_factory=list)
    timings: TimingsConfig = Field(default_factory=TimingsConfig)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    # Both caches are bounded so a long benchmark cannot grow the emulator without limit.
    request_log_size: int = Field(default=100_000, ge=1)
    nonce_cache_size: int = Field(default=100_000, ge=1)
    # Allowed |x-acs-date - now|; the cloud allows 15 minutes.
    timestamp_tolerance_seconds: float = Field(default=900, gt=0)
    # STS AssumeRoleWithOIDC for RRSA (None: the emulator answers no STS call).
    sts: StsConfig | None = None

    @model_validator(mode="after")
    def _consistent(self) -> EmulatorConfig:
        ids = [key.id for key in self.access_keys]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate access key id")
        project_ids = [project.id for project in self.projects]
        if len(project_ids) != len(set(project_ids)):
            raise ValueError("duplicate project id")
        if self.sts is not None:
            by_id = {key.id: key for key in self.access_keys}
            for role in self.sts.roles:
                key = by_id.get(role.access_key_id)
                if key is None or key.security_token is None:
                    raise ValueError(f"sts role {role.role_arn}: {role.access_key_id} is not an STS access key")
        known = set(project_ids)
        for key in self.access_keys:
            if key.projects != "*":
                missing = sorted(set(key.projects) - known)
                if missing:
                    # Catch typos: a key granted a non-existent project is almost certainly a config mistake.
                    raise ValueError(f"access key {key.id}: unknown project(s) {missing}")
        return self

    @classmethod
    def from_mapping(cls, data: Any) -> EmulatorConfig:
        return cls.model_validate(data if data is not None else {})

    @classmethod
    def from_yaml_text(cls, text: str) -> EmulatorConfig:
        return cls.from_mapping(yaml.safe_load(text))

    @classmethod
    def from_yaml(cls, path: str | Path) -> EmulatorConfig:
        return cls.from_yaml_text(Path(path).read_text(encoding="utf-8"))


def demo_config_text() -> str:
    return resources.files("disync_operator.emulator").joinpath(_DEMO_RESOURCE).read_text(encoding="utf-8")


def demo_config() -> EmulatorConfig:
    """The demo registry shipped as package data (one AccessKey, project 10000, tasks 100/101/200)."""
    return EmulatorConfig.from_yaml_text(demo_config_text())
