"""One shared loop instead of a kopf timer per object: live-state follow-up and the resync safety net.

It lists the DISyncInstances page by page and queues them for the workers, every `DISYNC_OBSERVE_INTERVAL`:
- follows the live state of started ones (GetDISyncInstanceInfo) and retries terminal failures whose credentials
  changed (a reconcile with `observe`);
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

from disync_operator.controller.runtime.kube import KubeApi, KubeError
from disync_operator.controller.runtime.secrets import PassSecrets
from disync_operator.controller.runtime.workqueue import Source

if TYPE_CHECKING:
    from disync_operator.controller.runtime.process import Runtime

log = logging.getLogger(__name__)
PAGE = 500  # objects queued by the sweep at once: memory stays flat however many there are


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
    """One pass over every object: (objects observed, objects nudged). `nudge_min_age=None`: no nudging. Visits go
    through the work queue (so never two reconciles of one object at once), a page at a time, and the pass returns
    when its visits are done."""
    kube = await runtime.kube()
    now = dt.datetime.now(dt.UTC)
    observed = nudged = 0
    runtime.pass_secrets = PassSecrets(kube) if observe else None
    try:
        observed, nudged = await _visit_all(runtime, kube, now, observe=observe, nudge_min_age=nudge_min_age)
    finally:
        runtime.pass_secrets = None
    return observed, nudged


async def _visit_all(
    runtime: Runtime, kube: KubeApi, now: dt.datetime, *, observe: bool, nudge_min_age: float | None
) -> tuple[int, int]:
    observed = nudged = 0
    # Spread the live-state reads over the interval rather than bursting them (the previous pass's count is the
    # estimate); the observation budget (DISYNC_OBSERVE_QPS) is the other bound on the pace.
    spacing = runtime.settings.observe_interval / runtime.observed_last_pass if runtime.observed_last_pass else 0.0
    for namespace in runtime.settings.list_scopes:
        page: list[str] = []
        async for item in kube.list_instances(namespace):
            meta = item.get("metadata", {})
            uid = meta.get("uid", "")
            if nudge_min_age is not None and needs_nudge(item, runtime.seen, now, nudge_min_age):
                runtime.work.add(uid, item, Source.SWEEP)
                nudged += 1
            elif observe and not meta.get("deletionTimestamp"):
                if spacing and observed:
                    await asyncio.sleep(spacing)
                runtime.work.add(uid, item, Source.OBSERVE, observe=True)
                observed += 1
            else:
                continue
            page.append(uid)
            if len(page) >= PAGE:
                await runtime.work.settled(page)
                page = []
        await runtime.work.settled(page)
    if observe:
        runtime.observed_last_pass = observed
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
        if observe:
            # How often each started task's live state is really read: the interval, or the pass if it is longer
            # (about N / DISYNC_OBSERVE_QPS).
            runtime.metrics.observe_period.set(max(observe_every, clock() - now))
        last_observe = now if observe else last_observe
        last_nudge = now if nudge_due else last_nudge
        if nudged:
            log.warning("%d DISyncInstance(s) had never reached this operator; reconciled them", nudged)
