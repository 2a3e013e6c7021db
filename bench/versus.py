"""VS: the project against what a user would pick instead, side by side in one run.

Three contenders (four runs each round: the idiomatic kopf operator with and without its delete handler) on the same
control plane and emulator, in rounds whose order rotates, so a noisy moment of the 2 shared cores lands on each in
turn. Headline figures are medians over the rounds, with the range:

- burst: N CRs created at once, until all Ready; each run's ratio to the floor of the same round;
- steady rate: apply -> Ready latency at `rate` CRs/s for `duration` s (the floor does not take part);
- memory: RSS of each operator at 0, N1 and N2 Ready CRs (one run each: slow, and not noisy);
- per run: API-server requests per CR and CPU seconds per component.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.harness import ContenderProcess, CpuMeter, Kube, RequestMeter, Stack, Tracker, create_all, rss_bytes
from bench.scenarios import MIB, _bodies, _floor, _limit, _names, _quiet, _start_operator, _starts, percentile
from disync_operator.devstack.processes import OperatorProcess

CONTENDERS = ("floor", "kopf", "kopf+delete", "operator")
OPERATORS = CONTENDERS[1:]
Process = OperatorProcess | ContenderProcess


async def _launch(stack: Stack, who: str, namespace: str, label: str) -> tuple[Process, int]:
    if who == "operator":
        process = await _start_operator(stack.operator(namespace, label))
        assert process._proc is not None
        return process, process._proc.pid
    contender = stack.contender(namespace, label, delete_handler=who == "kopf+delete")
    await asyncio.to_thread(contender.start, 60)
    return contender, contender.pid


async def _stop(process: Process) -> None:
    await asyncio.to_thread(process.kill)


async def burst(stack: Stack, kube: Kube, who: str, n: int, label: str) -> dict[str, Any]:
    namespace = stack.namespace(f"vs-burst-{label}")
    bodies = _bodies(stack, n, f"vs{label}")
    if who == "floor":
        result = await _floor(stack, kube, namespace, bodies)
        result["starts"] = _starts(stack, {b["spec"]["fileId"] for b in bodies})
        return result
    process, pid = await _launch(stack, who, namespace, label)
    tracker = await Tracker(kube, namespace).start()
    meter = CpuMeter({**stack.pids(), "operator": pid}).start()
    requests = await RequestMeter(kube).start()
    try:
        t0 = time.monotonic()
        await create_all(kube, namespace, bodies, stack.config.create_concurrency)
        last = await tracker.wait_ready(_names(bodies), _limit(n, stack))
        return {
            "seconds": round(last - t0, 3),
            "cpu_seconds": meter.stop(),
            "apiserver_requests_per_cr": await requests.stop(n),
            "starts": _starts(stack, {b["spec"]["fileId"] for b in bodies}),
        }
    finally:
        await tracker.aclose()
        await _stop(process)


async def steady(stack: Stack, kube: Kube, who: str, rate: float, duration: float, label: str) -> dict[str, Any]:
    namespace = stack.namespace(f"vs-rate-{label}")
    count = int(rate * duration)
    bodies = _bodies(stack, count, f"vr{label}")
    process, pid = await _launch(stack, who, namespace, label)
    tracker = await Tracker(kube, namespace).start()
    meter = CpuMeter({**stack.pids(), "operator": pid}).start()
    sent: dict[str, float] = {}
    try:
        creates: list[asyncio.Task[dict[str, Any]]] = []
        t0 = time.monotonic()
        for i, body in enumerate(bodies):
            delay = t0 + i / rate - time.monotonic()  # open loop: create i at t0 + i/rate, whatever came before
            if delay > 0:
                await asyncio.sleep(delay)
            sent[body["metadata"]["name"]] = time.monotonic()
            creates.append(asyncio.create_task(kube.create(namespace, body)))
        await asyncio.gather(*creates)
        await tracker.wait_ready(sent, _limit(count, stack))
        latencies = [(tracker.ready_at[name] - at) * 1000 for name, at in sent.items()]
        return {
            "n": count,
            "p50_ms": round(percentile(latencies, 50), 1),
            "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(max(latencies), 1),
            "cpu_seconds": meter.stop(),
            "starts": _starts(stack, {b["spec"]["fileId"] for b in bodies}),
        }
    finally:
        await tracker.aclose()
        await _stop(process)


async def memory(stack: Stack, kube: Kube, who: str, points: list[int], quiet: float) -> list[dict[str, Any]]:
    namespace = stack.namespace(f"vs-mem-{who.replace('+', '-')}")
    process, pid = await _launch(stack, who, namespace, f"mem-{who.replace('+', '-')}")
    tracker = await Tracker(kube, namespace).start()
    readings: list[dict[str, Any]] = []
    created: list[str] = []
    try:
        await asyncio.sleep(quiet)
        for point in points:
            more = point - len(created)
            if more > 0:
                bodies = _bodies(stack, more, f"vm{who.replace('+', '-')}")
                created += _names(bodies)
                await create_all(kube, namespace, bodies, stack.config.create_concurrency)
                await tracker.wait_ready(created, _limit(more, stack))
                await _quiet(tracker, quiet)
            readings.append({"crs": point, "rss_mib": round(rss_bytes(pid) / MIB, 1)})
    finally:
        await tracker.aclose()
        await _stop(process)
    return readings


def spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3), "max": round(max(values), 3)}


async def versus(
    stack: Stack,
    kube: Kube,
    *,
    n: int,
    rounds: int,
    rate: float,
    duration: float,
    points: list[int],
    quiet: float,
    log: Callable[[str], None],
) -> dict[str, Any]:
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {who: {"burst": [], "steady": []} for who in CONTENDERS}
    ratios: dict[str, list[float]] = {who: [] for who in OPERATORS}
    for r in range(rounds):
        order = CONTENDERS[r % len(CONTENDERS) :] + CONTENDERS[: r % len(CONTENDERS)]
        log(f"VS round {r + 1}/{rounds}, burst of {n}: {', '.join(order)}")
        seconds: dict[str, float] = {}
        for who in order:
            result = await burst(stack, kube, who, n, f"{r}-{who.replace('+', '-')}")
            runs[who]["burst"].append(result)
            seconds[who] = result["seconds"]
        for who in OPERATORS:
            ratios[who].append(seconds[who] / seconds["floor"])
        log(f"VS round {r + 1}: " + ", ".join(f"{w} {s:.2f} s" for w, s in seconds.items()))
        if duration > 0:
            for who in [w for w in order if w != "floor"]:
                result = await steady(stack, kube, who, rate, duration, f"{r}-{who.replace('+', '-')}")
                runs[who]["steady"].append(result)
                log(f"VS round {r + 1}, {rate:g}/s: {who} p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    mem: dict[str, list[dict[str, Any]]] = {}
    for who in ("kopf", "operator"):
        log(f"VS memory: {who} at {points} Ready CRs")
        mem[who] = await memory(stack, kube, who, points, quiet)

    def summary(who: str) -> dict[str, Any]:
        bursts = runs[who]["burst"]
        out: dict[str, Any] = {
            "burst_seconds": spread([b["seconds"] for b in bursts]),
            "burst_starts": [b["starts"] for b in bursts],
        }
        if who != "floor":
            out["ratio_to_floor"] = spread(ratios[who])
            out["apiserver_requests_per_cr"] = bursts[-1].get("apiserver_requests_per_cr")
            cpu = [b["cpu_seconds"] for b in bursts]
            out["burst_cpu_seconds"] = {
                part: round(statistics.median(c.get(part, 0.0) for c in cpu), 2)
                for part in ("operator", "kube-apiserver", "etcd")
            }
            steady_runs = runs[who]["steady"]
            if steady_runs:
                out["steady_p50_ms"] = spread([s["p50_ms"] for s in steady_runs])
                out["steady_p99_ms"] = spread([s["p99_ms"] for s in steady_runs])
        else:
            out["burst_cpu_seconds"] = {
                part: round(statistics.median(b["cpu_seconds"].get(part, 0.0) for b in bursts), 2)
                for part in ("kube-apiserver", "etcd")
            }
        if who in mem:
            out["rss_mib"] = {str(m["crs"]): m["rss_mib"] for m in mem[who]}
        return out

    return {
        "n": n,
        "rounds": rounds,
        "rate": rate,
        "duration": duration,
        "points": points,
        "contenders": {who: summary(who) for who in CONTENDERS},
        "runs": runs,
    }
