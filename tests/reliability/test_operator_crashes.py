"""Scenario 1: the operator is SIGKILLed again and again while a burst of CRs is being started.

SIGKILL means no cleanup and no final patches; the kill lands right after a StartDISyncInstance reached the
emulator, i.e. inside the window between the recorded start intent and the status write. Afterwards every CR must be
Ready and the emulator must have performed exactly one start per CR generation.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from e2e_helpers import assert_live, condition
from rel_helpers import (
    FIRST_FILE,
    assert_exactly_once,
    calls_by_file,
    create_burst,
    record_results,
    summary,
    wait_all_settled,
)

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster


def _batches(file_ids: list[int], parts: int) -> list[list[int]]:
    size = -(-len(file_ids) // parts)
    return [file_ids[i : i + size] for i in range(0, len(file_ids), size)]


@pytest.mark.parametrize(
    ("count", "kills"),
    [
        pytest.param(30, 4, id="bounded"),
        pytest.param(500, 20, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_sigkill_during_burst_loses_nothing_and_starts_once(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    count: int,
    kills: int,
) -> None:
    began = time.monotonic()
    # A start takes 100-300 ms, so a kill right after it reached the emulator lands between call and status write.
    emulator.set_faults(latency_ms=100, jitter_ms=200, actions=["StartDISyncInstance"])
    file_ids = list(range(FIRST_FILE, FIRST_FILE + count))
    batches = _batches(file_ids, kills + 1)
    assert len(batches) == kills + 1
    operator = start_operator()
    survived = 0
    for index, batch in enumerate(batches):
        create_burst(kubectl, batch)
        if index == len(batches) - 1:
            break
        seen = len(emulator.requests("StartDISyncInstance"))
        wait_for(
            lambda seen=seen: len(emulator.requests("StartDISyncInstance")) > seen,
            timeout=120,
            what="a start in flight to kill the operator in",
        )
        operator.kill()
        survived += 1
        operator = start_operator()

    items = wait_all_settled(kubectl, count, timeout=120 + count * 1.5)
    not_ready = [(o["metadata"]["name"], condition(o)) for o in items if condition(o)["status"] != "True"]
    assert not not_ready, not_ready
    counts = assert_exactly_once(emulator, items)
    assert sum(counts.values()) == count
    assert_live(operator)

    calls = [len(entries) for entries in calls_by_file(emulator).values()]
    verified = sum(1 for o in items if "not started again" in condition(o)["message"])
    figures = {
        "crs": count,
        "kills_survived": survived,
        "successful_starts": sum(counts.values()),
        "duplicate_starts": sum(n - 1 for n in counts.values() if n > 1),
        "crs_not_ready": len(not_ready),
        "starts_verified_not_repeated": verified,
        "calls_per_cr": summary(calls),
        "seconds": round(time.monotonic() - began, 1),
    }
    print(figures)
    if count >= 500:
        record_results("operator_crashes", figures)
