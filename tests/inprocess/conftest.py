"""An operator process without kopf, Kubernetes or a network: the real Runtime, work queue and reconciler, over the
in-memory fakes. Each test drives it as the watch, the requeue timer and the sweep would."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from fakes import FakeDataWorks, FakeKube

from disync_operator.controller.runtime import Runtime, Source, Work
from disync_operator.controller.settings import OperatorSettings
from disync_operator.controller.worker import reconcile
from disync_operator.dataworks import StaticCredentialsProvider

LOG = logging.getLogger("inprocess")

REALTIME = {"projectId": 10, "taskType": "DI_REALTIME", "fileId": 100, "startParam": {"errorLimit": {"record": 0}}}
SOLUTION = {"projectId": 10, "taskType": "DI_SOLUTION", "fileId": 200}


@dataclass
class Operator:
    kube: FakeKube
    dataworks: FakeDataWorks
    rt: Runtime

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


@pytest.fixture
async def operator() -> AsyncIterator[Operator]:
    kube, dataworks = FakeKube(), FakeDataWorks()
    settings = OperatorSettings(
        endpoint="http://dataworks.test",
        metrics_port=0,
        liveness_port=0,
        qps=None,
        default_credentials_namespaces=["*"],
    )
    rt = Runtime(
        settings,
        default_credentials=StaticCredentialsProvider("LTAIoperator", "operator-secret"),
        me="op-test/1",
        dataworks_transport=dataworks.transport(),
    )
    rt.use_kube(kube)

    async def work(item: Work) -> None:
        await reconcile(rt, item, LOG)

    workers = asyncio.create_task(rt.work.run(2, work))
    yield Operator(kube, dataworks, rt)
    workers.cancel()
    await rt.aclose()
