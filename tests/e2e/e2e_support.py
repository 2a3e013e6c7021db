"""Helpers and constants of the e2e suite (tests/e2e/conftest.py holds its fixtures)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET
from disync_operator.devstack.waiting import WaitTimeout, wait_for

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
CHART = REPO / "deploy" / "helm" / "disync-operator"
HOST_IP = "10.99.0.1"  # the host end of the node's veth (hack/node.sh)
NODE_NAME = "disync-node"
IMAGE = os.environ.get("IMAGE", "localhost/disync-operator:e2e")
RELEASE = "disync-operator"  # the release name that gives the chart's objects deploy/'s names
NODE_DIR = Path(os.environ.get("DISYNC_NODE_DIR", "/tmp/disync-node"))


def leftovers() -> list[str]:
    """What a stopped node must not leave: its netns, its veth, its cgroups, its run directory."""
    found = []
    if Path("/run/netns/disync-node").exists():
        found.append("netns /run/netns/disync-node")
    if subprocess.run(["ip", "link", "show", "dsn-host"], capture_output=True, check=False).returncode == 0:
        found.append("link dsn-host")
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if (hierarchy / "disync-node").exists():
            found.append(f"cgroup {hierarchy / 'disync-node'}")
    run_dir = Path(os.environ.get("DISYNC_NODE_DIR", "/tmp/disync-node"))
    if run_dir.exists():
        found.append(f"directory {run_dir}")
    mounts = Path("/proc/self/mounts").read_text()
    found += [f"mount {line.split()[1]}" for line in mounts.splitlines() if str(run_dir) in line.split()[1]]
    return found


@dataclass(frozen=True)
class Node:
    kubeconfig: Path
    kubectl: Kubectl


# Registry: the demo's tasks (examples/) and file ids 1..BULK_FILES for the tests that create many resources.
BULK_FILES = 10_000
PROJECT_ID = 10000


def emulator_registry(path: Path) -> Path:
    lines = [
        "access_keys:",
        f"  - {{id: {DEMO_ACCESS_KEY_ID}, secret: {DEMO_ACCESS_KEY_SECRET}, projects: '*'}}",
        "projects:",
        f"  - id: {PROJECT_ID}",
        "    tasks:",
        "      - {file_id: 100, task_type: DI_REALTIME, name: orders_realtime}",
        "      - {file_id: 101, task_type: DI_REALTIME, name: users_realtime}",
        "      - {file_id: 200, task_type: DI_SOLUTION, name: warehouse_solution}",
        *(f"      - {{file_id: {i}, task_type: DI_REALTIME, name: bulk_{i}}}" for i in range(1000, 1000 + BULK_FILES)),
        f"request_log_size: {4 * BULK_FILES + 100_000}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def restricted_namespace(admin: Kubectl, prefix: str) -> str:
    name = f"{prefix}-{secrets.token_hex(3)}"
    admin.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": name,
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            }
        )
    )
    return name


def default_credentials(admin: Kubectl, namespace: str, name: str) -> None:
    """The operator's default AccessKey, as deploy/examples/credentials-secret.yaml has a user make it (the emulator's
    demo key)."""
    admin.bound(namespace)(
        "create",
        "secret",
        "generic",
        name,
        f"--from-literal=ALIBABA_CLOUD_ACCESS_KEY_ID={DEMO_ACCESS_KEY_ID}",
        f"--from-literal=ALIBABA_CLOUD_ACCESS_KEY_SECRET={DEMO_ACCESS_KEY_SECRET}",
    )


def pods(kubectl: Kubectl, selector: str = "app.kubernetes.io/name=disync-operator") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.get_json("pods", "-l", selector)["items"]
    return items


def ready_pods(kubectl: Kubectl, count: int) -> list[dict[str, Any]] | None:
    """The operator's pods once exactly `count` are Running and Ready (and none is terminating)."""
    found = [p for p in pods(kubectl) if not p["metadata"].get("deletionTimestamp")]
    ready = [
        p
        for p in found
        if p["status"].get("phase") == "Running"
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]
    return ready if len(ready) == count == len(found) else None


def diagnose(kubectl: Kubectl) -> str:
    """What a failed wait shows: the operator's pods, the namespace's last Events, each pod's last log lines."""
    parts = [kubectl.run("get", "pods", "-o", "wide", check=False).stdout]
    events = kubectl.run("get", "events", "--sort-by=.lastTimestamp", check=False).stdout.splitlines()
    parts.append("\n".join(events[-15:]))
    for pod in pods(kubectl):
        name = pod["metadata"]["name"]
        for previous in ("--previous", None):
            args = ["logs", name, "--tail=15", *([previous] if previous else [])]
            out = kubectl.run(*args, check=False)
            if out.returncode == 0 and out.stdout.strip():
                parts.append(f"--- {name} {previous or ''}\n{out.stdout[-3000:]}")
    return "\n".join(parts)


def wait_ready_pods(kubectl: Kubectl, count: int, timeout: float = 180) -> list[dict[str, Any]]:
    try:
        return wait_for(lambda: ready_pods(kubectl, count), timeout=timeout, interval=0.5, what=f"{count} pods Ready")
    except WaitTimeout as error:
        raise AssertionError(f"{error}\n{diagnose(kubectl)}") from None


def restarts(pod: dict[str, Any]) -> int:
    return sum(int(c.get("restartCount", 0)) for c in pod["status"].get("containerStatuses", []))


def all_ready(kubectl: Kubectl, names: list[str]) -> bool:
    items = kubectl.get_json("disyncinstances")["items"]
    by_name = {i["metadata"]["name"]: i for i in items}
    for name in names:
        item = by_name.get(name)
        if item is None:
            return False
        conditions = {c["type"]: c for c in item.get("status", {}).get("conditions", [])}
        ready = conditions.get("Ready")
        if not ready or ready["status"] != "True" or ready.get("observedGeneration") != item["metadata"]["generation"]:
            return False
    return True


def leader(kubectl: Kubectl) -> str | None:
    """The holder of the operator's Lease (the pod name is its identity's prefix)."""
    lease = kubectl.run("get", "lease", "disync-operator", "-o", "json", check=False)
    if lease.returncode != 0:
        return None
    holder: str | None = json.loads(lease.stdout)["spec"].get("holderIdentity")
    return holder or None


def elapsed(since: float) -> float:
    return time.monotonic() - since


def cleanup(admin: Kubectl, helm: Path, namespaces: list[str], release_namespace: str) -> None:
    """Leave the node as we found it, whatever the tests got to: resources deleted while an operator may still run
    (their tasks stopped), the release, finalizers nobody will remove any more, the CRD Helm keeps, namespaces."""

    def delete_collections() -> None:
        # One DELETE of the collection per namespace (`kubectl delete --all` sends one per object). The API server
        # cuts a request at 60 s, which deletes some 5,000 of them: what is left unmarked gets another one.
        for ns in namespaces:
            path = f"/apis/disync.dev/v1alpha1/namespaces/{ns}/disyncinstances"
            admin.run("delete", "--raw", path, check=False, timeout=90)

    def gone() -> bool:
        columns = "custom-columns=D:.metadata.deletionTimestamp"
        out = admin.run("get", "disyncinstances", "-A", "--no-headers", "-o", columns, check=False)
        if out.returncode != 0 or not out.stdout.strip():
            return True
        if "<none>" in out.stdout.split():
            delete_collections()
        return False

    delete_collections()

    # A running operator stops each task and releases its finalizer (10,000 take minutes); without one (already
    # uninstalled), or after the deadline, what is left has its finalizer stripped below.
    if pods(admin.bound(release_namespace)):
        with contextlib.suppress(WaitTimeout):
            wait_for(gone, timeout=900, interval=2, what="the resources to be deleted")
    helm_args = ["--kubeconfig", str(admin.kubeconfig), "-n", release_namespace, "uninstall", RELEASE, "--wait"]
    subprocess.run([str(helm), *helm_args], capture_output=True, check=False, timeout=180)
    left = admin.run("get", "disyncinstances", "-A", "-o", "json", check=False)
    if left.returncode == 0:
        for item in json.loads(left.stdout)["items"]:
            meta = item["metadata"]
            admin.run(
                "-n", meta["namespace"], "patch", "disyncinstance", meta["name"], "--type=merge",
                "-p", '{"metadata":{"finalizers":null}}', check=False,
            )  # fmt: skip
    admin.run("delete", "crd", "disyncinstances.disync.dev", "--ignore-not-found", check=False)
    for ns in namespaces:
        admin.run("delete", "namespace", ns, "--ignore-not-found", "--wait=false", check=False)
