"""Fault decisions: which misbehaviour (if any) a request gets.

Kept apart from the HTTP layer so the decisions are unit-testable with a fake clock, and reproducible: the RNG is
seeded from ``FaultConfig.seed`` and re-seeded whenever the fault config is replaced, and each matching request
consumes exactly one draw for the exclusive rate faults and one for the jitter.

Where faults apply:

* ``latency_ms``/``jitter_ms``: before authentication (it models the network), for matching actions;
* ``execution_ms``: the action takes effect this long after it arrived, even if its client has gone meanwhile;
* everything else only after a request authenticated, so auth tests are never disturbed by faults;
* ``throttle_qps``: token bucket (capacity ``throttle_burst``, default max(1, qps)); an empty bucket answers
  429 ``Throttling.User`` with ``x-acs-retry-after`` (milliseconds until the next token);
* ``drop_start_response``: the next N StartDISyncInstance calls are performed, then the connection is reset;
* rates (one draw, at most one fires): ``error_rate`` 500 InternalError.System (not performed),
  ``malformed_rate`` 502 HTML (not performed), ``truncated_rate`` 200 with the JSON cut short (performed),
  ``hang_rate`` no answer for ``hang_seconds`` then reset (not performed), ``reset_rate`` reset (not performed);
* hostile answers (no draw: every matching request, see :class:`Hostile`), on top of the above: ``long_fields``
  shapes every answer with a document (200s and error documents, not the 502 HTML); ``data_status`` a performed
  Start/Stop/Terminate's success; ``big_body_bytes``, ``gzip_bomb_bytes`` and ``trickle_seconds_per_byte`` the
  200 answer of a performed action (not a truncated one, whose body is cut short already).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from disync_operator.emulator._config import FaultConfig

FaultKind = Literal["error", "malformed", "truncated", "hang", "reset", "drop_start_response", "throttle"]


@dataclass(frozen=True)
class Hostile:
    """The hostile-answer options in force for one request (see ``FaultConfig``)."""

    long_fields: int = 0
    long_fields_dirty: bool = False
    long_header_max: int = 8192
    data_status: str | None = None
    big_body_bytes: int = 0
    gzip_bomb_bytes: int = 0
    declare_length: bool = False
    trickle_seconds_per_byte: float = 0.0
    trickle_max_seconds: float = 60.0

    @classmethod
    def from_config(cls, cfg: FaultConfig) -> Hostile | None:
        """None when no hostile option is set."""
        hostile = cls(
            long_fields=cfg.long_fields,
            long_fields_dirty=cfg.long_fields_dirty,
            long_header_max=cfg.long_header_max,
            data_status=cfg.data_status,
            big_body_bytes=cfg.big_body_bytes,
            gzip_bomb_bytes=cfg.gzip_bomb_bytes,
            declare_length=cfg.declare_length,
            trickle_seconds_per_byte=cfg.trickle_seconds_per_byte,
            trickle_max_seconds=cfg.trickle_max_seconds,
        )
        return hostile if hostile.active else None

    @property
    def active(self) -> bool:
        return bool(self.long_fields or self.data_status is not None or self.streamed)

    @property
    def streamed(self) -> bool:
        """Whether a 200 answer's body is generated and written piece by piece."""
        return bool(self.big_body_bytes or self.gzip_bomb_bytes or self.trickle_seconds_per_byte)

    def body_modes(self) -> list[str]:
        """Names of the body shapes in force, as the request log records them."""
        modes = []
        if self.gzip_bomb_bytes:
            modes.append("gzip_bomb")
        elif self.big_body_bytes:
            modes.append("big_body")
        if self.trickle_seconds_per_byte:
            modes.append("trickle")
        return modes


@dataclass(frozen=True)
class FaultDecision:
    kind: FaultKind | None = None
    retry_after_ms: int = 0
    hostile: Hostile | None = None

    @property
    def performs_action(self) -> bool:
        """Whether the state machine runs for this request (the response may still be lost)."""
        return self.kind in (None, "truncated", "drop_start_response")


NO_FAULT = FaultDecision()


class TokenBucket:
    def __init__(self, rate: float, capacity: float, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity
        self._updated = clock()

    def take(self) -> float:
        """Take one token; returns 0 on success, else the seconds until a token will be available."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate


class FaultEngine:
    def __init__(self, config: FaultConfig, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.monotonic
        self._lock = threading.Lock()
        self._config = config
        self._rng = random.Random(config.seed)
        self._bucket: TokenBucket | None = None
        self._drops_left = 0
        self.replace(config)

    @property
    def config(self) -> FaultConfig:
        return self._config

    @property
    def drops_left(self) -> int:
        return self._drops_left

    def replace(self, config: FaultConfig) -> None:
        """Install a new fault config: fresh RNG, full bucket, drop counter set from the config."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._drops_left = config.drop_start_response
            self._bucket = None
            if config.throttle_qps is not None:
                burst = config.throttle_burst if config.throttle_burst is not None else max(1.0, config.throttle_qps)
                self._bucket = TokenBucket(config.throttle_qps, burst, self._clock)

    def latency_seconds(self, action: str) -> float:
        with self._lock:
            cfg = self._config
            if not cfg.applies_to(action) or (cfg.latency_ms == 0 and cfg.jitter_ms == 0):
                return 0.0
            jitter = self._rng.uniform(0, cfg.jitter_ms) if cfg.jitter_ms else 0.0
            return (cfg.latency_ms + jitter) / 1000

    def execution_seconds(self, action: str) -> float:
        with self._lock:
            cfg = self._config
            return cfg.execution_ms / 1000 if cfg.applies_to(action) else 0.0

    def decide(self, action: str) -> FaultDecision:
        """The post-authentication fault for one request."""
        with self._lock:
            cfg = self._config
            if not cfg.applies_to(action):
                return NO_FAULT
            hostile = Hostile.from_config(cfg)
            if self._bucket is not None:
                wait = self._bucket.take()
                if wait > 0:
                    return FaultDecision("throttle", retry_after_ms=max(1, math.ceil(wait * 1000)), hostile=hostile)
            if action == "StartDISyncInstance" and self._drops_left > 0:
                self._drops_left -= 1
                return FaultDecision("drop_start_response", hostile=hostile)
            rates: tuple[tuple[FaultKind, float], ...] = (
                ("error", cfg.error_rate),
                ("malformed", cfg.malformed_rate),
                ("truncated", cfg.truncated_rate),
                ("hang", cfg.hang_rate),
                ("reset", cfg.reset_rate),
            )
            plain = FaultDecision(hostile=hostile)
            if not any(rate for _, rate in rates):
                return plain
            draw = self._rng.random()
            threshold = 0.0
            for kind, rate in rates:
                threshold += rate
                if draw < threshold:
                    return FaultDecision(kind, hostile=hostile)
            return plain
