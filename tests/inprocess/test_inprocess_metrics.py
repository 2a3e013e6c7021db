"""The metrics a reconcile leaves behind: result, duration, the work queue's counts and timings, DataWorks outcomes and
Ready by reason, read from the operator's own registry (what /metrics serves)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from inprocess_fakes import Fault
from inprocess_harness import REALTIME, Operator

from disync_operator.controller.runtime import KubeError, Source

Q = {"name": "disyncinstance"}
C = {"controller": "disyncinstance"}


def sample(operator: Operator, metric: str, **labels: str) -> float:
    return operator.rt.metrics.registry.get_sample_value(metric, labels) or 0.0


def total(operator: Operator, name: str) -> float:
    """The sum of a family's samples called `name`, over every label set."""
    return sum(s.value for family in operator.rt.metrics.registry.collect() for s in family.samples if s.name == name)


def results(operator: Operator, source: str = "event") -> dict[str, float]:
    found = {}
    for result in ("success", "error", "requeue", "requeue_after"):
        value = sample(operator, "disync_reconcile_total", **C, source=source, result=result)
        if value:
            found[result] = value
    return found


async def test_a_start_counts_one_successful_reconcile_and_its_queue_times(operator: Operator) -> None:
    operator.kube.create("orders", REALTIME)
    await operator.visit("orders")
    assert operator.ready("orders") == ("True", "Started")
    assert results(operator) == {"success": 1}
    assert sample(operator, "disync_reconcile_time_seconds_count", **C) == 1
    assert sample(operator, "disync_reconcile_errors_total", **C) == 0
    assert sample(operator, "disync_workqueue_adds_total", **Q) == 1
    assert sample(operator, "disync_workqueue_queue_duration_seconds_count", **Q) == 1
    assert sample(operator, "disync_workqueue_work_duration_seconds_count", **Q) == 1
    assert sample(operator, "disync_workqueue_retries_total", **Q) == 0
    assert sample(operator, "disync_workqueue_depth", **Q) == 0
    assert sample(operator, "disync_dataworks_calls_total", action="StartDISyncInstance", outcome="success") == 1
    assert sample(operator, "disync_instances", ready="True", reason="Started", lifecycle="") == 1
    # The process and Python collectors are in the operator's registry too.
    assert sample(operator, "process_resident_memory_bytes") > 0
    assert any(m.name == "python_info" for m in operator.rt.metrics.registry.collect())
    assert any(m.name == "python_gc_collections" for m in operator.rt.metrics.registry.collect())


async def test_a_retryable_dataworks_error_is_a_requeue_after_with_a_fixed_outcome(operator: Operator) -> None:
    operator.dataworks.fail_next("StartDISyncInstance", Fault(http_status=429, code="Throttling.User"))
    operator.kube.create("orders", REALTIME)
    delay = await operator.visit("orders")
    assert delay is not None
    assert results(operator) == {"requeue_after": 1}
    assert sample(operator, "disync_dataworks_calls_total", action="StartDISyncInstance", outcome="throttled") == 1
    assert total(operator, "disync_start_retries_total") == 1
    assert sample(operator, "disync_workqueue_retries_total", **Q) == 0  # a scheduled look, not a failed reconcile
    status, reason = operator.ready("orders")
    assert sample(operator, "disync_instances", ready=status, reason=reason, lifecycle="") == 1


async def test_a_stale_body_is_a_requeue_and_a_failed_write_an_error(
    operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = operator.kube.create("orders", REALTIME)
    operator.kube.edit("orders", labels={"team": "a"})  # the object moved on: the intent's precondition fails
    uid = stale["metadata"]["uid"]
    operator.rt.work.add(uid, stale, Source.EVENT)
    await asyncio.wait_for(operator.rt.work.settled([uid]), timeout=5)
    assert results(operator) == {"requeue": 1}
    assert sample(operator, "disync_workqueue_retries_total", **Q) == 1

    async def unavailable(*_: Any, **__: Any) -> dict[str, Any]:
        raise KubeError(503, "ServiceUnavailable", "the API server is shutting down")

    monkeypatch.setattr(operator.kube, "patch_status", unavailable)
    monkeypatch.setattr(operator.kube, "patch_metadata", unavailable)
    await operator.visit("orders")
    assert results(operator) == {"requeue": 1, "error": 1}
    assert sample(operator, "disync_reconcile_errors_total", **C) == 1
    assert sample(operator, "disync_workqueue_retries_total", **Q) == 2
    assert sample(operator, "disync_reconcile_time_seconds_count", **C) == 2


async def test_an_object_added_while_waiting_is_counted_once(operator: Operator) -> None:
    body = operator.kube.create("orders", REALTIME)
    uid = body["metadata"]["uid"]
    operator.rt.work.add(uid, body, Source.SWEEP)
    operator.rt.work.add(uid, body, Source.EVENT)  # still waiting (no worker has run yet): merged, not re-added
    await asyncio.wait_for(operator.rt.work.settled([uid]), timeout=5)
    assert sample(operator, "disync_workqueue_adds_total", **Q) == 1
    assert sample(operator, "disync_workqueue_queue_duration_seconds_count", **Q) == 1


async def test_an_intended_state_is_labelled_so_alerts_leave_it_alone(operator: Operator) -> None:
    operator.kube.create("orders", REALTIME)
    await operator.visit("orders")
    operator.kube.edit("orders", spec={**REALTIME, "suspend": True})
    await operator.visit("orders")
    assert operator.ready("orders") == ("False", "Suspended")
    assert sample(operator, "disync_instances", ready="False", reason="Suspended", lifecycle="suspended") == 1
    assert sample(operator, "disync_instances", ready="True", reason="Started", lifecycle="") == 0
    operator.kube.edit("orders", spec=REALTIME)
    await operator.visit("orders")
    assert sample(operator, "disync_instances", ready="False", reason="Suspended", lifecycle="suspended") == 0
    assert (
        sum(
            sample(operator, "disync_instances", ready=r, reason=operator.ready("orders")[1], lifecycle="")
            for r in ("True", "False")
        )
        == 1
    )


async def test_a_terminal_failure_is_counted(operator: Operator) -> None:
    bad = {k: v for k, v in {**REALTIME, "startParamJSON": '{"nope": 1}'}.items() if k != "startParam"}
    operator.kube.create("orders", bad)
    await operator.visit("orders")
    assert operator.ready("orders") == ("False", "InvalidSpec")
    assert sample(operator, "disync_terminal_reconcile_errors_total", controller="disyncinstance") == 1
    await operator.visit("orders", Source.REQUEUE)  # nothing new: not counted again
    assert sample(operator, "disync_terminal_reconcile_errors_total", controller="disyncinstance") == 1
