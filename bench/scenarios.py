"""The four measurements. Each returns a plain dict that goes into latest.json as it is."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

from bench.harness import (
    CpuMeter,
    Kube,
    RequestMeter,
    Stack,
    Tracker,
    cr_body,
    create_all,
    operator_pid,
    rss_bytes,
)
from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.dataworks import (
    ClientOptions,
    DataWorksClient,
    StartDISyncInstanceRequest,
    StaticCredentialsProvider,
    TaskType,
)
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, OperatorProcess

MIB = 1024 * 1024


def _limit(count: int, stack: Stack) -> float:
    # Generous: the QPS limit alone needs count/qps seconds; a slow machine may need several times that.
    return max(120.0, 10 * count / stack.config.qps)


def _bodies(stack: Stack, count: int, prefix: str) -> list[dict[str, Any]]:
    # Named by task id: unique across batches (P2 creates in several) and sorted like the tasks.
    return [cr_body(f"{prefix}-{fid:05d}", fid) for fid in stack.file_ids(count)]


def _names(bodies: list[dict[str, Any]]) -> list[str]:
    return [b["metadata"]["name"] for b in bodies]


async def _start_operator(process: OperatorProcess) -> OperatorProcess:
    # OperatorProcess waits with blocking sleeps; a thread keeps the bench's watches reading meanwhile.
    return await asyncio.to_thread(process.start, 60)


async def _stop_operator(process: OperatorProcess, *, graceful: bool = False) -> None:
    # kopf's graceful shutdown takes seconds; only P3 (a restart, as a rollout does it) measures it.
    await asyncio.to_thread(process.stop if graceful else process.kill)


async def _quiet(tracker: Tracker, seconds: float, limit: float = 600) -> None:
    """Until no CR in the tracker's namespace changed for `seconds` (kopf's trailing annotation patches settle)."""
    deadline = time.monotonic() + limit
    while True:
        now = time.monotonic()
        if now - tracker.last_change >= seconds or now >= deadline:
            return
        await asyncio.sleep(0.25)


def _starts(stack: Stack, file_ids: set[int]) -> int:
    assert stack.emulator is not None
    return sum(1 for entry in stack.emulator.starts() if int(entry.get("params", {}).get("FileId", 0)) in file_ids)


# -- P1 ----------------------------------------------------------------------------------------------------------------


def floor_status_patch(response: Any) -> dict[str, object]:
    """Exactly the Ready patch the operator writes after a successful start, computed by the same policy code."""
    now = policy.now()
    return policy.started(t.DISyncInstanceStatus(), 1, response, "bench", now).to_patch()


async def _floor(stack: Stack, kube: Kube, namespace: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    """The least any implementation must do: create (as the user does), one start, one status patch per CR, with
    the operator's QPS limit and concurrency cap on the DataWorks side."""
    assert stack.emulator is not None
    cfg = stack.config
    client = DataWorksClient(
        stack.emulator.url,
        StaticCredentialsProvider(DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET),
        options=ClientOptions(qps=cfg.qps, max_concurrency=cfg.max_concurrency),
    )
    pending: list[asyncio.Task[None]] = []

    async def start_and_patch(body: dict[str, Any]) -> None:
        spec = body["spec"]
        request = StartDISyncInstanceRequest(
            project_id=spec["projectId"],
            task_type=TaskType.DI_REALTIME,
            file_id=spec["fileId"],
            start_param=json.dumps(spec["startParam"]),
        )
        response = await client.start_instance(request)
        await kube.patch_status(namespace, body["metadata"]["name"], floor_status_patch(response))

    tracker = await Tracker(kube, namespace).start()
    meter = CpuMeter(stack.pids()).start()
    try:
        t0 = time.monotonic()
        # Each CR goes on to its start and status patch as soon as it exists, as an operator's would.
        await create_all(
            kube,
            namespace,
            bodies,
            cfg.create_concurrency,
            after=lambda body: pending.append(asyncio.create_task(start_and_patch(body))),
        )
        created = time.monotonic() - t0
        await asyncio.gather(*pending)
        last = await tracker.wait_ready(_names(bodies), _limit(len(bodies), stack))
        return {"seconds": round(last - t0, 3), "create_seconds": round(created, 3), "cpu_seconds": meter.stop()}
    finally:
        await tracker.aclose()
        await client.aclose()


async def p1_burst(stack: Stack, kube: Kube, n: int) -> dict[str, Any]:
    # The floor first, with no operator process alive, then the operator on fresh tasks and a fresh namespace.
    floor_bodies = _bodies(stack, n, "floor")
    floor = await _floor(stack, kube, stack.namespace("bench-p1-floor"), floor_bodies)
    floor["starts"] = _starts(stack, {b["spec"]["fileId"] for b in floor_bodies})

    namespace = stack.namespace("bench-p1")
    bodies = _bodies(stack, n, "p1")
    process = await _start_operator(stack.operator(namespace, "p1"))
    tracker = await Tracker(kube, namespace).start()
    meter = CpuMeter({**stack.pids(), "operator": operator_pid(process)}).start()
    requests = await RequestMeter(kube).start()
    try:
        t0 = time.monotonic()
        await create_all(kube, namespace, bodies, stack.config.create_concurrency)
        created = time.monotonic() - t0
        last = await tracker.wait_ready(_names(bodies), _limit(n, stack))
        operator = {
            "seconds": round(last - t0, 3),
            "create_seconds": round(created, 3),
            "cpu_seconds": meter.stop(),
            "cr_watch_events": tracker.modified,
            "apiserver_requests_per_cr": await requests.stop(n),
        }
        operator["starts"] = _starts(stack, {b["spec"]["fileId"] for b in bodies})
    finally:
        await tracker.aclose()
        await _stop_operator(process)
    return {
        "n": n,
        "floor": floor,
        "operator": operator,
        "ratio": round(operator["seconds"] / floor["seconds"], 3),
        "qps_bound_seconds": round(n / stack.config.qps, 3),
    }


# -- P2 + P3 -----------------------------------------------------------------------------------------------------------


async def p2_memory(
    stack: Stack, kube: Kube, points: list[int], quiet: float
) -> tuple[dict[str, Any], OperatorProcess, str, list[dict[str, Any]]]:
    """Operator RSS at each point (0, N1, N2 Ready CRs). Returns the operator still running for P3."""
    namespace = stack.namespace("bench-p2")
    process = await _start_operator(stack.operator(namespace, "p2"))
    pid = operator_pid(process)
    tracker = await Tracker(kube, namespace).start()
    all_bodies: list[dict[str, Any]] = []
    readings: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(quiet)  # let start-up (imports, first LIST, watch) settle before the baseline
        for point in points:
            more = point - len(all_bodies)
            if more > 0:
                bodies = _bodies(stack, more, "p2")
                all_bodies += bodies
                await create_all(kube, namespace, bodies, stack.config.create_concurrency)
                await tracker.wait_ready(_names(all_bodies), _limit(more, stack))
                await _quiet(tracker, quiet)
            readings.append({"crs": point, "rss_bytes": rss_bytes(pid), "hwm_bytes": rss_bytes(pid, "VmHWM")})
    finally:
        await tracker.aclose()
    base = readings[0]["rss_bytes"]
    for reading in readings:
        reading["rss_mib"] = round(reading["rss_bytes"] / MIB, 1)
        reading["hwm_mib"] = round(reading["hwm_bytes"] / MIB, 1)
        if reading["crs"]:
            reading["bytes_per_cr"] = round((reading["rss_bytes"] - base) / reading["crs"])
    return {"readings": readings}, process, namespace, all_bodies


def _event_reconciles(process: OperatorProcess) -> float:
    """The operator's own count of reconciles brought by watch events (disync_reconciles_total{source="event"})."""
    for line in process.metrics().splitlines():
        if line.startswith('disync_reconciles_total{source="event"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def p3_restart(
    stack: Stack, kube: Kube, old: OperatorProcess, namespace: str, bodies: list[dict[str, Any]], quiet: float
) -> dict[str, Any]:
    """Restart with every CR Ready: API calls made, CR writes made, and time until every CR is reconciled and idle."""
    assert stack.emulator is not None
    emulator = stack.emulator
    stop_started = time.monotonic()
    await _stop_operator(old, graceful=True)
    stop_seconds = time.monotonic() - stop_started
    await asyncio.to_thread(emulator.clear_requests)
    tracker = await Tracker(kube, namespace).start()
    process = stack.operator(namespace, "p3")
    meter: CpuMeter | None = None
    try:
        spawn = time.monotonic()
        process.start(timeout=60, wait=False)
        meter = CpuMeter({**stack.pids(), "operator": operator_pid(process)}).start()
        live = await asyncio.to_thread(_wait_live, process)
        live_seconds = time.monotonic() - spawn
        # Every CR reaches the new process as one event of kopf's initial listing; when the operator's own count of
        # event reconciles reaches N, each has been looked at. Idle: no DataWorks request, no CR change, no
        # reconcile and no log line for `quiet` seconds.
        last_request = last_log = last_reconcile = spawn
        all_reconciled: float | None = None
        seen = logged = 0
        reconciles = 0.0
        while True:
            count = sum(sum(v.values()) for v in (await asyncio.to_thread(emulator.counters)).values())
            size = process.log_path.stat().st_size if process.log_path and process.log_path.exists() else 0
            done = await asyncio.to_thread(_event_reconciles, process)
            now = time.monotonic()
            if count != seen:
                seen, last_request = count, now
            if size != logged:
                logged, last_log = size, now
            if done != reconciles:
                reconciles, last_reconcile = done, now
                if all_reconciled is None and done >= len(bodies):
                    all_reconciled = now - spawn
            last_activity = max(last_request, last_log, last_reconcile, tracker.last_change, spawn + live_seconds)
            if now - last_activity >= quiet:
                break
            await asyncio.sleep(0.25)
        cpu = meter.stop()
        counters = await asyncio.to_thread(emulator.counters)
        return {
            "n": len(bodies),
            "old_operator_stop_seconds": round(stop_seconds, 3),
            "live_seconds": round(live_seconds if live else float("nan"), 3),
            "idle_seconds": round(last_activity - spawn, 3),
            "quiet_window_seconds": quiet,
            "event_reconciles": int(reconciles),
            "all_reconciled_seconds": round(all_reconciled, 3) if all_reconciled is not None else None,
            "emulator_calls": counters,
            "starts": sum(counters.get("StartDISyncInstance", {}).values()),
            "verifies": sum(counters.get("GetDISyncInstanceInfo", {}).values()),
            "cr_watch_events": tracker.modified,
            "cpu_seconds": cpu,
        }
    finally:
        await tracker.aclose()
        await _stop_operator(process)


def _wait_live(process: OperatorProcess) -> bool:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.healthy():
            return True
        time.sleep(0.1)
    return False


# -- P4 ----------------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: with 3,000 samples p99 is a real observed value)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def p4_latency(stack: Stack, kube: Kube, rate: float, duration: float) -> dict[str, Any]:
    namespace = stack.namespace("bench-p4")
    count = int(rate * duration)
    bodies = _bodies(stack, count, "p4")
    process = await _start_operator(stack.operator(namespace, "p4"))
    tracker = await Tracker(kube, namespace).start()
    meter = CpuMeter({**stack.pids(), "operator": operator_pid(process)}).start()
    sent: dict[str, float] = {}
    try:
        creates: list[asyncio.Task[dict[str, Any]]] = []
        t0 = time.monotonic()
        for i, body in enumerate(bodies):
            # An open-loop schedule: create i goes out at t0 + i/rate whether or not earlier ones finished.
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[body["metadata"]["name"]] = time.monotonic()
            creates.append(asyncio.create_task(kube.create(namespace, body)))
        await asyncio.gather(*creates)
        schedule_seconds = time.monotonic() - t0
        await tracker.wait_ready(sent, _limit(count, stack))
        cpu = meter.stop()
        latencies = [(tracker.ready_at[name] - at) * 1000 for name, at in sent.items()]
        return {
            "rate": rate,
            "duration": duration,
            "n": count,
            "achieved_rate": round(count / schedule_seconds, 2),
            "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1),
            "mean_ms": round(statistics.fmean(latencies), 1),
            "starts": _starts(stack, {b["spec"]["fileId"] for b in bodies}),
            "cpu_seconds": cpu,
        }
    finally:
        await tracker.aclose()
        await _stop_operator(process)
