"""The in-process suite's fixture: a fresh operator (runtime, work queue and workers) over the fakes, per test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from inprocess_fakes import FakeClock, FakeDataWorks, FakeKube
from inprocess_harness import LOG, Operator

from disync_operator.controller.runtime import Runtime, Work
from disync_operator.controller.runtime.first_seen import FirstSeen
from disync_operator.controller.settings import OperatorSettings
from disync_operator.controller.worker import reconcile
from disync_operator.dataworks import StaticCredentialsProvider


@pytest.fixture
async def operator() -> AsyncIterator[Operator]:
    kube, dataworks, clock = FakeKube(), FakeDataWorks(), FakeClock()
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
        first_seen=FirstSeen(clock=clock),
    )
    rt.use_kube(kube)

    async def work(item: Work) -> None:
        await reconcile(rt, item, LOG)

    workers = asyncio.create_task(rt.work.run(2, work))
    yield Operator(kube, dataworks, rt, clock)
    workers.cancel()
    await rt.aclose()
