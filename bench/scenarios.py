"""The five measurements. Each returns a plain dict that goes into latest.json as it is."""

from __future__ import annotations

import asyncio
import itertools
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
    credentials_secret,
    emulator_requests,
    metric_samples,
    operator_pid,
    rss_bytes,
)
from disync_operator import types as t
from disync_operator.controller import policy
from disync_operator.controller.settings import OperatorSettings
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
    """The operator's own count of reconciles brought by watch events (disync_reconcile_total{source="event"}, every
    result)."""
    return sum(
        v
        for labels, v in metric_samples(process.metrics(), "disync_reconcile_total")
        if labels.get("source") == "event"
    )


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


# -- P5 ----------------------------------------------------------------------------------------------------------------

P5_SECRETS = 5  # a handful of Secrets shared by most CRs: each pass should read each once, not once per CR
OBSERVE_CALL = "GetDISyncInstanceInfo"


def operator_defaults() -> dict[str, float | int | None]:
    """The operator's own defaults for what P5 leaves unset, read from its settings model (not restated here)."""
    fields = OperatorSettings.model_fields
    # Explicit arguments win over any DISYNC_* in the bench's own environment.
    settings = OperatorSettings(
        endpoint="http://unused",
        qps=fields["qps"].default,
        observe_qps=fields["observe_qps"].default,
        max_concurrency=fields["max_concurrency"].default,
    )
    return {
        "qps": settings.qps,
        "observe_qps": settings.effective_observe_qps,
        "max_concurrency": settings.max_concurrency,
    }


def _p5_bodies(stack: Stack, count: int, prefix: str) -> list[dict[str, Any]]:
    # Nine in ten name one of the Secrets (round robin); the tenth uses the operator's own identity, as a mixed
    # install would. Keyed by task id, so a burst CR's choice follows the same rule as the seeded ones'.
    bodies = []
    for fid in stack.file_ids(count):
        secret = None if fid % 10 == 9 else f"bench-p5-credentials-{fid % P5_SECRETS}"
        bodies.append(cr_body(f"{prefix}-{fid:05d}", fid, secret))
    return bodies


def _calls(counters: dict[str, dict[str, int]]) -> dict[str, int]:
    """The emulator's counters summed over outcomes: calls by action."""
    return {action: sum(outcomes.values()) for action, outcomes in counters.items()}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0)}


def _reconciles(process: OperatorProcess) -> tuple[dict[str, float], float]:
    """The operator's reconciles by source and its work-queue depth, from its metrics port."""
    text = process.metrics()
    by_source: dict[str, float] = {}
    for labels, v in metric_samples(text, "disync_reconcile_total"):
        by_source[labels.get("source", "?")] = by_source.get(labels.get("source", "?"), 0.0) + v
    depth = sum(v for _, v in metric_samples(text, "disync_workqueue_depth"))
    return by_source, depth


async def _restart_settled(process: OperatorProcess, kube: Kube, crs: int, limit: float = 600) -> float:
    """Until the new process has reconciled every CR its initial listing brought, its queue is empty and the API
    server has seen none of its reads or writes for a second (the counter counts a reconcile when it ends, but its
    Events are posted after); returns the seconds. If the sweep's visits begin first, at once: they keep the API server
    busy from then on (and the result says the pass began before the window)."""
    start = time.monotonic()
    last: float | None = None
    quiet_since = start
    while time.monotonic() - start < limit:
        by_source, depth = await asyncio.to_thread(_reconciles, process)
        if by_source.get("event", 0) >= crs:
            if by_source.get("observe", 0) > 0:
                return time.monotonic() - start
            counts = await kube.request_counts()
            activity = sum(v for k, v in counts.items() if k.startswith(("GET secrets", "PATCH ", "POST events")))
            now = time.monotonic()
            if activity != last or depth:
                last, quiet_since = activity, now
            elif now - quiet_since >= 1.0:
                return quiet_since - start
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the restarted operator did not reconcile {crs} CRs within {limit:.0f}s")


async def _first_observation(stack: Stack, before: int, limit: float) -> float:
    """Until the emulator has answered a GetDISyncInstanceInfo beyond `before`: a pass has begun."""
    assert stack.emulator is not None
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if _calls(await asyncio.to_thread(stack.emulator.counters)).get(OBSERVE_CALL, 0) > before:
            return time.monotonic() - start
        await asyncio.sleep(0.25)
    raise TimeoutError(f"no observation pass began within {limit:.0f}s")


def _observations(entries: list[dict[str, Any]], since: float, until: float) -> dict[int, list[float]]:
    """Each task's GetDISyncInstanceInfo times (emulator wall clock) between two bench wall-clock times."""
    per_task: dict[int, list[float]] = {}
    for entry in entries:
        at = float(entry.get("time", 0))
        if since <= at <= until:
            per_task.setdefault(int(entry.get("params", {}).get("FileId", 0)), []).append(at)
    return per_task


async def _p5_run(
    stack: Stack,
    kube: Kube,
    namespace: str,
    label: str,
    interval: float,
    crs: int,
    burst: int,
    settle: float,
) -> dict[str, Any]:
    """One side of P5: an operator at its default throughput settings restarted over `crs` started CRs, observing
    them every `interval` s (0: never), then a burst of new CRs timed from create to Ready."""
    assert stack.emulator is not None
    emulator = stack.emulator
    defaults = operator_defaults()
    calls_at_spawn = _calls(await asyncio.to_thread(emulator.counters))
    spawn_wall = time.time()
    # DISYNC_QPS and DISYNC_MAX_CONCURRENCY unset: the operator's defaults (DISYNC_OBSERVE_QPS is never set).
    process = await _start_operator(
        stack.operator(
            namespace,
            f"p5-{label}",
            DISYNC_QPS=None,
            DISYNC_MAX_CONCURRENCY=None,
            DISYNC_OBSERVE_INTERVAL=f"{interval:g}",
        )
    )
    tracker: Tracker | None = None
    try:
        tracker = await Tracker(kube, namespace).start()  # its LIST of every CR lands before the measured windows
        settle_seconds = await _restart_settled(process, kube, crs)
        # The window before the burst: what observation alone costs the API server (the control run shows the
        # baseline). With observation on it starts once a pass has begun and lasts `settle` seconds more.
        window_wall = time.time()
        window = await RequestMeter(kube).start()
        reconciles_before, _ = await asyncio.to_thread(_reconciles, process)
        first_observation = None
        if interval > 0:
            first_observation = await _first_observation(stack, calls_at_spawn.get(OBSERVE_CALL, 0), interval + 120)
        await asyncio.sleep(settle)
        window_requests = await window.stop(1)
        reconciles_after, _ = await asyncio.to_thread(_reconciles, process)
        window_end_wall = time.time()

        bodies = _p5_bodies(stack, burst, f"p5{label}")
        calls_before = _calls(await asyncio.to_thread(emulator.counters))
        burst_requests = await RequestMeter(kube).start()
        meter = CpuMeter({**stack.pids(), "operator": operator_pid(process)}).start()
        sent = await create_all(kube, namespace, bodies, stack.config.create_concurrency)
        last = await tracker.wait_ready(sent, max(300.0, 10 * burst / float(defaults["qps"] or 1)))
        cpu = meter.stop()
        burst_seconds = last - min(sent.values())
        calls_during = _delta(_calls(await asyncio.to_thread(emulator.counters)), calls_before)
        per_cr = await burst_requests.stop(burst)
        metrics = await asyncio.to_thread(process.metrics)
        end_wall = time.time()
        latencies = [(tracker.ready_at[name] - at) * 1000 for name, at in sent.items()]
        result: dict[str, Any] = {
            "observe_interval": interval,
            "started_crs": crs,
            "restart_settled_seconds": round(settle_seconds, 3),
            "burst": burst,
            "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1),
            "burst_seconds": round(burst_seconds, 3),
            "starts": _starts(stack, {b["spec"]["fileId"] for b in bodies}),
            "burst_dataworks_calls": calls_during,
            "observe_calls_per_second_during_burst": round(calls_during.get(OBSERVE_CALL, 0) / burst_seconds, 2),
            "burst_apiserver_requests_per_cr": per_cr,
            "pre_burst_wait_seconds": settle,
            "window_seconds": round(window_end_wall - window_wall, 3),
            "window_apiserver_requests": window_requests,
            # What brought the reconciles of the window (an "event" one reads its Secret itself, outside the pass's).
            "window_reconciles": {
                k: int(v - reconciles_before.get(k, 0))
                for k, v in sorted(reconciles_after.items())
                if v - reconciles_before.get(k, 0)
            },
            "cpu_seconds": cpu,
        }
        if interval > 0:
            assert first_observation is not None
            entries = await asyncio.to_thread(emulator_requests, emulator, OBSERVE_CALL)
            in_window = _observations(entries, window_wall, window_end_wall)
            whole_run = _observations(entries, spawn_wall, end_wall)
            times = sorted(at for ats in whole_run.values() for at in ats)
            # A pass reads each CR once, so the most reads of one CR is the number of passes that reached it.
            passes = max((len(v) for v in in_window.values()), default=0)
            gaps = [b - a for ats in whole_run.values() for a, b in itertools.pairwise(sorted(ats))]
            rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None
            gauge = [v for _, v in metric_samples(metrics, "disync_observe_period_seconds")]
            secret_gets = window_requests.get("GET secrets", 0.0)
            result |= {
                "first_observation_after_settled_seconds": round(first_observation, 3),
                # A pass that began before the window (a restart slower than the interval) had its first Secret
                # reads outside it: the per-pass figure would then undercount.
                "pass_began_before_window": any(at < window_wall for ats in whole_run.values() for at in ats),
                "window_observed_crs": sum(len(v) for v in in_window.values()),
                "window_passes_begun": passes,
                "secret_gets_per_pass": round(secret_gets / passes, 2) if passes else None,
                "observe_calls_per_second": round(rate, 2) if rate else None,
                # How long a pass over every started CR takes at the rate measured: the period to expect once
                # passes end (at 10,000 CRs far longer than the run, so no pass ends within it).
                "observe_period_projected_seconds": round(crs / rate, 1) if rate else None,
                "observe_period_measured_seconds": round(statistics.median(gaps), 1) if gaps else None,
                "observe_period_measured_crs": sum(1 for v in whole_run.values() if len(v) > 1),
                # Set at the end of each pass; 0 until the first has ended.
                "observe_period_gauge_seconds": gauge[0] if gauge and gauge[0] > 0 else None,
                "run_dataworks_calls": _delta(_calls(await asyncio.to_thread(emulator.counters)), calls_at_spawn),
                "operator_dataworks_calls": _operator_calls(metrics),
            }
        return result
    finally:
        if tracker is not None:
            await tracker.aclose()
        await _stop_operator(process)


def _operator_calls(metrics: str) -> dict[str, int]:
    """The operator's own count of DataWorks calls by action (disync_dataworks_calls_total, all outcomes)."""
    calls: dict[str, int] = {}
    for labels, value in metric_samples(metrics, "disync_dataworks_calls_total"):
        action = labels.get("action", "?")
        calls[action] = calls.get(action, 0) + int(value)
    return dict(sorted(calls.items()))


async def p5_observation(
    stack: Stack, kube: Kube, n: int, burst: int, interval: float, settle: float
) -> dict[str, Any]:
    """N started CRs (most naming one of a handful of Secrets), then, side by side: an operator observing them every
    `interval` s and one not observing at all, each at the operator's default throughput settings and each timing a
    burst of new CRs from create to Ready."""
    namespace = stack.namespace("bench-p5")
    for i in range(P5_SECRETS):
        await kube.create_secret(namespace, credentials_secret(f"bench-p5-credentials-{i}"))
    bodies = _p5_bodies(stack, n, "p5")
    # Seeding is not measured: an operator at the bench's QPS (not the default 20/s) gets N CRs started sooner.
    seeder = await _start_operator(stack.operator(namespace, "p5-seed", DISYNC_OBSERVE_INTERVAL="0"))
    tracker = await Tracker(kube, namespace).start()
    try:
        t0 = time.monotonic()
        await create_all(kube, namespace, bodies, stack.config.create_concurrency)
        seeded = await tracker.wait_ready(_names(bodies), _limit(n, stack)) - t0
    finally:
        await tracker.aclose()
        await _stop_operator(seeder)
    # Observation on first, so the CRs under observation are exactly N; the control run then has the first burst's
    # CRs as well, idle and not observed.
    on = await _p5_run(stack, kube, namespace, "on", interval, n, burst, settle)
    off = await _p5_run(stack, kube, namespace, "off", 0.0, n + burst, burst, settle)
    return {
        "n": n,
        "burst": burst,
        "secrets": P5_SECRETS,
        "crs_naming_a_secret": sum(1 for b in bodies if "credentials" in b["spec"]),
        "operator_defaults": operator_defaults(),
        "seed_seconds": round(seeded, 3),
        "seed_qps": stack.config.qps,
        "on": on,
        "off": off,
        "ratio": round(on["p99_ms"] / off["p99_ms"], 3) if off["p99_ms"] else None,
    }
