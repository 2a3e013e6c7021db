"""Helpers for the reliability suite: registries with many tasks, bursts of CRs, start/call accounting, figures."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import yaml
from e2e_helpers import condition, dsi

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    EmulatorProcess,
)
from disync_operator.devstack.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "reliability.json"

PROJECT = 10000
FIRST_FILE = 1000

# Fast policy (as in tests/integration) and no periodic observation: every DataWorks call a test counts is then
# part of starting a CR, which is what the exactly-once and backoff assertions are about.
FAST = {
    "DISYNC_BACKOFF_BASE": "0.2",
    "DISYNC_BACKOFF_FACTOR": "2",
    "DISYNC_BACKOFF_CAP": "3",
    "DISYNC_OBSERVE_INTERVAL": "0",
    "DISYNC_RESYNC_INTERVAL": "3",
    "DISYNC_START_LEASE_SECONDS": "3",
    "DISYNC_LOG_FORMAT": "json",
    "DISYNC_QPS": "200",
    "DISYNC_MAX_CONCURRENCY": "32",
    "DISYNC_CONNECT_TIMEOUT": "1",
    "DISYNC_READ_TIMEOUT": "1",
}

# Known secret values: the suite scans every output for them.
SECRET_AK_ID = "LTAIsecretKeyFromSecret"
SECRET_AK_SECRET = "from-a-kubernetes-secret-5e1c7a"
STS_AK_ID = "STS.LTAIstsTemporaryKey"
STS_AK_SECRET = "sts-temporary-secret-9b3f02"
STS_TOKEN = "CAIS-sts-security-token-4d8e61f0a2"
OPERATOR_AK_ID = DEMO_ACCESS_KEY_ID
OPERATOR_AK_SECRET = DEMO_ACCESS_KEY_SECRET

TERMINAL_REASONS = frozenset(
    {
        "StartFailed",
        "InvalidSpec",
        "InvalidParameter",
        "AccessDenied",
        "AuthenticationFailed",
        "CredentialsUnavailable",
    }
)


def write_emulator_config(path: Path, *, count: int, first: int = FIRST_FILE) -> Path:
    config = {
        "access_keys": [
            {"id": OPERATOR_AK_ID, "secret": OPERATOR_AK_SECRET, "projects": [PROJECT]},
            {"id": SECRET_AK_ID, "secret": SECRET_AK_SECRET, "projects": "*"},
            {"id": STS_AK_ID, "secret": STS_AK_SECRET, "security_token": STS_TOKEN, "projects": "*"},
        ],
        "projects": [
            {
                "id": PROJECT,
                "tasks": [
                    {"file_id": f, "task_type": "DI_REALTIME", "name": f"rt_{f}"} for f in range(first, first + count)
                ],
            }
        ],
        "timings": {"start_wait_seconds": 0.2, "stop_seconds": 0.1, "stop_state": "PAUSE"},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def name_of(file_id: int) -> str:
    return f"dsi-{file_id}"


def create_burst(kubectl: Kubectl, file_ids: range | list[int], **spec: Any) -> None:
    """Create one CR per file id in a single kubectl call (a List), as a GitOps sync of many objects would."""
    items = [json.loads(dsi(name_of(f), file_id=f, project_id=PROJECT, **spec)) for f in file_ids]
    kubectl("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def list_dsi(kubectl: Kubectl) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.get_json("disyncinstances")["items"]
    return items


def settled(obj: dict[str, Any]) -> bool:
    """Ready for the current generation, or terminally failed for it."""
    cond = condition(obj)
    if cond is None or cond.get("observedGeneration") != obj["metadata"]["generation"]:
        return False
    return cond["status"] == "True" or cond["reason"] in TERMINAL_REASONS


def wait_all_settled(kubectl: Kubectl, expected: int, timeout: float) -> list[dict[str, Any]]:
    def probe() -> list[dict[str, Any]] | None:
        items = list_dsi(kubectl)
        return items if len(items) == expected and all(settled(o) for o in items) else None

    try:
        return wait_for(probe, timeout=timeout, interval=1.0, what=f"{expected} DISyncInstances to settle")
    except AssertionError:
        items = list_dsi(kubectl)
        stuck = [
            (o["metadata"]["name"], condition(o), o["metadata"].get("finalizers"), o["metadata"].get("annotations"))
            for o in items
            if not settled(o)
        ]
        raise AssertionError(f"{len(stuck)} of {len(items)} not settled, e.g. {stuck[:3]}") from None


def file_of(entry: dict[str, Any]) -> int | None:
    raw = entry.get("params", {}).get("FileId")
    return int(raw) if raw is not None and str(raw).isdigit() else None


def successful_starts(emulator: EmulatorProcess) -> Counter[int]:
    """StartDISyncInstance calls that took effect, per FileId (a dropped or truncated answer still took effect)."""
    counts: Counter[int] = Counter()
    for entry in emulator.requests("StartDISyncInstance"):
        file_id = file_of(entry)
        if entry.get("code") == "success" and file_id is not None:
            counts[file_id] += 1
    return counts


def assert_exactly_once(emulator: EmulatorProcess, items: list[dict[str, Any]]) -> Counter[int]:
    """At most one successful start per CR generation; exactly one for every Ready CR (one generation each)."""
    counts = successful_starts(emulator)
    duplicates = {f: n for f, n in counts.items() if n > 1}
    assert not duplicates, f"duplicate starts: {duplicates}"
    for obj in items:
        file_id = obj["spec"]["fileId"]
        cond = condition(obj)
        if cond is not None and cond["status"] == "True":
            assert counts[file_id] == 1, (obj["metadata"]["name"], counts[file_id])
    return counts


def calls_by_file(emulator: EmulatorProcess) -> dict[int, list[dict[str, Any]]]:
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for entry in emulator.requests():
        file_id = file_of(entry)
        if file_id is not None:
            grouped[file_id].append(entry)
    for entries in grouped.values():
        entries.sort(key=lambda e: e["seq"])
    return grouped


def min_delays(base: float, factor: float, cap: float, jitter: float = 0.5) -> list[float]:
    """The shortest wait before attempt n+1 (n = 1, 2, ...): equal jitter keeps at least (1 - jitter) of a step."""
    out, n = [], 1
    while True:
        step = min(cap, base * factor ** (n - 1))
        out.append(step * (1 - jitter))
        if step >= cap and len(out) > 64:
            return out
        n += 1


def max_attempts(elapsed: float, base: float, factor: float, cap: float) -> int:
    """How many attempts the backoff schedule allows within `elapsed` seconds (the first one is free)."""
    total, attempts = 0.0, 1
    delays = min_delays(base, factor, cap)
    while True:
        delay = delays[min(attempts - 1, len(delays) - 1)]
        if total + delay > elapsed:
            return attempts
        total += delay
        attempts += 1


def backoff_bound(entries: list[dict[str, Any]], env: dict[str, str]) -> tuple[int, float]:
    """Upper bound on calls for one CR from its first to its last call: two calls (verify + start) per attempt."""
    elapsed = entries[-1]["time"] - entries[0]["time"] if entries else 0.0
    base, factor, cap = (float(env[f"DISYNC_BACKOFF_{k}"]) for k in ("BASE", "FACTOR", "CAP"))
    return 2 * max_attempts(elapsed, base, factor, cap), elapsed


def scan_for(haystack: str, secrets_: dict[str, str]) -> list[str]:
    """Names of the secrets found in `haystack`, raw or in any base64 form (std/url-safe, any alignment)."""
    import base64

    found = []
    for label, value in secrets_.items():
        raw = value.encode()
        forms = {value}
        for shift in range(3):
            # A value embedded in a larger encoded blob appears as the encoding of its aligned middle part.
            chunk = raw[shift:]
            chunk = chunk[: len(chunk) - len(chunk) % 3]
            if len(chunk) >= 12:
                forms.add(base64.b64encode(chunk).decode())
                forms.add(base64.urlsafe_b64encode(chunk).decode())
        forms.add(base64.b64encode(raw).decode().rstrip("="))
        if any(form in haystack for form in forms):
            found.append(label)
    return found


def record_results(section: str, figures: dict[str, Any]) -> None:
    """Merge one scenario's figures into bench/results/reliability.json (only the slow, full runs call this)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    lock_path = RESULTS.with_suffix(".lock")
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data: dict[str, Any] = {}
        with contextlib.suppress(FileNotFoundError, ValueError):
            data = json.loads(RESULTS.read_text())
        data[section] = figures
        tmp = RESULTS.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, RESULTS)
    with contextlib.suppress(FileNotFoundError):
        lock_path.unlink()


def summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"max": 0, "mean": 0.0}
    return {"max": max(values), "mean": round(sum(values) / len(values), 2), "min": min(values)}


def ceil_div(a: int, b: int) -> int:
    return math.ceil(a / b)
