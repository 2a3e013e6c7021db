"""Exactly once between processes on the real API server: two spellings of one task, a handover between two
processes whose wall clocks disagree (libfaketime shifts one process's clock, as an NTP step on one node would), and a
leader whose Lease is deleted under it. The same rules in-process: tests/inprocess/test_inprocess_exactly_once.py."""

from __future__ import annotations

import datetime as dt
import glob
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from e2e_helpers import condition, dsi
from rel_helpers import (
    FIRST_FILE,
    SECRET_AK_ID,
    SECRET_AK_SECRET,
    assert_exactly_once,
    create_burst,
    name_of,
    record_results,
    wait_all_settled,
)

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_ID, EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster

LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 15.0, 10.0, 2.0
START_LEASE = 10.0  # the start intent's lease: what a process that takes over an unanswered intent waits
ELECTION = {
    "DISYNC_LEADER_ELECTION": "true",
    "DISYNC_LEADER_LEASE_DURATION": f"{LEASE_DURATION:g}",
    "DISYNC_LEADER_RENEW_DEADLINE": f"{RENEW_DEADLINE:g}",
    "DISYNC_LEADER_RETRY_PERIOD": f"{RETRY_PERIOD:g}",
    # Starts are answered after 3 s: a handover always finds some sent and not answered.
    "DISYNC_START_LEASE_SECONDS": f"{START_LEASE:g}",
    "DISYNC_CONNECT_TIMEOUT": "1",
    "DISYNC_READ_TIMEOUT": "5",
}
# The second process calls DataWorks with another AccessKey, so the emulator's log tells whose call each was.
SECOND_IDENTITY = {"ALIBABA_CLOUD_ACCESS_KEY_ID": SECRET_AK_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET_AK_SECRET}


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime is missing: `make test` installs Debian's libfaketime (hack/system-deps.sh)"
    return found[0]


def skewed(seconds: int) -> dict[str, str]:
    """The process's wall clock `seconds` off (its monotonic clock untouched, as after an NTP step)."""
    return {"LD_PRELOAD": libfaketime(), "FAKETIME": f"{seconds:+d}s", "DONT_FAKE_MONOTONIC": "1"}


def role(process: OperatorProcess) -> str | None:
    if not process.running:
        return None
    try:
        return str(process.readiness()["role"])
    except (httpx.HTTPError, ValueError):
        return None


def starts_sent(emulator: EmulatorProcess, files: list[int]) -> int:
    wanted = {str(f) for f in files}
    return sum(1 for e in emulator.requests("StartDISyncInstance") if e["params"].get("FileId") in wanted)


def intents_written(kubectl: Kubectl, files: list[int]) -> int:
    """CRs whose start intent is on the object: their start is being sent (the emulator logs a call once answered)."""
    wanted = {name_of(f) for f in files}
    items = kubectl.get_json("disyncinstances")["items"]
    return sum(
        1
        for o in items
        if o["metadata"]["name"] in wanted and "disync.dev/start-intent" in (o["metadata"].get("annotations") or {})
    )


# --- one task, one key -------------------------------------------------------------------------------------------


def test_two_spellings_of_one_task_start_it_once(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    """The README's sample (region cn-shanghai) beside the example without a region: the operator's endpoint
    (here the emulator's, as DISYNC_ENDPOINT) is where both go, so they are one task."""
    start_operator()
    kubectl("apply", "-f", "-", input=dsi("orders", file_id=FIRST_FILE, project_id=10000, region="cn-shanghai"))
    wait_for(lambda: (c := condition(kubectl.get_json("dsi", "orders"))) and c["status"] == "True", timeout=60)
    kubectl("apply", "-f", "-", input=dsi("orders-realtime", file_id=FIRST_FILE, project_id=10000))
    second = wait_for(
        lambda: (c := condition(kubectl.get_json("dsi", "orders-realtime"))) and c["reason"] == "Conflict" and c,
        timeout=60,
        what="the second spelling to be refused",
    )
    assert "orders" in second["message"]
    # Suspending the second does nothing to the task; deleting it neither.
    kubectl("patch", "dsi", "orders-realtime", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    kubectl("delete", "dsi", "orders-realtime", "--wait=true", "--timeout=60s")
    calls = [
        (e["action"], e["params"].get("FileId")) for e in emulator.requests() if e["action"] != "GetDISyncInstanceInfo"
    ]
    assert calls == [("StartDISyncInstance", str(FIRST_FILE))]
    assert condition(kubectl.get_json("dsi", "orders"))["status"] == "True"


# --- a handover between clocks that disagree ---------------------------------------------------------------------


def skewed_handover(
    kubectl: Kubectl,
    namespace: str,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    *,
    skew: int,
    how: str,
    count: int,
    first: int,
) -> dict[str, Any]:
    """One handover; the CRs of earlier rounds (files FIRST_FILE..first-1) are in the namespace too."""
    # DataWorks acts on a start 3 s after it arrived, and answers then: a handover finds starts that were sent and
    # will still take effect, whatever became of the process that sent them.
    emulator.set_faults(execution_ms=3000, actions=["StartDISyncInstance"])
    env = {**ELECTION, "DISYNC_LEADER_ELECTION_NAMESPACE": namespace}
    leader = start_operator(env)
    wait_for(lambda: role(leader) == "leader", timeout=60, what="the first process to lead")
    standby = start_operator({**env, **skewed(skew)})
    wait_for(lambda: role(standby) == "standby", timeout=60, what="the skewed process to stand by")
    clock = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"], env={**skewed(skew)}, capture_output=True, text=True
    )
    assert abs(float(clock.stdout) - time.time() - skew) < 5, "libfaketime did not shift the clock"

    files = list(range(first, first + count))
    create_burst(kubectl, files)
    wait_for(lambda: intents_written(kubectl, files) >= count // 3, timeout=120, what="starts to be sent")
    began = time.monotonic()
    leader.terminate() if how == "term" else leader.kill()
    wait_for(lambda: role(standby) == "leader", timeout=LEASE_DURATION + 30, interval=0.05, what="a takeover")
    took_over = time.monotonic() - began
    items = wait_all_settled(kubectl, first - FIRST_FILE + count, timeout=120)
    all_ready = time.monotonic() - began
    counts = assert_exactly_once(emulator, items)
    standby.terminate()  # it releases the Lease, so the next round's first process leads at once
    standby.wait(timeout=30)
    figures = {
        "skew_seconds": skew,
        "how": how,
        "crs": count,
        "starts": sum(counts[f] for f in files),
        "duplicate_starts": sum(n - 1 for n in counts.values() if n > 1),
        "takeover_seconds": round(took_over, 2),
        "all_ready_after_handover_seconds": round(all_ready, 2),
        "start_lease_seconds": START_LEASE,
    }
    assert figures["duplicate_starts"] == 0
    assert all(condition(o)["status"] == "True" for o in items)
    return figures


def test_a_handover_to_a_process_whose_clock_is_two_minutes_ahead_starts_nothing_twice(
    kubectl: Kubectl, namespace: str, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    figures = skewed_handover(
        kubectl, namespace, emulator, start_operator, skew=120, how="term", count=30, first=FIRST_FILE
    )
    print(figures)
    # What the skew costs: the sent, unanswered starts wait a whole start lease from the new leader's first sight.
    assert figures["all_ready_after_handover_seconds"] < 2 + START_LEASE + 30


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_skewed_handovers_both_ways(
    kubectl: Kubectl, namespace: str, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    runs = []
    first = FIRST_FILE
    for skew in (120, -120):
        for how in ("term", "kill"):
            runs.append(
                skewed_handover(kubectl, namespace, emulator, start_operator, skew=skew, how=how, count=60, first=first)
            )
            first += 60
    print(runs)
    record_results(
        "skewed_handover",
        {
            "runs": runs,
            "duplicate_starts": sum(r["duplicate_starts"] for r in runs),
            "median_all_ready_after_handover_seconds": statistics.median(
                r["all_ready_after_handover_seconds"] for r in runs
            ),
        },
    )


# --- a leader whose Lease is deleted -----------------------------------------------------------------------------


def lease_deleted_under_the_leader(
    kubectl: Kubectl,
    namespace: str,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    *,
    count: int,
    first: int,
) -> dict[str, Any]:
    emulator.set_faults(latency_ms=200, jitter_ms=200, actions=["StartDISyncInstance"])
    env = {**ELECTION, "DISYNC_LEADER_ELECTION_NAMESPACE": namespace, "DISYNC_QPS": "10"}
    leader = start_operator(env)
    wait_for(lambda: role(leader) == "leader", timeout=60, what="the first process to lead")
    standby = start_operator({**env, **SECOND_IDENTITY})
    wait_for(lambda: role(standby) == "standby", timeout=60, what="the second process to stand by")

    files = list(range(first, first + count))
    create_burst(kubectl, files)
    wait_for(lambda: starts_sent(emulator, files) >= count // 4, timeout=120, what="the burst to be starting")
    rounds_before = [e for e in emulator.requests() if e.get("access_key_id") == DEMO_ACCESS_KEY_ID]
    deleted = time.monotonic()
    kubectl("delete", "lease", "disync-operator", "-n", namespace)
    wait_for(lambda: role(standby) == "leader", timeout=30, interval=0.05, what="the standby to lead")
    wait_for(lambda: role(leader) != "leader", timeout=30, interval=0.05, what="the old leader to stop leading")
    old_stopped = time.monotonic() - deleted
    lease = kubectl.get_json("lease", "disync-operator", "-n", namespace)["spec"]
    acquired = dt.datetime.fromisoformat(lease["acquireTime"].replace("Z", "+00:00")).timestamp()
    assert leader.wait(timeout=30) == 1  # it lost the Lease: it exits, and the kubelet would restart it
    items = wait_all_settled(kubectl, first - FIRST_FILE + count, timeout=180)
    counts = assert_exactly_once(emulator, items)
    standby.terminate()
    standby.wait(timeout=30)
    seen = {e["seq"] for e in rounds_before}
    old_calls = [
        e for e in emulator.requests() if e.get("access_key_id") == DEMO_ACCESS_KEY_ID and e["seq"] not in seen
    ]
    late = [e["time"] - acquired for e in old_calls if e["time"] > acquired]
    figures = {
        "crs": count,
        "old_leader_stopped_leading_after_deletion_seconds": round(old_stopped, 2),
        "old_leader_calls_after_new_acquire": len(late),
        "old_leader_last_call_after_new_acquire_seconds": round(max(late), 3) if late else 0.0,
        "duplicate_starts": sum(n - 1 for n in counts.values() if n > 1),
    }
    # It acts until its next renewal finds the new holder (one retry period), never until the renew deadline.
    assert old_stopped <= RETRY_PERIOD + 1.5, figures
    assert figures["old_leader_last_call_after_new_acquire_seconds"] <= RETRY_PERIOD + 0.5, figures
    assert figures["duplicate_starts"] == 0
    return figures


def test_a_leader_whose_lease_is_deleted_stops_at_its_next_renewal(
    kubectl: Kubectl, namespace: str, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    print(lease_deleted_under_the_leader(kubectl, namespace, emulator, start_operator, count=40, first=FIRST_FILE))


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_lease_deletions_and_a_frozen_leader(
    kubectl: Kubectl, namespace: str, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    runs = [
        lease_deleted_under_the_leader(
            kubectl, namespace, emulator, start_operator, count=60, first=FIRST_FILE + 60 * i
        )
        for i in range(3)
    ]
    frozen = frozen_leader(kubectl, namespace, emulator, start_operator, first=FIRST_FILE + 180)
    figures = {
        "deletions": runs,
        "median_old_leader_stopped_seconds": statistics.median(
            r["old_leader_stopped_leading_after_deletion_seconds"] for r in runs
        ),
        "max_old_leader_last_call_after_new_acquire_seconds": max(
            r["old_leader_last_call_after_new_acquire_seconds"] for r in runs
        ),
        "frozen_leader": frozen,
    }
    print(figures)
    record_results("lease_loss", figures)


def frozen_leader(
    kubectl: Kubectl,
    namespace: str,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    *,
    first: int,
) -> dict[str, Any]:
    """SIGSTOP past the lease while reconciles are in flight, SIGCONT after the standby took over: the thawed process
    makes no DataWorks call (its last renewal is older than the renew deadline on its monotonic clock)."""
    import os
    import signal

    emulator.set_faults(latency_ms=500, actions=["StartDISyncInstance"])
    env = {**ELECTION, "DISYNC_LEADER_ELECTION_NAMESPACE": namespace, "DISYNC_QPS": "5"}
    leader = start_operator(env)
    wait_for(lambda: role(leader) == "leader", timeout=60, what="the first process to lead")
    standby = start_operator({**env, **SECOND_IDENTITY})
    wait_for(lambda: role(standby) == "standby", timeout=60, what="the second process to stand by")
    files = list(range(first, first + 30))
    create_burst(kubectl, files)
    wait_for(lambda: starts_sent(emulator, files) >= 5, timeout=120, what="the burst to be starting")
    os.kill(leader.pid, signal.SIGSTOP)
    frozen_at = time.time()
    wait_for(lambda: role(standby) == "leader", timeout=LEASE_DURATION + 30, interval=0.1, what="a takeover")
    os.kill(leader.pid, signal.SIGCONT)
    thawed_at = time.time()
    leader.wait(timeout=30)
    items = wait_all_settled(kubectl, first - FIRST_FILE + 30, timeout=180)
    counts = assert_exactly_once(emulator, items)
    after = [e for e in emulator.requests() if e.get("access_key_id") == DEMO_ACCESS_KEY_ID and e["time"] > thawed_at]
    assert after == [], json.dumps(after[:3])
    return {
        "frozen_seconds": round(thawed_at - frozen_at, 1),
        "calls_after_thaw": len(after),
        "duplicate_starts": sum(n - 1 for n in counts.values() if n > 1),
    }


# --- lost answers count ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("restart_policy", ["OnFailure"])
def test_lost_answers_of_a_failing_task_count_as_starts(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    restart_policy: str,
) -> None:
    """The task fails 0.3 s after every start and every start's answer is lost (performed, then the connection
    reset): OnFailure sends at most 1 + DISYNC_MAX_RESTARTS_PER_HOUR in the hour. (Never sends a start whose answer
    was lost again, as a network error: tests/inprocess/test_inprocess_exactly_once.py.)"""
    cap = 2
    emulator.fail(FIRST_FILE, times=None, run_seconds=0.3)
    emulator.set_faults(drop_start_response=100)
    start_operator({"DISYNC_MAX_RESTARTS_PER_HOUR": str(cap), "DISYNC_OBSERVE_INTERVAL": "2"})
    kubectl("apply", "-f", "-", input=dsi("flaky", file_id=FIRST_FILE, project_id=10000, restartPolicy=restart_policy))
    final = "NotRunning" if restart_policy == "Never" else "RestartLimitReached"
    began = time.monotonic()
    wait_for(
        lambda: (c := condition(kubectl.get_json("dsi", "flaky"))) and c["reason"] == final,
        timeout=120,
        what=f"the resource to say {final}",
    )
    settled_after = time.monotonic() - began
    # A while longer: nothing more may be sent (the sweep keeps looking at the task meanwhile).
    looks = len(emulator.requests("GetDISyncInstanceInfo"))
    wait_for(lambda: len(emulator.requests("GetDISyncInstanceInfo")) >= looks + 3, timeout=60, what="a few more looks")
    starts = len(emulator.requests("StartDISyncInstance"))
    status = kubectl.get_json("dsi", "flaky")["status"]
    restarts = status.get("restarts", 0)
    print(
        {"restart_policy": restart_policy, "starts": starts, "restarts": restarts, "seconds": round(settled_after, 1)}
    )
    assert starts == (1 if restart_policy == "Never" else 1 + cap)
    assert status.get("restarts", 0) == (0 if restart_policy == "Never" else cap)
