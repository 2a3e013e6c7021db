"""The operator as it ships, on a real node: the image built from the Dockerfile (hack/build-image.sh) loaded into the
node's containerd, installed by Helm and by kustomize, talking to the DataWorks emulator on the host end of the
node's veth (hack/node.sh).

The node: if one is up (`make node` in another terminal) the suite uses it; otherwise it starts one and stops it at
the end, checking that nothing is left behind. Needs root, like the node.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, EmulatorProcess
from disync_operator.devstack.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
HACK = REPO / "hack"
CHART = REPO / "deploy" / "helm" / "disync-operator"
HOST_IP = "10.99.0.1"  # the host end of the node's veth (hack/node.sh)
NODE_NAME = "disync-node"
IMAGE = os.environ.get("IMAGE", "localhost/disync-operator:e2e")
RESTRICTED = "pod-security.kubernetes.io/enforce=restricted"


def _last_line(argv: list[str], timeout: float = 3600) -> str:
    """Run a hack/ build script (its progress goes to stderr, straight to the terminal) and return its answer."""
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=timeout, check=True)
    return result.stdout.strip().splitlines()[-1]


def _node_status() -> Path | None:
    result = subprocess.run(["bash", str(HACK / "node.sh"), "status"], capture_output=True, text=True, check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


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


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    kubectl_bin = Path(_last_line(["bash", str(HACK / "build-controlplane.sh")])) / "kubectl"
    kubeconfig = _node_status()
    proc: subprocess.Popen[bytes] | None = None
    if kubeconfig is None:
        # Builds come first, in the foreground (their progress shows); then the node's own start has a deadline.
        _last_line(["bash", str(HACK / "build-node.sh")])
        log = Path(os.environ.get("E2E_NODE_LOG", "/tmp/disync-e2e-node.log"))
        with log.open("wb") as out:
            proc = subprocess.Popen(["bash", str(HACK / "node.sh"), "up"], stdout=out, stderr=subprocess.STDOUT)

        def up() -> Path | None:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"hack/node.sh exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            return _node_status()

        kubeconfig = wait_for(up, timeout=300, interval=1, what="the node to be Ready")
    try:
        yield Node(kubeconfig, Kubectl(kubectl_bin, kubeconfig))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=180)
            left = leftovers()
            assert not left, f"the node left these behind: {left}"


@pytest.fixture(scope="session")
def admin(node: Node) -> Kubectl:
    return node.kubectl


@pytest.fixture(scope="session")
def image(node: Node) -> str:
    archive = _last_line(["bash", str(HACK / "build-image.sh")])
    subprocess.run(["bash", str(HACK / "node-load-image.sh"), archive], check=True, timeout=600)
    return IMAGE


@pytest.fixture(scope="session")
def helm() -> Path:
    return Path(_last_line(["bash", str(HACK / "build-tool.sh"), "helm"]))


@pytest.fixture(scope="session")
def emulator(node: Node) -> Iterator[EmulatorProcess]:
    """DataWorks, outside the cluster as the cloud is: on the host end of the veth, reached by address."""
    emu = EmulatorProcess(args=["--host", HOST_IP]).start()
    try:
        yield emu
    finally:
        emu.stop()


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
