"""Operator configuration, from the environment (DISYNC_*), validated at start-up."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Literal

from pydantic import Field, IPvAnyAddress, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from disync_operator.dataworks import resolve_endpoint
from disync_operator.types import MAX_RESTARTS_PER_HOUR


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DISYNC_", extra="ignore", frozen=True)

    # Where DataWorks is. A CR may pick a region; the endpoint is only ever operator configuration, so a CR
    # cannot send the operator's credentials to a server of its choosing.
    region: str | None = Field(default=None, description="Default region, e.g. cn-shanghai")
    endpoint: str | None = Field(default=None, description="Explicit endpoint (e.g. the emulator); overrides region")
    use_vpc_endpoint: bool = Field(default=False, description="Use dataworks-vpc.<region>.aliyuncs.com")

    # Throughput guards for calls to DataWorks, shared by all CRs.
    qps: float | None = Field(default=20.0, gt=0, description="Client-side limit of DataWorks calls per second")
    max_concurrency: int = Field(default=16, ge=1, le=1024)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=10.0, gt=0)
    # The whole call, whatever the sender's pace (default connect + read timeout); the start lease must outlast it.
    call_timeout: float | None = Field(default=None, gt=0)
    # The largest answer read from DataWorks (compressed or not); a larger one is a retryable MalformedResponse.
    max_response_bytes: int = Field(default=1_048_576, ge=1024)
    # The share of DISYNC_QPS the sweep's live-state reads may use (default half): starts and stops go first.
    observe_qps: float | None = Field(default=None, gt=0)

    # Retry policy for retryable errors.
    backoff_base: float = Field(default=1.0, gt=0)
    backoff_factor: float = Field(default=2.0, ge=1)
    backoff_cap: float = Field(default=300.0, gt=0)

    # How often the sweep over all instances reads back the live state of started ones (GetDISyncInstanceInfo) and
    # retries terminal failures whose credentials changed; 0 disables.
    observe_interval: float = Field(default=120.0, ge=0)
    # How often the same sweep nudges objects whose current generation was never acted on and that no handler of
    # this process has seen (kopf missed their events); 0 disables.
    resync_interval: float = Field(default=60.0, ge=0)
    # How long another process's start intent is trusted before it is verified (covers a call in flight).
    start_lease_seconds: float = Field(default=30.0, gt=0)
    # restartPolicy OnFailure: restarts of one task within any hour, at most. Small, so a task that fails again at
    # once is left for a person (Ready says RestartLimitReached) rather than started all day.
    max_restarts_per_hour: int = Field(default=5, ge=1, le=MAX_RESTARTS_PER_HOUR)

    # Tenancy. Namespaces whose CRs may use the operator's own identity (environment or RRSA) when they name no
    # Secret; ["*"] = every namespace. Default: none, so a tenant gets the operator's cloud access only where the
    # install says so (the shipped manifests set it explicitly).
    default_credentials_namespaces: list[str] = Field(default_factory=list)
    # Regions newer than the official SDK's endpoint map (dataworks.<region>.aliyuncs.com); anything else is refused.
    extra_regions: list[str] = Field(default_factory=list)

    # Operator process.
    namespaces: list[str] = Field(default_factory=list, description="Namespaces to watch; empty = cluster-wide")
    # /healthz (liveness) and /readyz (readiness; says whether this process leads); 0 = not served.
    liveness_port: int = Field(default=8080, ge=0, le=65535)
    # Leader election (a coordination.k8s.io/v1 Lease): of several replicas one reconciles, the others wait as hot
    # standbys. controller-runtime's defaults for the three durations.
    leader_election: bool = False
    leader_election_name: str = Field(default="disync-operator", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    # Where the Lease lives; default POD_NAMESPACE, else the pod's ServiceAccount namespace.
    leader_election_namespace: str | None = None
    leader_lease_duration: float = Field(default=15.0, gt=0)
    leader_renew_deadline: float = Field(default=10.0, gt=0)
    leader_retry_period: float = Field(default=2.0, gt=0)
    # How often a token file (the pod's ServiceAccount token, a kubeconfig's tokenFile) is re-read for rotation.
    token_reread_seconds: float = Field(default=10.0, gt=0)
    # Prometheus metrics on this port (0 = not served), bound to this address: 127.0.0.1 keeps them inside the pod.
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    metrics_bind_address: IPvAnyAddress = Field(default=IPv4Address("0.0.0.0"))
    log_format: Literal["json", "plain"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Reconciles in flight at once (the rest wait in the work queue, a trimmed body each); enough to keep the
    # DataWorks concurrency cap busy while others write status.
    workers: int = Field(default=64, ge=1, le=1024)
    # Connections to the API server for the operator's own requests (kopf's watch has its own); requests beyond
    # them wait in an O(1) queue in front of the pool (runtime/kube.py).
    kube_connections: int = Field(default=16, ge=1, le=64)
    # Normal Events per second (with a burst of event_burst) beyond which they are dropped and counted; Warnings
    # always post (runtime/events.py).
    event_qps: float = Field(default=5.0, gt=0)
    event_burst: int = Field(default=25, ge=1)
    watch_server_timeout: int | None = Field(default=600, ge=1)
    instance_id: str | None = Field(
        default=None, description="Identity in start intents; default POD_NAME/hostname+pid"
    )

    @property
    def list_scopes(self) -> list[str | None]:
        """What to list: each watched namespace, or (None) the whole cluster."""
        return list(self.namespaces) or [None]

    @property
    def effective_call_timeout(self) -> float:
        return self.call_timeout if self.call_timeout is not None else self.connect_timeout + self.read_timeout

    @property
    def effective_observe_qps(self) -> float | None:
        if self.observe_qps is not None:
            return self.observe_qps if self.qps is None else min(self.observe_qps, self.qps)
        return self.qps / 2 if self.qps is not None else None

    def may_use_operator_identity(self, namespace: str) -> bool:
        allowed = self.default_credentials_namespaces
        return "*" in allowed or namespace in allowed

    @model_validator(mode="after")
    def _endpoint_or_region(self) -> OperatorSettings:
        if not self.endpoint and not self.region:
            raise ValueError("set DISYNC_REGION (e.g. cn-shanghai) or DISYNC_ENDPOINT")
        return self

    @model_validator(mode="after")
    def _known_region(self) -> OperatorSettings:
        if self.region is not None:
            resolve_endpoint(self.region, extra_regions=self.extra_regions)  # UnknownRegionError is a ValueError
        return self

    @model_validator(mode="after")
    def _election_timing(self) -> OperatorSettings:
        # As client-go requires: a leader gives up (renew deadline) before others may take over (lease duration),
        # and tries to renew more than once within the deadline.
        if not self.leader_lease_duration > self.leader_renew_deadline > 1.2 * self.leader_retry_period:
            raise ValueError(
                "leader election needs DISYNC_LEADER_LEASE_DURATION > DISYNC_LEADER_RENEW_DEADLINE > 1.2 x "
                f"DISYNC_LEADER_RETRY_PERIOD: {self.leader_lease_duration:g}, {self.leader_renew_deadline:g}, "
                f"{self.leader_retry_period:g}"
            )
        return self

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> OperatorSettings:
        # A start intent is trusted for the lease; a call may be in flight for up to its overall deadline.
        if self.start_lease_seconds <= self.effective_call_timeout:
            raise ValueError(
                "DISYNC_START_LEASE_SECONDS must exceed the call deadline (DISYNC_CALL_TIMEOUT, by default "
                f"DISYNC_CONNECT_TIMEOUT + DISYNC_READ_TIMEOUT): {self.start_lease_seconds} <= "
                f"{self.effective_call_timeout}"
            )
        return self


# Read by the development tools (`disync-operator dev`, hack/), never by the operator: not a mistake to find set.
DEV_TOOL_VARIABLES = frozenset(
    {"DISYNC_DEV_ONCE", "DISYNC_DEV_WORKDIR", "DISYNC_CONTROLPLANE_CACHE", "DISYNC_CONTROLPLANE_BIN"}
)


# What Kubernetes puts in every container's environment for each Service of its namespace (enableServiceLinks):
# a Service "disync-operator-metrics" gives DISYNC_OPERATOR_METRICS_SERVICE_HOST, ..._PORT_9090_TCP_ADDR and the like.
# (Seen on the first real node: the pods refused to start on them.)
SERVICE_LINK = re.compile(
    r"_SERVICE_HOST$|_SERVICE_PORT(_[A-Z0-9_]+)?$|_PORT(_[0-9]+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?$"
)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Each `DISYNC_*` variable the operator doesn't know, with the nearest known name when one is close: a typo
    (`DISYNC_QSP`) would otherwise leave the default in force without a word."""
    prefix = OperatorSettings.model_config.get("env_prefix") or ""
    known = {f"{prefix}{name}".upper() for name in OperatorSettings.model_fields}
    problems = []
    for name in sorted(environ):
        if not name.startswith(prefix) or name in known or name in DEV_TOOL_VARIABLES or SERVICE_LINK.search(name):
            continue
        nearest = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hint = f" (did you mean {nearest[0]}?)" if nearest else ""
        problems.append(f"unknown setting {name}{hint}")
    return problems
