"""The shared sweep against the real API server: it reconciles exactly the objects no event has brought."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from e2e_helpers import dsi

from disync_operator.controller.runtime import Runtime
from disync_operator.controller.runtime.sweep import sweep_once
from disync_operator.controller.runtime.workqueue import Work
from disync_operator.controller.settings import OperatorSettings
from disync_operator.controller.worker import reconcile
from disync_operator.devstack.controlplane import ControlPlane
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, EmulatorProcess

pytestmark = pytest.mark.cluster


def test_only_unseen_unhandled_generations_are_reconciled(
    control_plane: ControlPlane, kubectl: Kubectl, namespace: str, crd: None, emulator: EmulatorProcess
) -> None:
    kubectl.apply(dsi("never-seen", file_id=100))
    kubectl.apply(dsi("queued", file_id=103))
    kubectl.apply(dsi("handled", file_id=101))
    kubectl.apply(dsi("gone", file_id=102))
    kubectl(
        "patch",
        "dsi",
        "handled",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"observedGeneration": 1}}),
    )
    kubectl("patch", "dsi", "gone", "--type=merge", "-p", '{"metadata":{"finalizers":["test/hold"]}}')
    kubectl("delete", "dsi", "gone", "--wait=false")
    queued_uid = kubectl.get_json("dsi", "queued")["metadata"]["uid"]

    async def run() -> tuple[int, int]:
        settings = OperatorSettings(
            endpoint=emulator.url,
            namespaces=[namespace],
            metrics_port=0,
            liveness_port=0,
            default_credentials_namespaces=["*"],
        )
        runtime = Runtime(settings)  # logs in with KUBECONFIG at its first request
        runtime.seen[queued_uid] = 1  # a handler of this process has it (e.g. waiting for a rate-limit slot)

        async def work(item: Work) -> None:
            await reconcile(runtime, item, logging.getLogger("test"))

        workers = asyncio.create_task(runtime.work.run(4, work))
        try:
            return await sweep_once(runtime, observe=True, nudge_min_age=0)
        finally:
            workers.cancel()
            await runtime.aclose()

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
        patch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", DEMO_ACCESS_KEY_ID)
        patch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", DEMO_ACCESS_KEY_SECRET)
        observed, nudged = asyncio.run(run())
    assert nudged == 1
    assert observed == 2  # queued and handled: looked at, nothing to do
    started = {
        n: kubectl.get_json("dsi", n).get("status", {}).get("startedGeneration")
        for n in ("never-seen", "queued", "handled", "gone")
    }
    assert started == {"never-seen": 1, "queued": None, "handled": None, "gone": None}
    # The one DataWorks call: never-seen's start. Nothing else was started or observed.
    assert [(r["action"], r["params"].get("FileId")) for r in emulator.requests()] == [("StartDISyncInstance", "100")]
    kubectl("patch", "dsi", "gone", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
