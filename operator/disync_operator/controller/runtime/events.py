"""Kubernetes Events about DISyncInstances (`kubectl describe` shows them), posted off the reconcile path.

kopf's own `kopf.event()` only works inside kopf's per-object tasks; our requeues and the sweep run outside them.
One queue and a few poster tasks serve all: a reconcile never waits for an Event, and a slow or failing API server
costs Events (counted in the log), never a reconcile.

Events cost the API server a write each (as much as the status write that carries the same fact), so they are
budgeted the way client-go's recorder budgets them (a rate with a burst): a burst of 1,000 new CRs made 1,000
`Started` Events, a quarter of the API server's CPU for the burst (bench VS). Warnings always queue and spend the
budget first; a Normal Event beyond it is dropped and counted (disync_events_dropped_total): its fact is in the
object's Ready condition anyway.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from disync_operator.controller.runtime.kube import KubeApi, KubeError
from disync_operator.dataworks import TokenBucket
from disync_operator.types import bounded

log = logging.getLogger(__name__)
COMPONENT = "disync-operator"
MAX_MESSAGE = 1024  # what the API server accepts for an Event's message
MAX_QUEUED = 10_000
POSTERS = 4  # a few in flight: under load one would fall behind a burst of CRs


def event_body(obj: Mapping[str, Any], type_: str, reason: str, message: str, instance: str) -> dict[str, Any]:
    meta = obj.get("metadata", {})
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": bounded(message, MAX_MESSAGE),
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


class EventRecorder:
    def __init__(
        self,
        instance: str,
        *,
        qps: float = 5.0,
        burst: int = 25,
        on_drop: Callable[[str], None] = lambda type_: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._instance = instance
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(MAX_QUEUED)
        self._budget = TokenBucket(qps, burst=burst, clock=clock)
        self._on_drop = on_drop
        self.dropped = 0

    def record(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        if type_ == "Warning":
            self._budget.reserve()  # spent even when that runs the budget into debt: Normal Events wait it out
        elif not self._budget.try_reserve():
            self._on_drop(type_)
            return
        try:
            self._queue.put_nowait(event_body(obj, type_, reason, message, self._instance))
        except asyncio.QueueFull:
            self.dropped += 1
            self._on_drop(type_)

    async def run(self, kube: KubeApi) -> None:
        """Post queued Events until cancelled."""
        await asyncio.gather(*(self._post(kube) for _ in range(POSTERS)))

    async def post_queued(self, kube: KubeApi) -> int:
        """Post what is queued now, in order, and return how many (the in-process tests read Events this way)."""
        count = 0
        while not self._queue.empty():
            await self._post_one(kube, self._queue.get_nowait())
            count += 1
        return count

    async def _post(self, kube: KubeApi) -> None:
        while True:
            await self._post_one(kube, await self._queue.get())

    async def _post_one(self, kube: KubeApi, body: dict[str, Any]) -> None:
        try:
            await kube.create_event(body["metadata"]["namespace"], body)
        except (KubeError, httpx.HTTPError) as error:
            log.warning("event %s for %s not posted: %s", body["reason"], body["involvedObject"]["name"], error)
        if self.dropped:
            log.warning("%d event(s) dropped: the API server is not keeping up", self.dropped)
            self.dropped = 0
