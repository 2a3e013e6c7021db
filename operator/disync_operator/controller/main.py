"""`disync-operator run`: kopf with our settings, handlers, metrics and logging."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import kopf

from disync_operator import types as t
from disync_operator.controller.handlers import register
from disync_operator.controller.runtime import Runtime
from disync_operator.controller.settings import OperatorSettings


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    s = kopf.OperatorSettings()
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
    s.peering.standalone = settings.peering is None
    if settings.peering is not None:
        s.peering.name = settings.peering
        s.peering.priority = settings.priority
        s.peering.mandatory = True
        s.peering.clusterwide = not settings.namespaces
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
        runtime.metrics.serve(settings.metrics_port)
    registry = kopf.OperatorRegistry()
    register(registry)
    liveness = f"http://0.0.0.0:{settings.liveness_port}/healthz" if settings.liveness_port else None
    logging.getLogger("disync_operator").info(
        "starting disync-operator as %s (endpoint %s)", runtime.me, settings.endpoint or f"region {settings.region}"
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(settings),
            standalone=settings.peering is None,
            peering_name=settings.peering,
            priority=settings.priority,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            liveness_endpoint=liveness,
            memo=kopf.Memo(runtime=runtime),
            stop_flag=stop,
        )

    asyncio.run(main())


def load_settings(**overrides: Any) -> OperatorSettings:
    from pydantic import ValidationError

    try:
        return OperatorSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as error:
        for problem in error.errors(include_url=False):
            where = ".".join(str(p) for p in problem["loc"]) or "configuration"
            print(f"disync-operator: {where}: {problem['msg']}", file=sys.stderr)
        raise SystemExit(2) from None
