"""10,000 DISyncInstances under the chart's default resources (512 MiB limit) on the real node, and bench P6: the
leader pod's memory and CPU at 0, 1,000 and 10,000 Ready resources, read from the container's cgroup (the files the
kubelet's cAdvisor reads: working set = usage - inactive file pages), checked against the kubelet's own report.

Slow (minutes): `make e2e-chaos`, not `make e2e`.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    CHART,
    NODE_NAME,
    PROJECT_ID,
    RELEASE,
    cleanup,
    default_credentials,
    leader,
    pods,
    restarts,
    wait_ready_pods,
)

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

LIMIT = 512 * 2**20  # the chart's resources.limits.memory


def cadvisor(admin: Kubectl, pod: str) -> dict[str, float]:
    """The operator container's figures from the kubelet's cAdvisor endpoint (through the API server's node proxy)."""
    text = admin("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/metrics/cadvisor")
    wanted = {
        "container_memory_working_set_bytes",
        "container_memory_rss",
        "container_memory_max_usage_bytes",
        "container_cpu_usage_seconds_total",
    }
    found: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)\{([^}]*)\} (\S+)", line)
        if not match or match.group(1) not in wanted:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
        if labels.get("pod") == pod and labels.get("container") == "operator":
            found[match.group(1)] = float(match.group(3))
    assert set(found) == wanted, f"the kubelet reports {sorted(found)} for {pod}"
    return found


def cgroup_dir(pod: dict[str, Any], hierarchy: str) -> Path:
    """The operator container's own cgroup in one v1 hierarchy (the kubelet's cgroupfs layout under /disync-node)."""
    (status,) = [c for c in pod["status"]["containerStatuses"] if c["name"] == "operator"]
    container_id = status["containerID"].split("://")[1]
    qos = pod["status"]["qosClass"].lower()
    base = Path("/sys/fs/cgroup") / hierarchy / "disync-node" / "kubepods"
    return (base if qos == "guaranteed" else base / qos) / f"pod{pod['metadata']['uid']}" / container_id


def cgroup_figures(pod: dict[str, Any]) -> dict[str, float]:
    """What the kubelet (cAdvisor) derives its figures from, read now: working set = usage - inactive file pages."""
    memory = cgroup_dir(pod, "memory")
    stat = dict(line.split() for line in (memory / "memory.stat").read_text().splitlines())
    usage = int((memory / "memory.usage_in_bytes").read_text())
    return {
        "working_set": usage - int(stat["total_inactive_file"]),
        "rss": int(stat["total_rss"]),
        "peak": int((memory / "memory.max_usage_in_bytes").read_text()),
        "cpu_seconds": int((cgroup_dir(pod, "cpuacct") / "cpuacct.usage").read_text()) / 1e9,
    }


def create(crs: Kubectl, file_ids: list[int]) -> None:
    for batch in range(0, len(file_ids), 500):
        items = [
            {
                "apiVersion": "disync.dev/v1alpha1",
                "kind": "DISyncInstance",
                "metadata": {"name": f"mem-{fid}"},
                "spec": {
                    "projectId": PROJECT_ID,
                    "taskType": "DI_REALTIME",
                    "fileId": fid,
                    "startParam": {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}},
                },
            }
            for fid in file_ids[batch : batch + 500]
        ]
        crs("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


def ready_count(crs: Kubectl) -> int:
    """Resources Ready for their generation (custom columns: one light list call, not 10,000 objects of JSON)."""
    out = crs(
        "get",
        "disyncinstances",
        "--no-headers",
        "-o",
        'custom-columns=G:.metadata.generation,R:.status.conditions[?(@.type=="Ready")].status,'
        'O:.status.conditions[?(@.type=="Ready")].observedGeneration',
    )
    return sum(1 for line in out.splitlines() if (f := line.split()) and f[1] == "True" and f[0] == f[2])


def test_10000_resources_ready_under_the_charts_memory_limit(
    admin: Kubectl, helm: Path, image: str, emulator: EmulatorProcess
) -> None:
    namespace = f"e2e-mem-{int(time.time())}"
    crs_namespace = f"{namespace}-crs"
    admin.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": namespace, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}},
            }
        )
    )
    admin("create", "namespace", crs_namespace)
    default_credentials(admin, namespace, f"{RELEASE}-credentials")
    kubectl, crs = admin.bound(namespace), admin.bound(crs_namespace)
    repository, _, tag = image.rpartition(":")
    # The chart's default resources; DataWorks' per-account budget (qps) raised for the emulator, so that 10,000
    # starts take a couple of minutes rather than eight.
    sets = [f"image.repository={repository}", f"image.tag={tag}", f"settings.endpoint={emulator.url}"]
    sets += ["settings.qps=100", "settings.maxConcurrency=32"]
    helm_args = ["--kubeconfig", str(admin.kubeconfig), "-n", namespace]
    rows: list[tuple[int, dict[str, float], float]] = []
    kubelet_view: dict[str, float] = {}
    try:
        subprocess.run(
            [str(helm), *helm_args, "install", RELEASE, str(CHART), *[a for s in sets for a in ("--set", s)]],
            check=True,
            capture_output=True,
            timeout=300,
        )
        wait_ready_pods(kubectl, 2)
        holder = wait_for(lambda: leader(kubectl), timeout=60, what="a leader")
        pod_name = holder.split("/")[0]

        (leader_pod,) = [p for p in pods(kubectl) if p["metadata"]["name"] == pod_name]

        def sample(count: int, since: float, cpu_before: float) -> float:
            figures = cgroup_figures(leader_pod)
            cores = (figures["cpu_seconds"] - cpu_before) / (time.monotonic() - since)
            rows.append((count, figures, cores))
            return figures["cpu_seconds"]

        # Idle: the leader's CPU over a 20-s window with nothing to reconcile (the window is the measurement).
        t, cpu = time.monotonic(), cgroup_figures(leader_pod)["cpu_seconds"]
        wait_for(lambda: time.monotonic() - t >= 20, timeout=30, interval=1, what="a 20-s idle window")
        cpu = sample(0, t, cpu)
        created = 0
        for target in (1_000, 10_000):
            t = time.monotonic()
            create(crs, list(range(1000 + created, 1000 + target)))
            created = target
            wait_for(lambda n=target: ready_count(crs) >= n, timeout=1800, interval=5, what=f"{target} Ready")
            cpu = sample(target, t, cpu)
        kubelet_view = cadvisor(admin, pod_name)
        statuses = [c for p in pods(kubectl) for c in p["status"].get("containerStatuses", [])]
        killed = [c["lastState"]["terminated"]["reason"] for c in statuses if c.get("lastState", {}).get("terminated")]
        assert killed == [], f"containers terminated: {killed}"
        assert [restarts(p) for p in pods(kubectl)] == [0, 0]
    finally:
        cleanup(admin, helm, [namespace, crs_namespace], namespace)
    peak = max(r[1]["peak"] for r in rows)
    assert peak < LIMIT
    mib = 2**20
    print(
        "\n[P6] leader pod, chart defaults (requests 50m/128Mi, limits 1 CPU/512Mi), from its cgroup (memory, cpuacct)"
    )
    print("  Ready CRs | working set | RSS (anon) | peak (max usage) | CPU (cores over the phase)")
    for count, f, cores in rows:
        print(
            f"  {count:>9,} | {f['working_set'] / mib:7.1f} MiB | {f['rss'] / mib:6.1f} MiB | "
            f"{f['peak'] / mib:12.1f} MiB | {cores:.3f}"
        )
    print(
        f"[memory] 10,000 Ready, no OOMKill, no restart; peak {peak / mib:.1f} MiB against the 512 MiB limit; the "
        f"kubelet's cAdvisor at 10,000: working set {kubelet_view['container_memory_working_set_bytes'] / mib:.1f} "
        f"MiB, max usage {kubelet_view['container_memory_max_usage_bytes'] / mib:.1f} MiB"
    )
