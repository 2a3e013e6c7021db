"""Prometheus metrics: DataWorks calls by action and outcome, latency, retries, CRs by Ready state."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.api_calls = Counter(
            "disync_dataworks_calls",
            "DataWorks API calls by action and outcome",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.api_latency = Histogram(
            "disync_dataworks_call_duration_seconds",
            "DataWorks API call latency",
            ["action"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.retries = Counter(
            "disync_start_retries",
            "Start attempts that failed with a retryable error, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.reconciles = Counter(
            "disync_reconciles",
            "Reconciles by what brought them: a watch event, a requeue (backoff, lease), or the sweep",
            ["source"],
            registry=self.registry,
        )
        self.observe_period = Gauge(
            "disync_observe_period_seconds",
            "How often each started task's live state is read: DISYNC_OBSERVE_INTERVAL, or the last pass's length if "
            "longer (about N / DISYNC_OBSERVE_QPS)",
            registry=self.registry,
        )
        self.queued = Gauge(
            "disync_workqueue_depth", "Objects waiting in the work queue for a reconcile", registry=self.registry
        )
        # controller-runtime's name, so dashboards made for Go operators work: 1 in the process that leads.
        self.leader = Gauge(
            "leader_election_master_status",
            "1 if this process holds the leader-election Lease (or runs without election), 0 while it stands by",
            ["name"],
            registry=self.registry,
        )
        self.instances = Gauge(
            "disync_instances", "DISyncInstances by their Ready condition", ["ready"], registry=self.registry
        )
        for state in ("True", "False", "Unknown"):
            self.instances.labels(state)  # every state is exported (as 0) from the start
        self._ready: dict[str, str] = {}

    def set_leading(self, leading: bool, name: str = "disync-operator") -> None:
        self.leader.labels(name).set(1 if leading else 0)

    def on_call(self, action: str, outcome: str, seconds: float) -> None:
        self.api_calls.labels(action, outcome).inc()
        self.api_latency.labels(action).observe(seconds)

    def set_ready(self, key: str, ready: str | None) -> None:
        """Track one CR's Ready status (None when it is gone) and refresh the per-state gauge."""
        old = self._ready.pop(key, None)
        if ready is not None:
            self._ready[key] = ready
        if old == ready:
            return
        # Move one CR between two gauge values: recounting every CR here made each status write O(N), which at
        # 10,000 CRs cost more CPU than the write itself (bench P2).
        if old is not None:
            self.instances.labels(old).dec()
        if ready is not None:
            self.instances.labels(ready).inc()

    def serve(self, port: int) -> None:
        # prometheus_client serves from its own daemon thread, off kopf's event loop.
        start_http_server(port, registry=self.registry)
