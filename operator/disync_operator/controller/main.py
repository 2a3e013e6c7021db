"""`disync-operator run`: kopf with our settings, handlers, metrics and logging."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import kopf
from kopf._core.engines.peering import Identity

from disync_operator import types as t
from disync_operator.controller.handlers import register
from disync_operator.controller.identity import in_cluster_namespace
from disync_operator.controller.runtime import Runtime
from disync_operator.controller.runtime.health import HealthServer
from disync_operator.controller.runtime.leader import LeaderElection
from disync_operator.controller.settings import OperatorSettings, unknown_variables

# How long in-flight reconciles may end after SIGTERM before kopf is stopped.
HANDOVER_DRAIN_SECONDS = 2.0


class SharedMemo(kopf.Memo):
    """kopf gives each object a copy of the memo, for handlers that keep per-object state in it; the operator keeps
    its state in the Runtime, so all objects share one: 2 MiB less at 10,000 objects (tracemalloc)."""

    def __copy__(self) -> SharedMemo:
        return self


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a diff base (a deep copy of the body, cleaned) on every event, for create/update handlers; the
    operator has none (one event handler; what it acted on is status.startedSpecDigest). 6% of its CPU in a burst
    (py-spy, bench/), skipped."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
    s.persistence.diffbase_storage = NoDiffBase()
    # Our finalizer is ours (handlers.Reconciler): kopf must neither add nor remove it. kopf removes *its* finalizer
    # from objects no handler of its needs one for, so it gets a name nothing ever carries.
    s.persistence.finalizer = f"{t.GROUP}/kopf-unused"
    s.posting.enabled = False  # Events are the operator's own (controller/runtime/events.py); kopf posts none
    s.watching.server_timeout = settings.watch_server_timeout
    s.watching.client_timeout = (settings.watch_server_timeout or 600) + 30
    s.watching.connect_timeout = 10
    s.networking.request_timeout = 60
    # kopf keeps a task per object until it has had no event for this long; the handler only queues (workqueue.py),
    # so a short idle spares thousands of waiting tasks during a burst (bench/ P2).
    s.queueing.idle_timeout = 0.5
    s.scanning.disabled = True  # no cluster-wide CRD/namespace scans: less RBAC, less memory
    # One process reconciles at a time by the operator's own Lease (runtime/leader.py), not kopf's peering.
    s.peering.standalone = True
    return s


def configure_logging(settings: OperatorSettings) -> None:
    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    kopf.configure(
        verbose=settings.log_level == "DEBUG",
        log_format=log_format,
        log_refkey="object",
        # JSON lines carry the object under "object"; plain lines get a "[namespace/name]" prefix instead.
        log_prefix=settings.log_format == "plain",
    )
    logging.getLogger().setLevel(settings.log_level)
    # httpx logs every request at INFO; at 1,000s of CRs that drowns what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(_drop_per_event_success)


def _drop_per_event_success(record: logging.LogRecord) -> bool:
    # kopf says "Handler 'reconcile' succeeded." for every event of every object: several lines per CR that say
    # nothing the handler's own lines don't.
    return not (record.levelno == logging.INFO and record.msg == "Handler 'reconcile' succeeded.")


def run(settings: OperatorSettings) -> None:
    configure_logging(settings)
    runtime = Runtime(settings)
    if settings.metrics_port:
        runtime.metrics.serve(settings.metrics_port, str(settings.metrics_bind_address))
    registry = kopf.OperatorRegistry()
    register(registry)
    logging.getLogger("disync_operator").info(
        "starting disync-operator as %s (endpoint %s)", runtime.me, settings.endpoint or f"region {settings.region}"
    )
    code = asyncio.run(serve(runtime, registry))
    if code:
        raise SystemExit(code)


async def serve(runtime: Runtime, registry: kopf.OperatorRegistry) -> int:
    """Stand by until leading (with leader election), then run kopf until a signal or the loss of the Lease; on a
    signal hand over: stop reconciling, release the Lease, then stop kopf. Returns the exit code."""
    settings = runtime.settings
    _on_signals(runtime.shutdown.set)
    health = HealthServer(lambda: runtime.readiness, port=settings.liveness_port) if settings.liveness_port else None
    if health is not None:
        await health.start()
    follow = asyncio.create_task(runtime.identity.follow_token_file(), name="disync-token-file")
    election: LeaderElection | None = None
    try:
        if settings.leader_election:
            election = await leader_election(runtime)
            runtime.readiness.role = "standby"
            runtime.metrics.set_leading(False)
            standing_by = asyncio.create_task(_report_standby(runtime, election))
            leading = await election.acquire(runtime.shutdown)
            standing_by.cancel()
            if not leading:
                return 0
            runtime.readiness.leader = runtime.me
            runtime.lead_by(election)
        runtime.readiness.role = "leader"
        runtime.metrics.set_leading(True)
        return await _lead(runtime, registry, election)
    finally:
        follow.cancel()
        if health is not None:
            await health.stop()


def _on_signals(callback: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()

    def received(sig: signal.Signals) -> None:
        logging.getLogger("disync_operator").info("%s received: stopping", sig.name)
        callback()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, received, sig)


async def _report_standby(runtime: Runtime, election: LeaderElection) -> None:
    while True:
        runtime.readiness.ready = election.reachable
        runtime.readiness.leader = election.holder
        await asyncio.sleep(0.5)


async def _lead(runtime: Runtime, registry: kopf.OperatorRegistry, election: LeaderElection | None) -> int:
    kopf_stop, kopf_ready = asyncio.Event(), asyncio.Event()
    operator = asyncio.create_task(
        kopf.operator(
            registry=registry,
            settings=kopf_settings(runtime.settings),
            standalone=True,
            clusterwide=not runtime.settings.namespaces,
            namespaces=runtime.settings.namespaces,
            memo=SharedMemo(runtime=runtime),
            # Our own identity: without one kopf derives it from getpass.getuser(), which raises KeyError for a uid
            # with no passwd entry, as the image's 65532 is (seen on the first real node: the leader crashed).
            identity=Identity(runtime.me),
            stop_flag=kopf_stop,
            ready_flag=kopf_ready,
        ),
        name="kopf",
    )

    async def own_the_signals() -> None:
        # kopf sets SIGTERM/SIGINT handlers of its own as it starts (they stop it at once); once it is ready the
        # operator's come back, so that a signal first stops the reconciles and releases the Lease.
        await kopf_ready.wait()
        _on_signals(runtime.shutdown.set)

    signals = asyncio.create_task(own_the_signals())
    waits: list[asyncio.Task[Any]] = [operator, asyncio.create_task(runtime.shutdown.wait())]
    holding = asyncio.create_task(election.hold()) if election is not None else None
    if holding is not None:
        waits.append(holding)
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    lost = holding is not None and holding.done()
    signals.cancel()
    for task in waits[1:]:
        task.cancel()
    if not operator.done():
        # Hand over: no new reconcile from here, and the Lease released at once, so the standby takes over within
        # a second. Reconciles in flight may still end meanwhile: two processes at once is what start intents are
        # for (written before the call with a resourceVersion precondition, verified by the next leader after their
        # lease), as in any rolling update. Then kopf stops.
        drained = asyncio.create_task(runtime.stop_reconciling(grace=0 if lost else HANDOVER_DRAIN_SECONDS))
        if election is not None and not lost:
            await election.release(grace=HANDOVER_DRAIN_SECONDS)
        await drained
        kopf_stop.set()
    try:
        await operator
    except Exception:
        logging.getLogger("disync_operator").exception("kopf stopped with an error")
        return 1
    # The Lease was lost: exit non-zero, so the container restarts and stands by (as controller-runtime does).
    return 1 if lost else 0


async def leader_election(runtime: Runtime) -> LeaderElection:
    s = runtime.settings
    namespace = s.leader_election_namespace or os.environ.get("POD_NAMESPACE") or in_cluster_namespace()
    if not namespace:
        raise SystemExit(
            "disync-operator: leader election needs a namespace for its Lease: set DISYNC_LEADER_ELECTION_NAMESPACE "
            "(in a pod, POD_NAMESPACE or the ServiceAccount's namespace is used)"
        )

    return LeaderElection(
        await runtime.kube(),
        namespace=namespace,
        name=s.leader_election_name,
        identity=runtime.me,
        lease_duration=s.leader_lease_duration,
        renew_deadline=s.leader_renew_deadline,
        retry_period=s.leader_retry_period,
        on_change=runtime.metrics.set_leading,
    )


def load_settings(**overrides: Any) -> OperatorSettings:
    from pydantic import ValidationError

    unknown = unknown_variables(os.environ)
    for name in unknown:
        print(f"disync-operator: {name}", file=sys.stderr)
    if unknown:
        raise SystemExit(2)
    try:
        return OperatorSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            where = ".".join(str(p) for p in problem["loc"]) or "configuration"
            print(f"disync-operator: {where}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
