"""Scenario 5 (hostile answers): what the operator copies from DataWorks stays bounded and clean, and an answer too
big, too compressed, too slow or with an undocumented outcome costs neither memory nor a second start.

The emulator's hostile-answer faults (emulator/_hostile.py) against the operator as a process and the real API
server:

- over-long and dirty Data.Message/RequestId: Ready at the first attempt, status fields cut to the CRD's limits
  with the cut marker, no terminal escape in `kubectl get -o json` or in Events, one start;
- Data.Status "RUNNING" or "": not Ready on that answer (RetryScheduled, UnknownOutcome), then verified with
  GetDISyncInstanceInfo and Ready without a second start;
- a 50 MB body and a gzip bomb (400 MB inflated): ResponseTooLarge, the operator stays live and its memory stays
  within 20 MiB of what it was before (checked with VmRSS samples and VmHWM, the kernel's high-water mark);
- a body trickled at 0.5 s a byte: cut at DISYNC_CALL_TIMEOUT (CallTimeout), verified only once the start's lease
  has passed, Ready once the fault is off, one start.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import DEADLINE, assert_live, condition, dsi, scheduled_retries, wait_ready
from rel_helpers import FIRST_FILE, PROJECT, file_of, name_of, record_results

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for
from disync_operator.types import CUT, MESSAGE_LEN, REQUEST_ID_LEN

pytestmark = pytest.mark.cluster

START, INFO = "StartDISyncInstance", "GetDISyncInstanceInfo"
MIB = 1 << 20
RSS_SLACK = 20 * MIB
# Terminal escapes the cloud's text may carry, raw or as JSON escapes (kubectl prints control characters escaped).
ESCAPES = ("\x1b", "\x07", "\x9b")
ESCAPED = re.compile(r"\\u00(1b|07|9b)", re.IGNORECASE)


def create(kubectl: Kubectl, file_id: int) -> str:
    name = name_of(file_id)
    kubectl("create", "-f", "-", input=dsi(name, file_id=file_id, project_id=PROJECT))
    return name


def calls(emulator: EmulatorProcess, file_id: int, action: str | None = None) -> list[dict[str, Any]]:
    return [e for e in emulator.requests(action) if file_of(e) == file_id]


def assert_clean(text: str, where: str) -> None:
    """No terminal escape in `text`, neither raw nor JSON-escaped."""
    raw = [char for char in ESCAPES if char in text]
    assert not raw, f"{where}: {raw}"
    assert not ESCAPED.search(text), f"{where}: {ESCAPED.search(text)}"


# -- memory of the operator process ------------------------------------------------------------------------------


def memory(operator: OperatorProcess) -> tuple[int, int]:
    """(VmRSS, VmHWM) of the operator process in bytes: its resident memory now, and the most it ever had."""
    assert operator._proc is not None
    fields = {}
    for line in Path(f"/proc/{operator._proc.pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


class MemoryWatch:
    """Samples the operator's RSS whenever asked (each probe of a wait), and keeps the kernel's high-water mark."""

    def __init__(self, operator: OperatorProcess) -> None:
        self.operator = operator
        self.before, self.hwm_before = memory(operator)
        self.samples = [self.before]

    def sample(self) -> int:
        rss, _ = memory(self.operator)
        self.samples.append(rss)
        return rss

    def figures(self) -> dict[str, float]:
        after, hwm_after = memory(self.operator)
        # VmHWM only moves when RSS exceeds every earlier value: if it moved, that is the peak since `before`.
        peak = max(max(self.samples), after, hwm_after if hwm_after > self.hwm_before else 0)
        return {
            "rss_before_mib": round(self.before / MIB, 1),
            "rss_peak_mib": round(peak / MIB, 1),
            "rss_after_mib": round(after / MIB, 1),
            "hwm_before_mib": round(self.hwm_before / MIB, 1),
            "hwm_after_mib": round(hwm_after / MIB, 1),
            "samples": len(self.samples),
        }


# -- every version of the objects, as a watch sees them ----------------------------------------------------------


class History:
    """Every version of the namespace's DISyncInstances that `kubectl get --watch -o json` prints, so a state that
    lasts only until the next retry (tenths of a second) is seen however slowly this machine polls."""

    def __init__(self, kubectl: Kubectl) -> None:
        argv = [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", f"--namespace={kubectl.namespace}"]
        self._proc = subprocess.Popen(
            [*argv, "get", "disyncinstances", "--watch", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lock = threading.Lock()
        self._versions: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, name="dsi-watch", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        lines: list[str] = []
        for line in self._proc.stdout:
            lines.append(line)
            if line.rstrip("\n") == "}":  # the end of one pretty-printed object
                with self._lock:
                    self._versions.append(json.loads("".join(lines)))
                lines = []

    def versions(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [v for v in self._versions if v["metadata"]["name"] == name]

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()


@contextmanager
def history(kubectl: Kubectl) -> Iterator[History]:
    watch = History(kubectl)
    try:
        yield watch
    finally:
        watch.close()


def wait_message(
    kubectl: Kubectl, name: str, reason: str, fragment: str, probe: Callable[[], object] = lambda: None
) -> dict[str, Any]:
    """Wait until the Ready condition has `reason` and its message holds `fragment`; `probe` runs on every look."""

    def reached() -> dict[str, Any] | None:
        probe()
        obj: dict[str, Any] = kubectl.get_json("disyncinstance", name)
        cond = condition(obj)
        return obj if cond and cond["reason"] == reason and fragment in cond["message"] else None

    return wait_for(reached, timeout=DEADLINE, what=f"{name}: Ready reason {reason} with {fragment!r}")


def unix_time(value: str) -> float:
    """An RFC 3339 timestamp from status as unix seconds (the emulator's log uses them)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def call_seconds(operator: OperatorProcess, action: str) -> tuple[int, float]:
    """(calls, total seconds) of `action` from the operator's disync_dataworks_call_duration_seconds histogram."""
    found = {"count": 0.0, "sum": 0.0}
    for kind in found:
        match = re.search(
            rf'^disync_dataworks_call_duration_seconds_{kind}{{action="{action}"}} (\S+)$',
            operator.metrics(),
            re.MULTILINE,
        )
        if match:
            found[kind] = float(match.group(1))
    return int(found["count"]), found["sum"]


# -- the scenarios -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "dirty", "cut"),
    [
        pytest.param(10_000, False, True, id="long"),
        # Cleaned, the fields are still longer than status may hold (4096 and 256 characters).
        pytest.param(10_000, True, True, id="long-dirty"),
        pytest.param(200, True, False, id="short-dirty"),
    ],
)
def test_long_and_dirty_fields_give_a_bounded_clean_status_at_the_first_attempt(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    length: int,
    dirty: bool,
    cut: bool,
) -> None:
    operator = start_operator()
    emulator.set_faults(long_fields=length, long_fields_dirty=dirty, long_header_max=length)
    name = create(kubectl, FIRST_FILE)
    obj = wait_ready(kubectl, name)
    status = obj["status"]
    assert condition(obj)["reason"] == "Started"
    message, request_id = status["message"], status["requestId"]
    assert len(message) <= MESSAGE_LEN
    assert len(request_id) <= REQUEST_ID_LEN
    assert message.endswith(CUT) == cut, message[-40:]
    assert request_id.endswith(CUT) == cut, request_id[-40:]
    if dirty:
        # The cleaned text is what is left of the emulator's: its escapes and controls gone, the words kept.
        assert "red" in message
        assert "bell" in message
    # The first attempt: one start, nothing to verify, no retry.
    assert [(e["action"], e["code"]) for e in calls(emulator, FIRST_FILE)] == [(START, "success")]
    assert scheduled_retries(operator) == []
    # Nowhere a terminal escape: the object as kubectl prints it, and the Events (posted in the background).
    assert_clean(kubectl("get", "disyncinstance", name, "-o", "json"), "kubectl get -o json")

    def started_event() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = kubectl.get_json("events")["items"]
        return [e for e in items if e.get("reason") == "Started" and e["involvedObject"]["name"] == name]

    events = wait_for(started_event, timeout=DEADLINE, what="the Started event")
    assert_clean(kubectl("get", "events", "-o", "json"), "kubectl get events -o json")
    assert all(len(e["message"]) <= 1024 for e in events)
    assert_live(operator)
    print({"length": length, "dirty": dirty, "message_len": len(message), "request_id_len": len(request_id)})


@pytest.mark.parametrize("answer", ["RUNNING", ""])
def test_an_undocumented_start_outcome_is_verified_not_assumed(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    answer: str,
) -> None:
    emulator.set_faults(data_status=answer, actions=[START])
    with history(kubectl) as watch:
        # The watch must see the object before the operator acts on it: then it sees every version after.
        name = create(kubectl, FIRST_FILE)
        wait_for(lambda: watch.versions(name), timeout=DEADLINE, what="the watch to see the new object")
        operator = start_operator()
        obj = wait_ready(kubectl, name)
        version = obj["metadata"]["resourceVersion"]
        wait_for(
            lambda: any(v["metadata"]["resourceVersion"] == version for v in watch.versions(name)),
            timeout=DEADLINE,
            what="the watch to see the Ready version",
        )
        seen = [condition(v) for v in watch.versions(name)]
    readies = [c for c in seen if c is not None]
    first_true = next(i for i, c in enumerate(readies) if c["status"] == "True")
    # Before it was Ready, the answer made it not Ready: a retry, saying why.
    before = [c for c in readies[:first_true] if c["reason"] == "RetryScheduled" and "UnknownOutcome" in c["message"]]
    assert before, readies
    assert all(c["status"] == "False" for c in before)
    # Then verified, not started again.
    log = calls(emulator, FIRST_FILE)
    assert [e["action"] for e in log] == [START, INFO], log
    assert (log[0]["code"], log[0]["fault"]) == ("success", "data_status")
    assert obj["status"].get("unverifiedIntent") is None
    assert_live(operator)


BIG_BODY: dict[str, Any] = {"big_body_bytes": 50_000_000}
BIG_BODY_DECLARED: dict[str, Any] = {"big_body_bytes": 50_000_000, "declare_length": True}
GZIP_BOMB: dict[str, Any] = {"gzip_bomb_bytes": 400_000_000}
FULL = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.mark.parametrize(
    ("mode", "faults", "refusals"),
    [
        pytest.param("big_body", BIG_BODY, 3, id="big-body-50MB"),
        pytest.param("big_body", BIG_BODY_DECLARED, 3, id="big-body-50MB-declared"),
        pytest.param("gzip_bomb", GZIP_BOMB, 3, id="gzip-bomb-400MB"),
        # Many refusals in a row: nothing accumulates (the full runs record their figures).
        pytest.param("big_body", BIG_BODY, 15, id="big-body-50MB-full", marks=FULL),
        pytest.param("gzip_bomb", GZIP_BOMB, 15, id="gzip-bomb-400MB-full", marks=FULL),
    ],
)
def test_an_oversized_answer_is_refused_without_holding_it(
    kubectl: Kubectl,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
    mode: str,
    faults: dict[str, Any],
    refusals: int,
    request: pytest.FixtureRequest,
) -> None:
    operator = start_operator()
    # A first CR, answered normally: the process has made its first calls (client, pools, imports) before we measure.
    wait_ready(kubectl, create(kubectl, FIRST_FILE))
    watch = MemoryWatch(operator)
    emulator.set_faults(**faults)  # every action: the verifications get the same answer until the fault is off
    file_id = FIRST_FILE + 1
    name = create(kubectl, file_id)
    obj = wait_message(kubectl, name, "RetryScheduled", "ResponseTooLarge", watch.sample)
    assert condition(obj)["status"] == "False"

    def refused() -> list[dict[str, Any]] | None:
        watch.sample()
        assert_live(operator)
        ended = [e for e in calls(emulator, file_id) if e["answer_end"] is not None]
        return ended if len(ended) >= refusals else None

    answered = wait_for(refused, timeout=DEADLINE + 5 * refusals, interval=0.2, what=f"{refusals} refused answers")
    wait_message(kubectl, name, "RetryScheduled", "ResponseTooLarge", watch.sample)
    figures = watch.figures()
    assert_live(operator)

    emulator.set_faults()
    wait_ready(kubectl, name)
    log = calls(emulator, file_id)
    starts = [e for e in log if e["action"] == START]
    assert [(e["code"], e["fault"]) for e in starts] == [("success", mode)]  # one start, and it took effect
    assert all(e["action"] == INFO for e in log[1:]), [e["action"] for e in log]
    figures.update(
        {
            "faults": faults,
            "refused_answers": len(answered),
            "calls": len(log),
            "emulator_sent_bytes_max": max(e["sent_bytes"] or 0 for e in answered),
        }
    )
    print(figures)
    assert figures["rss_after_mib"] - figures["rss_before_mib"] <= RSS_SLACK / MIB, figures
    assert figures["rss_peak_mib"] - figures["rss_before_mib"] <= RSS_SLACK / MIB, figures
    if refusals >= 15:
        record_results(f"hostile_answers_{request.node.callspec.id}", figures)


def test_a_trickled_answer_is_cut_at_the_call_deadline_and_not_repeated_within_the_lease(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    call_timeout, lease = 2.0, 5.0
    # Each byte comes well within the read timeout: only the deadline over the whole call can end it.
    operator = start_operator(
        {
            "DISYNC_CALL_TIMEOUT": str(call_timeout),
            "DISYNC_READ_TIMEOUT": "1.5",
            "DISYNC_START_LEASE_SECONDS": str(lease),
        }
    )
    emulator.set_faults(trickle_seconds_per_byte=0.5)  # ~100 bytes: 50 s per answer, were it waited for
    name = create(kubectl, FIRST_FILE)
    began = time.monotonic()
    obj = wait_message(kubectl, name, "RetryScheduled", "CallTimeout")
    seconds_to_condition = time.monotonic() - began
    intent = obj["status"]["unverifiedIntent"]
    # A verification must come, and only after the lease: until then the start may still be in flight.
    wait_for(
        lambda: [e for e in calls(emulator, FIRST_FILE, INFO) if e["answer_end"] is not None],
        timeout=DEADLINE,
        what="a verification, cut too",
    )
    emulator.set_faults()
    ready = wait_ready(kubectl, name)
    log = calls(emulator, FIRST_FILE)
    starts = [e for e in log if e["action"] == START]
    assert len(starts) == 1, log
    assert (starts[0]["code"], starts[0]["fault"]) == ("success", "trickle")
    since = unix_time(intent["since"])
    first_verify = next(e for e in log if e["action"] == INFO)
    assert first_verify["time"] >= since + lease - 0.005, (first_verify["time"] - since, lease)
    trickled = [e for e in log if e["fault"] == "trickle"]
    assert all(e["answer_end"] == "client_gone" for e in trickled), trickled
    longest = max(e["answer_seconds"] for e in trickled)
    assert longest <= call_timeout + 1.0, longest
    start_calls, start_seconds = call_seconds(operator, START)
    assert start_calls == 1
    assert start_seconds <= call_timeout + 0.5
    assert condition(ready)["status"] == "True"
    assert_live(operator)
    print(
        {
            "seconds_to_call_timeout_condition": round(seconds_to_condition, 2),
            "longest_trickled_answer_seconds_emulator": longest,
            "start_call_seconds_operator": round(start_seconds, 3),
            "first_verification_after_intent_seconds": round(first_verify["time"] - since, 3),
            "trickled_answers": len(trickled),
            "calls": [(e["action"], e["fault"], e["answer_seconds"], e["sent_bytes"]) for e in log],
        }
    )
