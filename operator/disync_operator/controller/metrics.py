"""Prometheus metrics, in the names and units controller-runtime made familiar, under the `disync_` prefix.

Every series (the list, with labels and their values, is in docs/reference.md under "Metrics"; tests/integration/
test_observability.py lints a live operator's /metrics with promtool and checks the shipped dashboard and alerts use
only these names):

- process_* and python_* (the client library's process, platform and garbage-collector collectors);
- disync_reconcile_total{controller,source,result}, disync_reconcile_errors_total{controller},
  disync_reconcile_time_seconds{controller}: every reconcile, by what brought it and how it ended;
- disync_workqueue_{depth,adds_total,queue_duration_seconds,work_duration_seconds,retries_total}{name};
- disync_dataworks_calls_total{action,outcome}, disync_dataworks_call_duration_seconds{action}: outcome is one of
  `CallOutcome`'s fixed values, never an exception's class name (a rename must not break a dashboard);
- disync_start_retries_total{reason}, disync_instances{ready,reason,lifecycle}, disync_observe_period_seconds;
- disync_instances_lifecycle{lifecycle} (suspended, observe_only, paused), disync_restarts_total;
- disync_events_dropped_total{type} (Normal, Warning);
- leader_election_master_status{name}.

Label values all come from fixed sets (actions, outcomes, reasons, sources, results): no object names, so the number of
series does not grow with the number of CRs.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

if TYPE_CHECKING:
    from disync_operator.controller.runtime.workqueue import WorkQueue

CONTROLLER = "disyncinstance"  # the `controller` label of the reconcile series, the `name` label of the queue's

# Seconds. Reconciles are mostly a DataWorks call and a status write (tens of ms), but wait on the client-side rate
# limit and on retried calls; a queued object may wait behind thousands at the QPS limit (bench P2: minutes).
RECONCILE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
QUEUE_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600)


class ReconcileResult(StrEnum):
    """The `result` label of disync_reconcile_total: controller-runtime's values and meanings."""

    SUCCESS = "success"  # done; nothing to look at until something changes
    ERROR = "error"  # failed (the API server refused or was unreachable, or a bug); retried with backoff
    REQUEUE = "requeue"  # the object changed under the reconcile; looked at again at once
    REQUEUE_AFTER = "requeue_after"  # done for now, to be looked at again at a set time (backoff, a lease, a wait)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # A private registry has no collectors of its own: the process's CPU, memory and file descriptors, the Python
        # version and garbage collections are what a user graphs first.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

        # -- reconciles ---------------------------------------------------------------------------------------
        self.reconciles = Counter(
            "disync_reconcile",
            "Reconciles by what brought the object (event, requeue, sweep, observe, deleted) and how they ended "
            "(success, error, requeue, requeue_after)",
            ["controller", "source", "result"],
            registry=self.registry,
        )
        self.reconcile_errors = Counter(
            "disync_reconcile_errors", "Reconciles that ended in an error", ["controller"], registry=self.registry
        )
        self.reconcile_time = Histogram(
            "disync_reconcile_time_seconds",
            "How long each reconcile took",
            ["controller"],
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.reconcile_errors.labels(CONTROLLER)
        self.reconcile_time.labels(CONTROLLER)

        # -- the work queue -----------------------------------------------------------------------------------
        self.workqueue_depth = Gauge(
            "disync_workqueue_depth",
            "Objects waiting in the work queue for a reconcile",
            ["name"],
            registry=self.registry,
        )
        self.queued = self.workqueue_depth.labels(CONTROLLER)
        self.workqueue_adds = Counter(
            "disync_workqueue_adds",
            "Objects added to the work queue (not counting ones already waiting)",
            ["name"],
            registry=self.registry,
        )
        self.workqueue_queue_duration = Histogram(
            "disync_workqueue_queue_duration_seconds",
            "How long an object waited in the work queue before a worker took it",
            ["name"],
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self.workqueue_work_duration = Histogram(
            "disync_workqueue_work_duration_seconds",
            "How long a worker spent on an object",
            ["name"],
            buckets=RECONCILE_BUCKETS,
            registry=self.registry,
        )
        self.workqueue_retries = Counter(
            "disync_workqueue_retries",
            "Objects put back in the queue after an error or a conflict (controller-runtime's rate-limited re-adds)",
            ["name"],
            registry=self.registry,
        )
        # client-go's workqueue_unfinished_work_seconds and workqueue_longest_running_processor_seconds: a reconcile
        # stuck (a hung call) grows them without bound while everything else looks calm.
        self.workqueue_unfinished = Gauge(
            "disync_workqueue_unfinished_work_seconds",
            "Seconds the reconciles running now have been running, added up",
            ["name"],
            registry=self.registry,
        )
        self.workqueue_longest = Gauge(
            "disync_workqueue_longest_running_processor_seconds",
            "Seconds the longest-running reconcile running now has been running",
            ["name"],
            registry=self.registry,
        )
        # controller-runtime's controller_runtime_active_workers and controller_runtime_max_concurrent_reconciles.
        self.active_workers = Gauge(
            "disync_active_workers", "Reconciles running now", ["controller"], registry=self.registry
        )
        self.max_concurrent = Gauge(
            "disync_max_concurrent_reconciles",
            "How many reconciles may run at once (DISYNC_WORKERS)",
            ["controller"],
            registry=self.registry,
        )
        # controller-runtime's controller_runtime_terminal_reconcile_errors_total: failures the operator stops
        # retrying (a terminal condition until the spec or the credentials change).
        self.terminal_errors = Counter(
            "disync_terminal_reconcile_errors",
            "Reconciles that recorded a terminal failure (not retried until the spec or the credentials change)",
            ["controller"],
            registry=self.registry,
        )
        self.terminal_errors.labels(CONTROLLER)
        # client-go's rest_client_requests_total{code,method} and rest_client_request_duration_seconds{verb}: the
        # API server's 429s, 5xx and 401s to the operator's own requests (kopf's watch is not counted here).
        self.kube_requests = Counter(
            "disync_rest_client_requests",
            "The operator's Kubernetes API requests by method and HTTP status code (<error>: no answer)",
            ["method", "code"],
            registry=self.registry,
        )
        self.kube_latency = Histogram(
            "disync_rest_client_request_duration_seconds",
            "The operator's Kubernetes API request latency",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        for family in (self.workqueue_adds, self.workqueue_queue_duration, self.workqueue_work_duration):
            family.labels(CONTROLLER)
        self.workqueue_retries.labels(CONTROLLER)

        # -- DataWorks ----------------------------------------------------------------------------------------
        self.api_calls = Counter(
            "disync_dataworks_calls",
            "DataWorks API calls by action and outcome (success, throttled, server_error, timeout, network_error, "
            "bad_response, unknown_outcome, clock_skew, rejected, access_denied, auth_failed, credentials, failed, "
            "cancelled, other)",
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
        self.observe_period = Gauge(
            "disync_observe_period_seconds",
            "How often each started task's live state is read: DISYNC_OBSERVE_INTERVAL, or the last pass's length if "
            "longer (about N / DISYNC_OBSERVE_QPS)",
            registry=self.registry,
        )

        # -- leader election and the resources ----------------------------------------------------------------
        # controller-runtime's name, so dashboards made for Go operators work: 1 in the process that leads.
        self.leader = Gauge(
            "leader_election_master_status",
            "1 if this process holds the leader-election Lease (or runs without election), 0 while it stands by",
            ["name"],
            registry=self.registry,
        )
        self.instances = Gauge(
            "disync_instances",
            "DISyncInstances by their Ready condition's status and reason (as this process last wrote or saw it), and "
            "the lifecycle asked of them (empty: keep it started; suspended, observe_only, paused: an intended state "
            "that alerts leave alone)",
            ["ready", "reason", "lifecycle"],
            registry=self.registry,
        )
        self._ready: dict[str, tuple[str, str]] = {}
        self.lifecycle = Gauge(
            "disync_instances_lifecycle",
            "DISyncInstances held back from plain starting: suspended (spec.suspend), observe_only "
            "(managementPolicy ObserveOnly), paused (annotation disync.dev/paused)",
            ["lifecycle"],
            registry=self.registry,
        )
        for lifecycle in ("suspended", "observe_only", "paused"):
            self.lifecycle.labels(lifecycle)  # every value is exported (as 0) from the start
        self._lifecycle: dict[str, str] = {}
        self.restarts = Counter(
            "disync_restarts", "Restarts of tasks found stopped (restartPolicy OnFailure)", registry=self.registry
        )
        self.events_dropped = Counter(
            "disync_events_dropped",
            "Kubernetes Events not posted: Normal ones beyond DISYNC_EVENT_QPS, or any with the queue full",
            ["type"],
            registry=self.registry,
        )

    # -- the work queue's observer (runtime/workqueue.py) --------------------------------------------------------

    def follow(self, queue: WorkQueue) -> None:
        """Report this queue's depth, adds and timings."""
        self.queued.set_function(lambda: len(queue))
        self.workqueue_unfinished.labels(CONTROLLER).set_function(queue.unfinished_seconds)
        self.workqueue_longest.labels(CONTROLLER).set_function(queue.longest_running_seconds)
        self.active_workers.labels(CONTROLLER).set_function(lambda: queue.active)
        self.max_concurrent.labels(CONTROLLER).set_function(lambda: queue.workers)
        queue.observer = self

    def kube_request(self, method: str, code: str, seconds: float) -> None:
        self.kube_requests.labels(method, code).inc()
        self.kube_latency.labels(method).observe(seconds)

    def added(self) -> None:
        self.workqueue_adds.labels(CONTROLLER).inc()

    def taken(self, waited: float) -> None:
        self.workqueue_queue_duration.labels(CONTROLLER).observe(waited)

    def worked(self, seconds: float) -> None:
        self.workqueue_work_duration.labels(CONTROLLER).observe(seconds)

    # -- reconciles -----------------------------------------------------------------------------------------------

    def reconciled(self, source: str, result: ReconcileResult, seconds: float) -> None:
        self.reconciles.labels(CONTROLLER, source, result.value).inc()
        self.reconcile_time.labels(CONTROLLER).observe(seconds)
        if result is ReconcileResult.ERROR:
            self.reconcile_errors.labels(CONTROLLER).inc()
        if result in (ReconcileResult.ERROR, ReconcileResult.REQUEUE):
            self.workqueue_retries.labels(CONTROLLER).inc()

    def event_dropped(self, type_: str) -> None:
        self.events_dropped.labels(type_).inc()

    def set_leading(self, leading: bool, name: str = "disync-operator") -> None:
        self.leader.labels(name).set(1 if leading else 0)

    def on_call(self, action: str, outcome: str, seconds: float) -> None:
        self.api_calls.labels(action, outcome).inc()
        self.api_latency.labels(action).observe(seconds)

    def _instance(self, key: str) -> tuple[str, str, str] | None:
        ready = self._ready.get(key)
        return (*ready, self._lifecycle.get(key, "")) if ready is not None else None

    def _moved(self, before: tuple[str, str, str] | None, after: tuple[str, str, str] | None) -> None:
        # Move one CR between two gauge values: recounting every CR here made each status write O(N), which at
        # 10,000 CRs cost more CPU than the write itself (bench P2).
        if before == after:
            return
        if before is not None:
            self.instances.labels(*before).dec()
        if after is not None:
            self.instances.labels(*after).inc()

    def set_ready(self, key: str, ready: str | None, reason: str = "") -> None:
        """Track one CR's Ready status and reason (None when it is gone) and refresh the per-state gauge."""
        before = self._instance(key)
        self._ready.pop(key, None)
        if ready is not None:
            self._ready[key] = (ready, reason)
        self._moved(before, self._instance(key))

    def set_lifecycle(self, key: str, lifecycle: str | None) -> None:
        """Track one CR's lifecycle (None: plainly started, or gone), as set_ready does its Ready status."""
        before = self._instance(key)
        old = self._lifecycle.pop(key, None)
        if lifecycle is not None:
            self._lifecycle[key] = lifecycle
        self._moved(before, self._instance(key))
        if old == lifecycle:
            return
        if old is not None:
            self.lifecycle.labels(old).dec()
        if lifecycle is not None:
            self.lifecycle.labels(lifecycle).inc()

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        # prometheus_client serves from its own daemon thread, off kopf's event loop.
        start_http_server(port, addr=address, registry=self.registry)
