"""kopf wiring, and nothing else: what kopf calls, and where it hands over to the operator's own runtime.

kopf logs in, watches the DISyncInstances and delivers every event to `on_event`, which only queues the object
(runtime/workqueue.py); the operator's workers reconcile it (reconciler.py). Why one event handler and not kopf's
create/update/delete handlers: see docs/design.md.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, cast

import httpx
import kopf

from disync_operator import types as t
from disync_operator.controller.runtime import KubeError, Runtime, Source, Work, sweep_forever
from disync_operator.controller.runtime.heap import release_when_idle
from disync_operator.controller.worker import reconcile

RESOURCE = (t.GROUP, t.VERSION, t.PLURAL)
log = logging.getLogger(__name__)


def object_logger(rt: Runtime, raw: dict[str, Any]) -> logging.LoggerAdapter[Any]:
    """kopf's per-object logger (JSON logs carry the object), for work that runs outside kopf's own tasks."""
    return kopf.LocalObjectLogger(body=kopf.Body(cast(kopf.RawBody, raw)), settings=rt.kopf_settings)


def register(registry: kopf.OperatorRegistry) -> None:
    """Register the handlers on `registry` (explicit, so tests and the CLI build operators side by side)."""

    @kopf.on.login(registry=registry)
    async def login(*, memo: Any, **_: Any) -> kopf.ConnectionInfo:
        # One identity for kopf's watch and the operator's own requests (controller/identity.py).
        info: kopf.ConnectionInfo = await memo.runtime.kopf_login()
        return info

    @kopf.on.startup(registry=registry)
    async def start_background(*, memo: Any, settings: kopf.OperatorSettings, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        runtime.kopf_settings = settings

        async def work(item: Work) -> None:
            await reconcile(runtime, item, object_logger(runtime, item.body))

        async def post_events() -> None:
            await runtime.events.run(await runtime.kube())

        async def reconcile_queued() -> None:
            # Before the first reconcile, who manages which DataWorks task must be known for every object, not only
            # for those whose events came first. Events queue meanwhile.
            kube = await runtime.kube()
            while True:
                try:
                    for namespace in runtime.settings.list_scopes:
                        await runtime.owners.load(kube.list_instances(namespace))
                    break
                except (KubeError, httpx.HTTPError) as error:  # the API server not there yet: nothing starts
                    log.warning("listing DISyncInstances failed, retrying in 2s: %s", error)
                    await asyncio.sleep(2)
            runtime.readiness.ready = True
            await runtime.work.run(runtime.settings.workers, work)

        def requeued(raw: dict[str, Any]) -> None:
            runtime.work.add(raw.get("metadata", {}).get("uid", ""), raw, Source.REQUEUE)

        background = runtime.background
        background.append(asyncio.create_task(reconcile_queued(), name="disync-workers"))
        background.append(asyncio.create_task(runtime.requeue.run(requeued), name="disync-requeue"))
        background.append(asyncio.create_task(post_events(), name="disync-events"))
        background.append(asyncio.create_task(sweep_forever(runtime), name="disync-sweep"))
        queue = runtime.work
        idle_release = release_when_idle(lambda: queue.reconciled, lambda: queue.idle)
        background.append(asyncio.create_task(idle_release, name="disync-heap"))

    @kopf.on.cleanup(registry=registry)
    async def cleanup(*, memo: Any, **_: Any) -> None:
        await memo.runtime.aclose()

    @kopf.on.event(*RESOURCE, id="reconcile", registry=registry)
    async def on_event(*, type: str | None, body: kopf.Body, memo: Any, **_: Any) -> None:
        runtime: Runtime = memo.runtime
        uid = sys.intern(body.metadata.uid or "")  # one string per uid for all this process keeps (owners.py)
        raw = dict(body)
        if type == "DELETED":
            runtime.work.add(uid, raw, Source.DELETED)
            return
        runtime.seen[uid] = int(body.metadata.get("generation") or 0)
        runtime.observed(raw)
        runtime.work.add(uid, raw, Source.EVENT)
