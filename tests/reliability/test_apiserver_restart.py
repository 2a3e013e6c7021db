"""Scenario 2: the API server goes away mid-burst and comes back on the same etcd.

Handlers are in flight while it is down (a start reached DataWorks but its status write fails); the operator must
reconnect on its own, leave no CR behind and start none twice.
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
    record_results,
    summary,
    wait_all_settled,
)

from disync_operator.devstack.controlplane import ControlPlane
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize(
    ("count", "restarts"),
    [
        pytest.param(30, 1, id="bounded"),
        pytest.param(200, 3, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_apiserver_restart_mid_burst(
    control_plane: ControlPlane,
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    count: int,
    restarts: int,
) -> None:
    began = time.monotonic()
    # Starts take 300-600 ms: some are always in flight when the API server disappears.
    emulator.set_faults(latency_ms=300, jitter_ms=300, actions=["StartDISyncInstance"])
    operator = start_operator()
    file_ids = list(range(FIRST_FILE, FIRST_FILE + count))
    size = -(-count // (restarts + 1))
    batches = [file_ids[i : i + size] for i in range(0, count, size)]
    outage_errors = 0
    for index, batch in enumerate(batches):
        create_burst(kubectl, batch)
        if index == len(batches) - 1:
            break
        seen = len(emulator.requests("StartDISyncInstance"))
        wait_for(
            lambda seen=seen: len(emulator.requests("StartDISyncInstance")) > seen + 2,
            timeout=120,
            what="starts in flight",
        )
        mark = len(operator.log())
        try:
            control_plane.stop_apiserver()
            # The operator notices: in-flight handlers fail to write status, the watch breaks.
            wait_for(lambda mark=mark: len(operator.log()) > mark, timeout=DEADLINE, what="the operator to notice")
            assert operator.running
        finally:
            control_plane.start_apiserver()
        outage_errors += operator.log()[mark:].count('"levelname": "ERROR"') + operator.log()[mark:].count(
            '"level": "error"'
        )

    items = wait_all_settled(kubectl, count, timeout=180 + count * 1.5)
    assert all(condition(o)["status"] == "True" for o in items)
    counts = assert_exactly_once(emulator, items)
    assert sum(counts.values()) == count
    assert_live(operator)

    calls = [len(entries) for entries in calls_by_file(emulator).values()]
    figures = {
        "crs": count,
        "apiserver_restarts": restarts,
        "duplicate_starts": sum(n - 1 for n in counts.values() if n > 1),
        "starts_verified_not_repeated": sum(1 for o in items if "not started again" in condition(o)["message"]),
        "calls_per_cr": summary(calls),
        "seconds": round(time.monotonic() - began, 1),
    }
    print(figures)
    if count >= 200:
        record_results("apiserver_restart", figures)
