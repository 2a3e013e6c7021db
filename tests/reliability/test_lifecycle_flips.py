"""Suspend/resume flips with the operator SIGKILLed after each call: the calls alternate and never double.

Each flip is a spec change (`suspend: true`, then `false`, ...). As soon as its StopDISyncInstance or
StartDISyncInstance has taken effect in the emulator, the operator is SIGKILLed: the emulator trickles the answer out
over a second or so, so no status write has recorded the call, and the next process finds a stop or start intent with
no known outcome. It must wait that call's lease out and never send it twice, nor start what a stop in flight would
undo.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from e2e_helpers import assert_live, condition, dsi
from rel_helpers import FIRST_FILE, PROJECT, name_of, record_results

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster

START, STOP = "StartDISyncInstance", "StopDISyncInstance"


def start_stop_calls(emulator: EmulatorProcess, file_id: int) -> list[dict[str, Any]]:
    entries = [e for e in emulator.requests() if e["params"].get("FileId") == str(file_id)]
    return sorted((e for e in entries if e["action"] in (START, STOP)), key=lambda e: e["seq"])


def event_reconciles(operator: OperatorProcess) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("disync_reconcile_total{") and 'source="event"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.mark.parametrize(
    "flips",
    [
        pytest.param(5, id="bounded"),
        pytest.param(20, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_suspend_resume_flips_with_operator_kills_alternate_and_never_double(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess], flips: int
) -> None:
    began = time.monotonic()
    # An answer of about 95 bytes, a byte every 15 ms: the kill lands after the call took effect, while its answer is
    # on its way (within the operator's 2 s call deadline here).
    emulator.set_faults(trickle_seconds_per_byte=0.015, actions=[START, STOP])
    file_id = FIRST_FILE
    name = name_of(file_id)
    operator = start_operator()
    kubectl.apply(dsi(name, file_id=file_id, project_id=PROJECT))
    expected = [START]

    unanswered = 0  # kills that left the call's intent with no recorded outcome

    def killed_once_the_call_is_in(what: str) -> OperatorProcess:
        nonlocal unanswered
        wait_for(
            lambda: len(start_stop_calls(emulator, file_id)) >= len(expected), timeout=120, what=f"the {what} call"
        )
        operator.kill()
        obj = kubectl.get_json("dsi", name)
        key, answered = (
            ("stop-intent", "answeredStopIntent") if expected[-1] == STOP else ("start-intent", "answeredIntent")
        )
        intent = json.loads(obj["metadata"]["annotations"][f"disync.dev/{key}"])
        unanswered += intent["id"] != obj.get("status", {}).get(answered)
        return start_operator()

    operator = killed_once_the_call_is_in("first start")
    for flip in range(flips):
        suspend = flip % 2 == 0
        kubectl("patch", "dsi", name, "--type=merge", "-p", json.dumps({"spec": {"suspend": suspend}}))
        expected.append(STOP if suspend else START)
        operator = killed_once_the_call_is_in(f"flip {flip + 1}")

    generation = 1 + flips
    reason = {"Suspended"} if flips % 2 else {"Started", "Running"}

    def settled() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.get_json("dsi", name)
        cond = condition(obj)
        done = cond is not None and cond["observedGeneration"] == generation and cond["reason"] in reason
        return obj if done else None

    obj = wait_for(settled, timeout=120, what=f"generation {generation} to settle")
    # One more process, which looks at the object once more: it calls nothing either.
    operator.kill()
    operator = start_operator()
    wait_for(lambda: event_reconciles(operator) >= 1, timeout=60, what="the last process to reconcile it")
    assert_live(operator)

    calls = start_stop_calls(emulator, file_id)
    assert [c["action"] for c in calls] == expected  # alternating, one call per flip, never two
    assert all(c["code"] == "success" for c in calls)
    status = obj["status"]
    assert "unverifiedIntent" not in status
    assert "unverifiedStopIntent" not in status
    assert unanswered >= (flips + 1) // 2, unanswered  # most kills landed inside the window that matters
    figures = {
        "flips": flips,
        "kills": flips + 2,
        "kills_before_the_outcome_was_recorded": unanswered,
        "starts": expected.count(START),
        "stops": expected.count(STOP),
        "duplicate_calls": len(calls) - len(expected),
        "seconds": round(time.monotonic() - began, 1),
    }
    print(figures)
    if flips >= 20:
        record_results("lifecycle_flips", figures)
