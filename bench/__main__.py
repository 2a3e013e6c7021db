"""`python -m bench` (what `make bench` runs): see bench/__init__.py for what is measured."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench import report
from bench.harness import Config, Kube, Stack, git_revision, machine_info
from bench.scenarios import p1_burst, p2_memory, p3_restart, p4_latency, p5_observation
from bench.versus import versus

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--small", action="store_true", help="smoke size: N=50, P2 at 0/50, P4 10/s for 5 s, P5 50 + a burst of 20"
    )
    parser.add_argument("--n1", type=int, default=None, help="P1 burst size and P2's middle point (default 1000)")
    parser.add_argument(
        "--n2", type=int, default=None, help="P2's last point, P3's size and P5's CRs under observation (default 10000)"
    )
    parser.add_argument("--rate", type=float, default=None, help="P4 creates per second (default 50)")
    parser.add_argument("--duration", type=float, default=None, help="P4 seconds (default 60)")
    parser.add_argument("--burst", type=int, default=None, help="P5's burst of new CRs (default 200)")
    parser.add_argument(
        "--p5-observe-interval",
        type=float,
        default=None,
        help="P5's DISYNC_OBSERVE_INTERVAL with observation on (default 30 s: passes begin soon after a restart and, "
        "at 10,000 CRs, run back to back)",
    )
    parser.add_argument(
        "--only",
        default=",".join(report.DEFAULT_SECTIONS),
        help=f"comma-separated sections, e.g. P1,P4 (default {','.join(report.DEFAULT_SECTIONS)})",
    )
    parser.add_argument("--quiet", type=float, default=None, help="seconds without activity that count as idle")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="emulator latency per call")
    parser.add_argument("--qps", type=float, default=100.0, help="operator (and floor) DataWorks QPS limit")
    parser.add_argument("--max-concurrency", type=int, default=32, help="operator (and floor) concurrency cap")
    parser.add_argument(
        "--observe-interval",
        type=float,
        default=3600.0,
        help="operator DISYNC_OBSERVE_INTERVAL (default long: the sweep reads no live state; 0 disables it)",
    )
    parser.add_argument(
        "--operator-python",
        default=None,
        help="interpreter to run the operator with (make bench: a virtualenv with only its runtime dependencies)",
    )
    parser.add_argument(
        "--contender-python",
        default=None,
        help="interpreter for VS's idiomatic kopf operator (make bench: a virtualenv with kopf and the official SDK "
        "only); default this one",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="DISYNC_X=VALUE",
        help="an extra setting for every operator run (repeatable)",
    )
    parser.add_argument("--vs-rounds", type=int, default=None, help="VS rounds, order rotating (default 3)")
    parser.add_argument("--vs-duration", type=float, default=None, help="VS steady-rate seconds per run (default 30)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json and latest.md go")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the sections of the existing latest.json that this run does not measure (with a note saying so)",
    )
    args = parser.parse_args(argv)
    small = args.small
    args.n1 = args.n1 if args.n1 is not None else (50 if small else 1000)
    args.n2 = args.n2 if args.n2 is not None else (50 if small else 10_000)
    args.rate = args.rate if args.rate is not None else (10.0 if small else 50.0)
    args.duration = args.duration if args.duration is not None else (5.0 if small else 60.0)
    args.quiet = args.quiet if args.quiet is not None else (2.0 if small else 5.0)
    args.burst = args.burst if args.burst is not None else (20 if small else 200)
    # Small: 50 CRs make a 5-s pass at the default observe QPS, so a short interval gets passes going within the
    # smoke test's time.
    args.p5_observe_interval = (
        args.p5_observe_interval if args.p5_observe_interval is not None else (5.0 if small else 30.0)
    )
    args.vs_rounds = args.vs_rounds if args.vs_rounds is not None else (1 if small else 3)
    args.vs_duration = args.vs_duration if args.vs_duration is not None else (3.0 if small else 30.0)
    args.sections = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(report.SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(report.SECTIONS)}")
    return args


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace, stack: Stack, results: dict[str, Any]) -> bool:
    sections: dict[str, Any] = results["sections"]
    assert stack.plane is not None
    kube = Kube(stack.plane.kubeconfig, connections=stack.config.create_concurrency)
    ok = True
    try:
        if "P1" in args.sections:
            log(f"P1: burst of {args.n1} (floor, then operator)")
            try:
                sections["P1"] = await p1_burst(stack, kube, args.n1)
            except Exception as error:
                ok = False
                sections["P1"] = {"error": f"{type(error).__name__}: {error}"}
                traceback.print_exc()
            log(f"P1: {sections['P1']}")
        if "P2" in args.sections or "P3" in args.sections:
            # P2's operator keeps running with its CRs Ready: that is P3's starting point.
            points = sorted({0, args.n1, args.n2} if args.n1 < args.n2 else {0, args.n2})
            log(f"P2: operator RSS at {points} Ready CRs")
            try:
                p2, process, namespace, bodies = await p2_memory(stack, kube, points, args.quiet)
                if "P2" in args.sections:
                    sections["P2"] = p2
                    log(f"P2: {p2}")
                if "P3" in args.sections:
                    log(f"P3: restart with {len(bodies)} Ready CRs")
                    try:
                        sections["P3"] = await p3_restart(stack, kube, process, namespace, bodies, args.quiet)
                    except Exception as error:
                        ok = False
                        sections["P3"] = {"error": f"{type(error).__name__}: {error}"}
                        traceback.print_exc()
                    log(f"P3: {sections['P3']}")
                await asyncio.to_thread(process.kill)  # no-op when P3 already replaced it
            except Exception as error:
                ok = False
                for name in ("P2", "P3"):
                    if name in args.sections and name not in sections:
                        sections[name] = {"error": f"{type(error).__name__}: {error}"}
                traceback.print_exc()
        if "P4" in args.sections:
            log(f"P4: {args.rate:g}/s for {args.duration:g} s")
            try:
                sections["P4"] = await p4_latency(stack, kube, args.rate, args.duration)
            except Exception as error:
                ok = False
                sections["P4"] = {"error": f"{type(error).__name__}: {error}"}
                traceback.print_exc()
            log(f"P4: {sections['P4']}")
        if "P5" in args.sections:
            log(
                f"P5: {args.n2} started CRs, burst of {args.burst}, observation every {args.p5_observe_interval:g} s "
                "vs off"
            )
            try:
                # The window before each burst: the quiet window twice, long enough for the observe rate to settle.
                sections["P5"] = await p5_observation(
                    stack, kube, args.n2, args.burst, args.p5_observe_interval, 2 * args.quiet
                )
            except Exception as error:
                ok = False
                sections["P5"] = {"error": f"{type(error).__name__}: {error}"}
                traceback.print_exc()
            log(f"P5: {sections['P5']}")
        if "VS" in args.sections:
            points = sorted({0, args.n1, args.n2} if args.n1 < args.n2 else {0, args.n2})
            log(
                f"VS: floor, idiomatic kopf (with and without its delete handler) and the operator, {args.vs_rounds} "
                "rounds"
            )
            try:
                sections["VS"] = await versus(
                    stack,
                    kube,
                    n=args.n1,
                    rounds=args.vs_rounds,
                    rate=args.rate,
                    duration=args.vs_duration,
                    points=points,
                    quiet=args.quiet,
                    log=log,
                )
            except Exception as error:
                ok = False
                sections["VS"] = {"error": f"{type(error).__name__}: {error}"}
                traceback.print_exc()
            log(f"VS: {sections['VS'].get('contenders', sections['VS'])}")
    finally:
        await kube.aclose()
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = Config(
        latency_ms=args.latency_ms,
        qps=args.qps,
        max_concurrency=args.max_concurrency,
        observe_interval=args.observe_interval,
        operator_python=args.operator_python,
        contender_python=args.contender_python or sys.executable,
        extra_env=tuple((key, value) for key, _, value in (item.partition("=") for item in args.operator_env)),
    )
    tasks = 0
    if "P1" in args.sections:
        tasks += 2 * args.n1  # the floor and the operator each start fresh tasks
    if "P2" in args.sections or "P3" in args.sections:
        tasks += args.n2
    if "P4" in args.sections:
        tasks += int(args.rate * args.duration)
    if "P5" in args.sections:
        tasks += args.n2 + 2 * args.burst
    if "VS" in args.sections:
        tasks += args.vs_rounds * (4 * args.n1 + 3 * int(args.rate * args.vs_duration)) + 2 * max(args.n1, args.n2)
    results: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "commit": git_revision(),
        "small": args.small,
        "argv": sys.argv[1:] if argv is None else argv,
        "conditions": {
            "emulator_latency_ms": config.latency_ms,
            "qps": config.qps,
            "max_concurrency": config.max_concurrency,
            "observe_interval": config.observe_interval,
            "log_level": config.log_level,
            "create_concurrency": config.create_concurrency,
            "operator_dependencies": "runtime only" if config.operator_python else "runtime + test",
            "n1": args.n1,
            "n2": args.n2,
            "rate": args.rate,
            "duration": args.duration,
            "quiet_window_seconds": args.quiet,
            "burst": args.burst,
            "p5_observe_interval": args.p5_observe_interval,
            "operator_env": args.operator_env,
            "vs_rounds": args.vs_rounds,
            "vs_duration": args.vs_duration,
            "contender_dependencies": "kopf + official SDK only" if args.contender_python else "the bench's own",
        },
        "sections": {},
        "notes": [],
    }
    log(f"starting control plane and emulator ({tasks} tasks, {config.latency_ms:g} ms latency)")
    stack = Stack(tasks=max(tasks, 1), config=config)
    ok = False
    try:
        stack.start()
        results["machine"] = machine_info(stack.kubectl)
        ok = asyncio.run(run(args, stack, results))
    except Exception as error:
        results.setdefault("machine", machine_info(None))
        results["notes"].append(f"the run failed: {type(error).__name__}: {error}")
        traceback.print_exc()
    finally:
        stack.stop()
    # Other work on the machine shows up here: the numbers are only comparable between runs on a quiet machine.
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.merge:
        report.merge_previous(results, args.out)
    json_path, md_path = report.write(results, args.out)
    log(f"wrote {json_path} and {md_path}")
    print(md_path.read_text())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
