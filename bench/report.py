"""latest.json (everything measured) and latest.md (the table for the README), from one run's results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SECTIONS = ("P1", "P2", "P3", "P4")
TITLES = {
    "P1": "P1 burst: N CRs created at once, until all Ready (operator vs floor)",
    "P2": "P2 memory: operator RSS by Ready CRs",
    "P3": "P3 restart with every CR Ready",
    "P4": "P4 latency: apply -> Ready at a steady rate",
}


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with the measured value and whether it was met (None when the section did not run)."""
    conditions = results["conditions"]
    out: dict[str, dict[str, Any]] = {}
    p1 = results["sections"].get("P1") or {}
    if "ratio" in p1:
        out["P1"] = {"target": "time(operator) <= 1.2 x time(floor)", "value": p1["ratio"], "met": p1["ratio"] <= 1.2}
    p2 = results["sections"].get("P2") or {}
    if p2.get("readings"):
        last = p2["readings"][-1]
        met = last["rss_mib"] <= 120 if last["crs"] >= 10_000 else None  # the target is stated at 10,000 CRs
        out["P2"] = {
            "target": "RSS <= 120 MiB at 10,000 CRs",
            "value": f"{last['rss_mib']} MiB at {last['crs']}",
            "met": met,
        }
    p3 = results["sections"].get("P3") or {}
    if "idle_seconds" in p3:
        out["P3"] = {
            "target": "0 starts, idle <= 30 s",
            "value": f"{p3['starts']} starts, idle {p3['idle_seconds']} s",
            "met": p3["starts"] == 0 and p3["idle_seconds"] <= 30,
        }
    p4 = results["sections"].get("P4") or {}
    if "p99_ms" in p4:
        bound = conditions["emulator_latency_ms"] + 300
        out["P4"] = {"target": f"p99 <= {bound:.0f} ms", "value": p4["p99_ms"], "met": p4["p99_ms"] <= bound}
    return out


def _cpu_row(label: str, cpu: dict[str, float]) -> str:
    names = ("operator", "kube-apiserver", "etcd", "emulator", "bench")
    cells = [f"{cpu[n]:.1f}" if n in cpu else "-" for n in names]
    return f"| {label} | {cpu.get('wall', 0):.1f} | " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    m, c, s = results["machine"], results["conditions"], results["sections"]
    lines = [
        "# disync-operator benchmarks",
        "",
        f"Run {results['started_at']} at commit `{results['commit']}`{' (small size)' if results['small'] else ''}.",
        "",
        f"**Machine:** {m['cpu_model']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"Python {m['python']}, kube-apiserver {m['kube_apiserver']} (+ etcd, on the same cores), kopf {m['kopf']}; "
        f"load average at start {m['load_average_at_start']}, at end {m.get('load_average_at_end', '?')}.",
        "",
        f"**Conditions:** emulator latency {c['emulator_latency_ms']:.0f} ms per call; operator DISYNC_QPS="
        f"{c['qps']:g}, DISYNC_MAX_CONCURRENCY={c['max_concurrency']}, DISYNC_LOG_FORMAT=json, "
        f"DISYNC_LOG_LEVEL={c['log_level']}, DISYNC_OBSERVE_INTERVAL={c['observe_interval']:g} s "
        "(long, so the sweep reads no live state during a run). CRs are created by the bench over "
        f"httpx with {c['create_concurrency']} in flight; Ready is detected client-side by a watch. The operator "
        f"runs from a virtualenv with {c.get('operator_dependencies', 'runtime + test')} dependencies"
        f"{' (as in the image)' if c.get('operator_dependencies') == 'runtime only' else ''}.",
        "",
    ]
    if "P1" in s:
        lines += [f"## {TITLES['P1']}", ""]
        p = s["P1"]
        if "error" in p:
            lines += [f"failed: {p['error']}", ""]
        else:
            lines += [
                "| N | floor | operator | ratio | QPS bound (N/QPS) | creates took (floor / operator) | starts |",
                "|---|---|---|---|---|---|---|",
                f"| {p['n']} | {p['floor']['seconds']:.2f} s | {p['operator']['seconds']:.2f} s | "
                f"**{p['ratio']:.2f}x** | {p['qps_bound_seconds']:.2f} s | {p['floor']['create_seconds']:.2f} s / "
                f"{p['operator']['create_seconds']:.2f} s | {p['floor']['starts']} / {p['operator']['starts']} |",
                "",
                "Floor: a minimal async script (httpx + DataWorksClient with the same QPS limit and concurrency cap) "
                "creating the same CRs the same way, then one StartDISyncInstance and one merge-patch of `/status` "
                "per CR.",
                "",
            ]
            per_cr = p["operator"].get("apiserver_requests_per_cr")
            if per_cr:
                lines += [
                    "API-server requests per CR during the operator's run (its own `apiserver_request_total`, "
                    "the bench's creates included): "
                    + ", ".join(f"{k} {v:g}" for k, v in per_cr.items() if v >= 0.01)
                    + ". Events are posted off the reconcile path, so some land after the last CR is Ready.",
                    "",
                ]
    if "P2" in s:
        lines += [f"## {TITLES['P2']}", ""]
        p = s["P2"]
        if "error" in p:
            lines += [f"failed: {p['error']}", ""]
        else:
            lines += ["| Ready CRs | VmRSS | peak (VmHWM) | bytes per CR (vs 0) |", "|---|---|---|---|"]
            for r in p["readings"]:
                per = f"{r['bytes_per_cr']:,}" if "bytes_per_cr" in r else "-"
                lines.append(f"| {r['crs']:,} | {r['rss_mib']} MiB | {r['hwm_mib']} MiB | {per} |")
            lines.append("")
    if "P3" in s:
        lines += [f"## {TITLES['P3']}", ""]
        p = s["P3"]
        if "error" in p:
            lines += [f"failed: {p['error']}", ""]
        else:
            last = f"{p['all_reconciled_seconds']:.2f} s" if p["all_reconciled_seconds"] is not None else "-"
            lines += [
                "| CRs | starts | GetDISyncInstanceInfo | CR changes seen | live | every CR reconciled | idle |",
                "|---|---|---|---|---|---|---|",
                f"| {p['n']:,} | {p['starts']} | {p['verifies']} | {p['cr_watch_events']} | {p['live_seconds']:.2f} s "
                f"| {last} ({p['event_reconciles']:,} reconciles) | {p['idle_seconds']:.2f} s |",
                "",
                "Times from the new process's spawn. *Every CR reconciled*: when the operator's "
                '`disync_reconciles_total{source="event"}` reached N (polled every 0.25 s). *Idle*: the last '
                f"DataWorks request, CR change or reconcile, confirmed by {p['quiet_window_seconds']:g} s without a "
                "request, a CR change, a reconcile or an operator log line (the quiet window itself is not counted). "
                f"The old operator's graceful stop took {p['old_operator_stop_seconds']:.1f} s.",
                "",
            ]
    if "P4" in s:
        lines += [f"## {TITLES['P4']}", ""]
        p = s["P4"]
        if "error" in p:
            lines += [f"failed: {p['error']}", ""]
        else:
            lines += [
                "| rate | CRs | p50 | p95 | p99 | max | starts |",
                "|---|---|---|---|---|---|---|",
                f"| {p['rate']:g}/s for {p['duration']:g} s (achieved {p['achieved_rate']:g}/s) | {p['n']:,} | "
                f"{p['p50_ms']:.0f} ms | {p['p95_ms']:.0f} ms | {p['p99_ms']:.0f} ms | {p['max_ms']:.0f} ms | "
                f"{p['starts']} |",
                "",
                "From the bench sending the create to its watch seeing Ready=True for that generation.",
                "",
            ]
    cpu_rows = []
    for name, label in (("P1", "P1 floor"), ("P1", "P1 operator"), ("P3", "P3"), ("P4", "P4")):
        section = s.get(name) or {}
        cpu = (section.get(label.split()[-1]) or {}).get("cpu_seconds") if name == "P1" else section.get("cpu_seconds")
        if cpu:
            cpu_rows.append(_cpu_row(label, cpu))
    if cpu_rows:
        lines += [
            "## CPU seconds used (user+system, from /proc/<pid>/stat)",
            "",
            "| phase | wall | operator | kube-apiserver | etcd | emulator | bench |",
            "|---|---|---|---|---|---|---|",
            *cpu_rows,
            "",
        ]
    met = targets(results)
    if met:
        lines += ["## Targets", "", "| | target | measured | met |", "|---|---|---|---|"]
        for name, row in met.items():
            verdict = {True: "yes", False: "**no**", None: "n/a at this size"}[row["met"]]
            lines.append(f"| {name} | {row['target']} | {row['value']} | {verdict} |")
        lines.append("")
    if results.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in results["notes"]], ""]
    return "\n".join(lines)


def merge_previous(results: dict[str, Any], out: Path) -> None:
    """Carry over sections this run did not measure from the previous latest.json, saying where they came from."""
    path = out / "latest.json"
    if not path.exists():
        return
    previous = json.loads(path.read_text())
    for name in SECTIONS:
        old, new = previous.get("sections", {}).get(name), results["sections"].get(name)
        if new is not None and "error" in new and old is not None and "error" not in old:
            results["notes"].append(f"{name} failed in the run of {results['started_at']}: {new['error']}")
            del results["sections"][name]
        if name not in results["sections"] and name in previous.get("sections", {}):
            results["sections"][name] = previous["sections"][name]
            results["notes"].append(
                f"{name} is from the run of {previous['started_at']} (commit {previous['commit']}, load average "
                f"{previous['machine'].get('load_average_at_start')} at start)."
            )
    results["notes"].extend(n for n in previous.get("notes", []) if n not in results["notes"])


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    results["targets"] = targets(results)
    json_path, md_path = out / "latest.json", out / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")
    md_path.write_text(markdown(results))
    return json_path, md_path
