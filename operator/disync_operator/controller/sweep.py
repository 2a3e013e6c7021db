"""One shared loop instead of a kopf timer per object: live-state follow-up and the resync safety net.

It lists the DISyncInstances page by page and, with bounded concurrency, every `DISYNC_OBSERVE_INTERVAL`:
- follows the live state of started ones (GetDISyncInstanceInfo) and retries terminal failures whose credentials
  changed (`Reconciler.observe`);
and every `DISYNC_RESYNC_INTERVAL`:
- reconciles any object whose current generation was never acted on and that no event has brought to this process:
  kopf only handles objects it hears about, and events can be missed around an operator start. Starting stays
  exactly-once (decide_start and the intent's precondition), so one visit too many costs nothing.

A kopf timer would keep a task and a copy of the body per object (about half the operator's memory per CR, measured
in bench/); a page of 500 at a time keeps memory flat however many objects there are.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from disync_operator.controller.kube import KubeError

if TYPE_CHECKING:
    from disync_operator.controller.runtime import Runtime

log = logging.getLogger(__name__)
PARALLEL = 16


def needs_nudge(item: dict[str, Any], seen: dict[str, int], now: dt.datetime, min_age: float) -> bool:
    meta = item.get("metadata", {})
    if meta.get("deletionTimestamp") or seen.get(meta.get("uid", "")) == meta.get("generation"):
        return False
    status = item.get("status") or {}
    if status.get("observedGeneration") == meta.get("generation"):
        return False  # acted on: kopf and this loop take it from there
    created = meta.get("creationTimestamp")
    if not created:
        return False
    age = (now - dt.datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds()
    return age >= min_age


async def sweep_once(runtime: Runtime, *, observe: bool, nudge_min_age: float | None) -> tuple[int, int]:
    """One pass over every object: (objects observed, objects nudged). `nudge_min_age=None`: no nudging."""
    # Imported here: handlers imports this module to start the loop.
    from disync_operator.controller.handlers import object_logger, reconcile

    kube = await runtime.kube()
    now = dt.datetime.now(dt.UTC)
    slots = asyncio.Semaphore(PARALLEL)
    observed = nudged = 0

    async def visit(item: dict[str, Any]) -> None:
        nonlocal observed, nudged
        async with slots:
            body, logger = object_logger(runtime, item)
            if nudge_min_age is not None and needs_nudge(item, runtime.seen, now, nudge_min_age):
                await reconcile(runtime, body, logger, source="sweep")
                nudged += 1
                return
            if not observe or item.get("metadata", {}).get("deletionTimestamp"):
                return
            # reconcile() never raises: one object's surprise can't stop the loop for the others.
            await reconcile(runtime, body, logger, source="sweep", observe=True)
            observed += 1

    targets: list[str | None] = list(runtime.settings.namespaces) or [None]
    for namespace in targets:
        page: list[asyncio.Task[None]] = []
        async for item in kube.list_instances(namespace):
            page.append(asyncio.create_task(visit(item)))
            if len(page) >= 500:
                await asyncio.gather(*page)
                page = []
        await asyncio.gather(*page)
    return observed, nudged


async def sweep_forever(runtime: Runtime) -> None:
    """Tick at the shorter of the two intervals; observe and nudge each on its own schedule, with one LIST."""
    observe_every = runtime.settings.observe_interval
    nudge_every = runtime.settings.resync_interval
    enabled = [i for i in (observe_every, nudge_every) if i > 0]
    if not enabled:
        return
    tick = min(enabled)
    clock = asyncio.get_running_loop().time
    last_observe = last_nudge = clock()
    while True:
        await asyncio.sleep(tick)
        now = clock()
        observe = observe_every > 0 and now - last_observe >= observe_every - tick / 10
        nudge_due = nudge_every > 0 and now - last_nudge >= nudge_every - tick / 10
        if not observe and not nudge_due:
            continue
        try:
            _, nudged = await sweep_once(runtime, observe=observe, nudge_min_age=nudge_every if nudge_due else None)
        except (KubeError, OSError) as error:
            log.warning("sweep failed, next in %.0fs: %s", tick, error)
            continue
        last_observe = now if observe else last_observe
        last_nudge = now if nudge_due else last_nudge
        if nudged:
            log.warning("%d DISyncInstance(s) had never reached this operator; reconciled them", nudged)
