"""The Helm chart as shipped (only the image and DataWorks' address set) on the real node, in a namespace enforcing the
restricted Pod Security Standard: two pods Ready, the examples Ready, a leader failover with real pods, a rolling
`helm upgrade` under load, the PodDisruptionBudget at work, and what `helm uninstall` leaves.

The tests of this module run in order against one release (module-scoped fixture) and print their figures.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    CHART,
    NODE_DIR,
    NODE_NAME,
    PROJECT_ID,
    RELEASE,
    REPO,
    all_ready,
    cleanup,
    default_credentials,
    leader,
    pods,
    ready_pods,
    restarts,
    restricted_namespace,
    wait_ready_pods,
)

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess
from disync_operator.devstack.waiting import wait_for

EXAMPLES = ["orders-realtime", "users-realtime", "warehouse-solution"]
LEASE_SECONDS = 15  # the chart's settings.leaderLeaseDuration


@dataclass
class Release:
    helm: Path
    namespace: str
    kubectl: Kubectl  # bound to the release namespace
    admin: Kubectl
    examples_namespace: str
    values: list[str]

    def helm_cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(self.helm), "--kubeconfig", str(self.admin.kubeconfig), "--namespace", self.namespace, *args]
        return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=300)


@pytest.fixture(scope="module")
def release(admin: Kubectl, helm: Path, image: str, emulator: EmulatorProcess) -> Iterator[Release]:
    namespace = restricted_namespace(admin, "e2e-helm")
    default_credentials(admin, namespace, f"{RELEASE}-credentials")
    repository, _, tag = image.rpartition(":")
    examples_namespace = f"{namespace}-examples"
    admin("create", "namespace", examples_namespace)
    rel = Release(
        helm,
        namespace,
        admin.bound(namespace),
        admin,
        examples_namespace,
        [
            f"image.repository={repository}",
            f"image.tag={tag}",
            f"settings.endpoint={emulator.url}",
        ],
    )
    try:
        yield rel
    finally:
        cleanup(admin, helm, [namespace, examples_namespace, f"{namespace}-load"], namespace)


def test_helm_install_gives_two_ready_pods_and_ready_examples(release: Release) -> None:
    t0 = time.monotonic()
    sets = [arg for value in release.values for arg in ("--set", value)]
    release.helm_cmd("install", RELEASE, str(CHART), *sets)
    pods = wait_ready_pods(release.kubectl, 2)
    t_pods = time.monotonic() - t0
    examples = release.admin.bound(release.examples_namespace)
    examples("apply", "-k", str(REPO / "examples"))
    t1 = time.monotonic()
    wait_for(lambda: all_ready(examples, EXAMPLES), timeout=120, interval=0.5, what="the examples Ready")
    t_examples = time.monotonic() - t1
    pods = ready_pods(release.kubectl, 2) or []
    assert len(pods) == 2
    assert [restarts(p) for p in pods] == [0, 0]
    assert {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
    print(
        f"\n[helm install] 2 pods Running and Ready {t_pods:.1f}s after `helm install` (restricted namespace, "
        f"image loaded, no pull); the 3 examples Ready {t_examples:.1f}s after apply; restarts 0"
    )


def _evict(pod: str, namespace: str) -> httpx.Response:
    """POST an Eviction as `kubectl drain` does, with the node's admin certificate."""
    pki = NODE_DIR / "pki"
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": namespace}}
    tls = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    tls.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    with httpx.Client(base_url="https://10.99.0.2:6443", verify=tls, timeout=30) as client:
        return client.post(f"/api/v1/namespaces/{namespace}/pods/{pod}/eviction", json=body)


def test_the_pdb_refuses_to_evict_the_last_ready_pod(release: Release) -> None:
    pods = wait_ready_pods(release.kubectl, 2)
    first, second = (p["metadata"]["name"] for p in pods)
    allowed = _evict(first, release.namespace)
    assert allowed.status_code == 201, allowed.text
    refused = _evict(second, release.namespace)
    assert refused.status_code == 429, refused.text
    reason = refused.json().get("message", "")
    assert "disruption budget" in reason, reason
    # The Deployment replaces the evicted pod; the release is whole again for the next test.
    wait_ready_pods(release.kubectl, 2)
    print(f"\n[pdb] evicting {first}: 201; then the last ready pod {second}: {refused.status_code} ({reason})")


def test_deleting_the_leader_pod_hands_over_within_the_lease(release: Release) -> None:
    pods = wait_ready_pods(release.kubectl, 2)
    names = {p["metadata"]["name"] for p in pods}
    holder = wait_for(lambda: leader(release.kubectl), timeout=60, what="a leader")
    old_pod = holder.split("/")[0]
    assert old_pod in names, (holder, names)
    (standby,) = names - {old_pod}
    t0 = time.monotonic()
    release.kubectl("delete", "pod", old_pod, "--grace-period=0", "--force", "--wait=false")

    def standby_leads() -> str | None:
        now = leader(release.kubectl)
        return now if now and now.split("/")[0] == standby else None

    new = wait_for(standby_leads, timeout=LEASE_SECONDS + 30, interval=0.1, what="the standby to lead")
    handover = time.monotonic() - t0
    assert handover <= LEASE_SECONDS + 2, f"the standby led {handover:.1f}s after the leader's pod was deleted"
    wait_ready_pods(release.kubectl, 2)
    print(
        f"\n[failover] leader pod {old_pod} deleted (grace 0): {new} leads after {handover:.1f}s "
        f"(bound {LEASE_SECONDS + 2}s)"
    )


class LeaseWatch(threading.Thread):
    """Polls the Lease every 100 ms and records the longest time nobody led (holder empty or a holder whose pod
    is gone)."""

    def __init__(self, kubectl: Kubectl) -> None:
        super().__init__(daemon=True)
        self.kubectl = kubectl
        self.stop = threading.Event()
        self.longest_gap = 0.0
        self.holders: list[str] = []
        self.polls = 0
        self.started = time.monotonic()

    def run(self) -> None:
        gap_since: float | None = None
        while not self.stop.is_set():
            self.polls += 1
            holder = leader(self.kubectl) or ""
            pod = holder.split("/")[0]
            alive = bool(pod) and self.kubectl.run("get", "pod", pod, "-o", "name", check=False).returncode == 0
            now = time.monotonic()
            if holder and (not self.holders or self.holders[-1] != holder):
                self.holders.append(holder)
            if alive:
                if gap_since is not None:
                    self.longest_gap = max(self.longest_gap, now - gap_since)
                gap_since = None
            elif gap_since is None:
                gap_since = now
            self.stop.wait(0.1)


def _cr(name: str, file_id: int) -> dict[str, Any]:
    return {
        "apiVersion": "disync.dev/v1alpha1",
        "kind": "DISyncInstance",
        "metadata": {"name": name},
        "spec": {
            "projectId": PROJECT_ID,
            "taskType": "DI_REALTIME",
            "fileId": file_id,
            "startParam": {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}},
        },
    }


def test_helm_upgrade_during_200_creates_starts_each_task_once(release: Release, emulator: EmulatorProcess) -> None:
    wait_ready_pods(release.kubectl, 2)
    namespace = f"{release.namespace}-load"
    release.admin("create", "namespace", namespace)
    crs = release.admin.bound(namespace)
    file_ids = list(range(1000, 1200))
    watch = LeaseWatch(release.kubectl)
    watch.start()
    try:
        t0 = time.monotonic()
        sets = [arg for value in [*release.values, "settings.logLevel=DEBUG"] for arg in ("--set", value)]
        release.helm_cmd("upgrade", RELEASE, str(CHART), *sets)
        # Ten creates per request, back to back, while the Deployment rolls.
        for batch in range(0, len(file_ids), 10):
            items = [_cr(f"load-{fid}", fid) for fid in file_ids[batch : batch + 10]]
            crs.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        t_created = time.monotonic() - t0
        release.kubectl("rollout", "status", f"deployment/{RELEASE}", "--timeout=300s")
        names = [f"load-{fid}" for fid in file_ids]
        wait_for(lambda: all_ready(crs, names), timeout=300, interval=1, what="200 resources Ready")
        t_ready = time.monotonic() - t0
    finally:
        watch.stop.set()
        watch.join()
    starts: dict[int, int] = {}
    for entry in emulator.starts():
        fid = int(entry.get("params", {}).get("FileId", 0))
        if fid in file_ids:
            starts[fid] = starts.get(fid, 0) + 1
    duplicates = {fid: n for fid, n in starts.items() if n > 1}
    assert not duplicates, f"started more than once: {duplicates}"
    assert sorted(starts) == file_ids, f"{len(file_ids) - len(starts)} tasks never started"
    pods = ready_pods(release.kubectl, 2) or []
    assert [restarts(p) for p in pods] == [0, 0]
    assert watch.longest_gap <= 2.0, f"no live leader for {watch.longest_gap:.1f}s during the rollout"
    print(
        f"\n[helm upgrade] 200 creates over {t_created:.1f}s during a rolling upgrade; all Ready after {t_ready:.1f}s; "
        f"starts: 200 tasks x 1, 0 duplicates; leaders {len(watch.holders)}; longest time without a live leader "
        f"{watch.longest_gap:.2f}s (bound 2 s; Lease polled every "
        f"{(time.monotonic() - watch.started) / max(watch.polls, 1):.2f}s)"
    )
    crs("delete", "disyncinstances", "--all", "--timeout=300s")
    release.admin("delete", "namespace", namespace, "--wait=false")


def test_helm_uninstall_leaves_the_crd_and_the_resources(release: Release) -> None:
    t0 = time.monotonic()
    release.helm_cmd("uninstall", RELEASE, "--wait", "--timeout", "120s")
    # The pods get their grace period (the operator stops its work and releases the Lease on SIGTERM).
    wait_for(lambda: not pods(release.kubectl), timeout=90, interval=0.5, what="the operator's pods to be gone")
    t_gone = time.monotonic() - t0
    left = release.kubectl.get_json("all,configmap,serviceaccount,role,rolebinding,lease,pdb")["items"]
    # Not the chart's: the namespace's own defaults, the Secret the installer made, and the Lease the operator
    # wrote at run time (Helm never knew it; printed below).
    leases = [i["metadata"]["name"] for i in left if i["kind"] == "Lease"]
    left_kinds = sorted(
        f"{i['kind']}/{i['metadata']['name']}"
        for i in left
        if not (i["kind"] == "ConfigMap" and i["metadata"]["name"] == "kube-root-ca.crt")
        and not (i["kind"] == "ServiceAccount" and i["metadata"]["name"] == "default")
        and i["kind"] != "Lease"
    )
    cluster = release.admin.get_json("clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/instance=" + RELEASE)
    # README: `helm uninstall` keeps the CRD (helm.sh/resource-policy: keep) and every DISyncInstance.
    release.admin("get", "crd", "disyncinstances.disync.dev")
    examples = release.admin.bound(release.examples_namespace).get_json("disyncinstances")["items"]
    assert left_kinds == [], left_kinds
    assert cluster["items"] == [], [i["metadata"]["name"] for i in cluster["items"]]
    assert sorted(i["metadata"]["name"] for i in examples) == sorted(EXAMPLES)
    print(
        f"\n[helm uninstall] left: the CRD and the {len(examples)} examples (as the README says), and the operator's "
        f"Lease {leases} in the release namespace; no pod (gone {t_gone:.1f}s after `helm uninstall`), RBAC or "
        "Service of the chart"
    )
