"""Scenario 3: about half of all DataWorks calls fail (500, 429, hangs, resets, 502 HTML, truncated bodies).

Every CR still converges with exactly one start; the calls per CR stay within what the backoff schedule allows for
the time it took; a 429's retry-after is honoured (the CR's next call comes no earlier).
"""

from __future__ import annotations

import itertools
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from e2e_helpers import DEADLINE, assert_backoff_schedule, assert_live, condition, scheduled_retries
from rel_helpers import (
    FAST,
    FIRST_FILE,
    assert_exactly_once,
    backoff_bound,
    calls_by_file,
    create_burst,
    file_of,
    min_delays,
    record_results,
    summary,
    wait_all_settled,
)

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster

# The rates are exclusive per request (one draw); the token bucket throttles on top of them.
FAULTS: dict[str, Any] = {
    "seed": 20240607,
    "error_rate": 0.15,
    "malformed_rate": 0.08,
    "truncated_rate": 0.08,
    "hang_rate": 0.06,
    "reset_rate": 0.06,
    "hang_seconds": 2,
    "throttle_qps": 15,
    "throttle_burst": 5,
}

RETRY_AFTER = re.compile(r"\(retry after ([0-9.e+-]+)s\)")
REQUEST_ID = re.compile(r"RequestId:? ([0-9A-Fa-f-]{8,})")


def retry_afters(operator: OperatorProcess) -> dict[str, float]:
    """RequestId of each throttled call -> the retry-after the operator read from it (from its own log)."""
    found: dict[str, float] = {}
    for line in operator.log().splitlines():
        if "Throttling" not in line:
            continue
        wait, rid = RETRY_AFTER.search(line), REQUEST_ID.search(line)
        if wait and rid:
            found[rid.group(1)] = float(wait.group(1))
    return found


def check_retry_after(emulator: EmulatorProcess, operator: OperatorProcess) -> int:
    """Every 429 with x-acs-retry-after: the same CR's next call arrives no earlier. Returns how many were checked."""
    waits = retry_afters(operator)
    checked = 0
    for entries in calls_by_file(emulator).values():
        for entry, following in itertools.pairwise(entries):
            if entry["http_status"] != 429 or entry["request_id"] not in waits:
                continue
            gap = following["time"] - entry["time"]
            assert gap >= waits[entry["request_id"]] - 0.005, (entry, following, waits[entry["request_id"]])
            checked += 1
    return checked


@pytest.mark.parametrize(
    "count",
    [
        pytest.param(30, id="bounded"),
        pytest.param(300, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_half_the_calls_fail_and_everything_converges_within_backoff(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    count: int,
) -> None:
    began = time.monotonic()
    operator = start_operator()
    emulator.set_faults(**FAULTS)
    create_burst(kubectl, range(FIRST_FILE, FIRST_FILE + count))
    items = wait_all_settled(kubectl, count, timeout=150 + count * 1.0)
    emulator.set_faults()
    assert_live(operator)

    assert all(condition(o)["status"] == "True" for o in items), [condition(o) for o in items if not settled_ok(o)]
    counts = assert_exactly_once(emulator, items)

    log = emulator.requests()
    outcomes = Counter(e["fault"] or ("ok" if e["http_status"] == 200 else str(e["http_status"])) for e in log)
    failed = sum(1 for e in log if e["fault"] is not None)
    assert failed / len(log) >= 0.3, outcomes  # the faults really bit

    # Calls per CR are bounded by the backoff schedule over the time that CR took.
    per_cr = calls_by_file(emulator)
    over = []
    for file_id, entries in per_cr.items():
        bound, elapsed = backoff_bound(entries, FAST)
        if len(entries) > bound:
            over.append((file_id, len(entries), bound, round(elapsed, 2), [e["action"][:5] for e in entries]))
    assert not over, over
    assert all(file_of(e) is not None for e in log)

    checked = check_retry_after(emulator, operator)
    if outcomes.get("throttle", 0) >= 5:
        assert checked > 0

    calls = [len(entries) for entries in per_cr.values()]
    figures = {
        "crs": count,
        "calls": len(log),
        "failed_call_fraction": round(failed / len(log), 3),
        "outcomes": dict(outcomes),
        "calls_per_cr": summary(calls),
        "attempts_per_cr": summary([o["status"]["attempts"] for o in items]),
        "retry_after_checked": checked,
        "duplicate_starts": sum(n - 1 for n in counts.values() if n > 1),
        "seconds": round(time.monotonic() - began, 1),
        "faults": FAULTS,
    }
    print(figures)
    if count >= 300:
        record_results("cloud_faults", figures)


def settled_ok(obj: dict[str, Any]) -> bool:
    cond = condition(obj)
    return cond is not None and cond["status"] == "True"


def test_retry_after_above_the_backoff_is_honoured(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    """A slow token bucket: retry-after (up to 4 s) dwarfs the first backoff steps (0.1-0.2 s).

    A throttled call's retry-after is the time left until the next token, so it exceeds 1 s only for a call arriving
    within 3 s of the one that took the last token: a margin that holds even when a loaded machine spreads the three
    first starts (at 0.4 tokens/s, 2.5 s per token, a spread of 1.5 s sufficed to miss it)."""
    operator = start_operator()
    emulator.set_faults(throttle_qps=0.25, throttle_burst=1)
    create_burst(kubectl, range(FIRST_FILE, FIRST_FILE + 3))
    items = wait_all_settled(kubectl, 3, timeout=120)
    emulator.set_faults()
    assert_exactly_once(emulator, items)
    throttled = [e for e in emulator.requests() if e["http_status"] == 429]
    assert throttled
    assert check_retry_after(emulator, operator) == len(throttled)
    assert max(retry_afters(operator).values()) > 1.0


def test_failing_verifications_back_off_exponentially(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    """After an ambiguous start the operator verifies with GetDISyncInstanceInfo; while that keeps failing, the
    verifications must back off like any other attempt rather than repeat at the first step forever."""
    operator = start_operator()
    # The start is performed but its answer lost; every verification then fails with a 500.
    emulator.set_faults(drop_start_response=1, error_rate=1.0, actions=["StartDISyncInstance", "GetDISyncInstanceInfo"])
    create_burst(kubectl, [FIRST_FILE])
    verifications = wait_for(
        lambda: (found := emulator.requests("GetDISyncInstanceInfo")) and len(found) >= 6 and found,
        timeout=DEADLINE,
        what="six failed verifications",
    )
    emulator.set_faults()
    items = wait_all_settled(kubectl, 1, timeout=DEADLINE)
    assert_exactly_once(emulator, items)
    assert condition(items[0])["status"] == "True"
    # Each failed verification is a failed attempt: the attempt count goes on (one scheduled retry per failure,
    # numbered 1, 2, 3, ...), and each delay lies in its attempt's band [step/2, step], steps doubling up to the cap.
    # Read from the operator's log: a ratio of the gaps between calls also measures how long this machine took for
    # the calls and status writes in between.
    retries = scheduled_retries(operator)
    assert len(retries) >= 7, retries  # the lost start's, then one per failed verification (six or more)
    assert [n for n, _ in retries] == list(range(1, len(retries) + 1)), retries
    assert_backoff_schedule(retries, FAST)
    # And honoured: the k-th wait between verifications is at least the shortest wait of attempt k (0.1, 0.2, 0.4,
    # 0.8, 1.5 s with these settings): four steps on, its floor is 15 times the first. A slow machine only lengthens
    # the gaps (the emulator stamps a call when it arrives), so no machine is too slow for this.
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(verifications[:6])]
    floors = min_delays(*(float(FAST[f"DISYNC_BACKOFF_{k}"]) for k in ("BASE", "FACTOR", "CAP")))[: len(gaps)]
    assert all(gap >= floor - 0.005 for gap, floor in zip(gaps, floors, strict=True)), (gaps, floors)
