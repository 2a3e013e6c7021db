"""Scenario 4: a Deployment rollout. The new operator process starts before the old one goes, so for a while two
processes (no peering: both standalone, as with a surge of one) reconcile the same CRs. No start may happen twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from e2e_helpers import DEADLINE, assert_live, condition
from rel_helpers import (
    FIRST_FILE,
    assert_exactly_once,
    calls_by_file,
    create_burst,
    list_dsi,
    record_results,
    settled,
    summary,
    wait_all_settled,
)

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(
    ("count", "rollouts"),
    [
        pytest.param(40, 2, id="bounded"),
        pytest.param(
            300,
            6,
            id="full",
            marks=[
                pytest.mark.slow,
                pytest.mark.timeout(1800),
                # This test found CRs created while the surviving process was starting that its kopf watch never
                # delivered (no status, no timer) until a restart; the operator's periodic resync now nudges them.
            ],
        ),
    ],
)
def test_overlapping_operator_processes_start_each_cr_once(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    count: int,
    rollouts: int,
) -> None:
    began = time.monotonic()
    emulator.set_faults(latency_ms=100, jitter_ms=300, actions=["StartDISyncInstance"])
    # A modest client-side rate limit, as in production: starts queue locally after their intent is recorded.
    env = {"DISYNC_QPS": "20"}
    old = start_operator(env)
    file_ids = list(range(FIRST_FILE, FIRST_FILE + count))
    parts = 2 * rollouts + 1
    size = -(-count // parts)
    batches = [file_ids[i : i + size] for i in range(0, count, size)]
    assert len(batches) == parts

    def starting(batch: list[int], more_than: int = 0) -> bool:
        wanted = {str(f) for f in batch}
        calls = emulator.requests("StartDISyncInstance")
        return sum(1 for e in calls if e["params"].get("FileId") in wanted) > more_than

    overlaps = 0
    for rollout in range(rollouts):
        alone, raced = batches[2 * rollout], batches[2 * rollout + 1]
        create_burst(kubectl, alone)
        wait_for(lambda alone=alone: starting(alone), timeout=120, what="the old operator to be starting")
        new = start_operator(env)  # surge: both run
        # Both processes see this batch arrive and race to start it.
        create_burst(kubectl, raced)
        wait_for(lambda raced=raced: starting(raced, 2), timeout=120, what="the raced batch to be starting")
        overlaps += 1
        if rollout % 2 == 0:
            assert old.stop(timeout=DEADLINE) == 0  # graceful: SIGTERM, as a rollout does (its grace: 60 s, not 20)
        else:
            old.kill()  # or the old pod is lost
        old = new
    create_burst(kubectl, batches[-1])

    # Without any further event, every CR must settle. If some were left behind (kopf missed their events),
    # count them, then restart the survivor (its resume pass lists everything) so exactly-once can still be checked.
    # The first deadline is the generous one: what it separates is "never handled" from "handled", not fast from slow.
    left_behind: list[str] = []
    try:
        items = wait_all_settled(kubectl, count, timeout=120 + count * 0.2)
    except AssertionError:
        left_behind = [o["metadata"]["name"] for o in list_dsi(kubectl) if not settled(o)]
        old.kill()
        old = start_operator(env)
        items = wait_all_settled(kubectl, count, timeout=60 + count * 0.2)
    assert all(condition(o)["status"] == "True" for o in items)
    counts = assert_exactly_once(emulator, items)
    assert sum(counts.values()) == count
    assert_live(old)

    calls = [len(entries) for entries in calls_by_file(emulator).values()]
    figures = {
        "crs": count,
        "overlapping_rollouts": overlaps,
        "duplicate_starts": sum(n - 1 for n in counts.values() if n > 1),
        "crs_left_behind_until_restart": len(left_behind),
        "calls_per_cr": summary(calls),
        "seconds": round(time.monotonic() - began, 1),
    }
    print(figures)
    if count >= 300:
        record_results("rolling_update", figures)
    assert not left_behind, f"CRs never handled while two standalone operators overlapped: {left_behind}"
