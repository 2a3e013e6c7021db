"""The in-process harness: an operator process without kopf, Kubernetes or a network (the real Runtime, work queue
and reconciler, over the in-memory fakes). Each test drives it as the watch, the requeue timer and the sweep would."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from inprocess_fakes import FakeClock, FakeDataWorks, FakeKube

from disync_operator.controller.runtime import Runtime, Source

LOG = logging.getLogger("inprocess")

REALTIME = {"projectId": 10, "taskType": "DI_REALTIME", "fileId": 100, "startParam": {"errorLimit": {"record": 0}}}
SOLUTION = {"projectId": 10, "taskType": "DI_SOLUTION", "fileId": 200}


@dataclass
class Operator:
    kube: FakeKube
    dataworks: FakeDataWorks
    rt: Runtime
    clock: FakeClock  # the operator's monotonic clock: `advance` ages every intent it has seen

    async def visit(
        self, name: str, source: Source = Source.EVENT, *, observe: bool = False, namespace: str = "default"
    ) -> float | None:
        """Bring the object's current body to the work queue as `source` would, wait until it is reconciled, post its
        Events; returns when the object is to be looked at again (None: not waiting)."""
        body = self.kube.body(name, namespace)
        uid = body["metadata"]["uid"]
        if source is Source.EVENT:
            self.rt.observed(body)  # as the watch event handler does
        self.rt.work.add(uid, body, source, observe=observe)
        await asyncio.wait_for(self.rt.work.settled([uid]), timeout=5)
        await self.rt.events.post_queued(self.kube)
        return self.rt.requeue.due_in(uid)

    async def startup(self) -> None:
        """What the operator's start-up does before any reconcile: index every object's DataWorks task."""
        await self.rt.owners.load(self.kube.list_instances(None))

    async def gone(self, body: dict[str, Any]) -> None:
        """The DELETED watch event."""
        uid = body["metadata"]["uid"]
        self.rt.work.add(uid, body, Source.DELETED)  # the worker forgets it (Runtime.forget)
        await asyncio.wait_for(self.rt.work.settled([uid]), timeout=5)
        await self.rt.events.post_queued(self.kube)

    def status(self, name: str, namespace: str = "default") -> dict[str, Any]:
        return dict(self.kube.objects[(namespace, name)].get("status") or {})

    def ready(self, name: str, namespace: str = "default") -> tuple[str, str]:
        ready = next(c for c in self.status(name, namespace)["conditions"] if c["type"] == "Ready")
        return ready["status"], ready["reason"]

    def events(self) -> list[tuple[str, str]]:
        return [(e["type"], e["reason"]) for e in self.kube.events]

    def messages(self) -> list[str]:
        return [e["message"] for e in self.kube.events]
