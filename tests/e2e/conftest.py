"""The operator as it ships, on a real node: the image built from the Dockerfile (hack/build-image.sh) loaded into the
node's containerd, installed by Helm and by kustomize, talking to the DataWorks emulator on the host end of the
node's veth (hack/node.sh).

The node: if one is up (`make node` in another terminal) the suite uses it; otherwise it starts one and stops it at
the end, checking that nothing is left behind. Needs root, like the node.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_support import HACK, HOST_IP, IMAGE, Node, emulator_registry, leftovers

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess
from disync_operator.devstack.waiting import wait_for


def _last_line(argv: list[str], timeout: float = 3600) -> str:
    """Run a hack/ build script (its progress goes to stderr, straight to the terminal) and return its answer."""
    result = subprocess.run(argv, stdout=subprocess.PIPE, text=True, timeout=timeout, check=True)
    return result.stdout.strip().splitlines()[-1]


def _node_status() -> Path | None:
    result = subprocess.run(["bash", str(HACK / "node.sh"), "status"], capture_output=True, text=True, check=False)
    return Path(result.stdout.strip()) if result.returncode == 0 else None


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
            proc.send_signal(signal.SIGTERM)  # what Ctrl-C does; a background shell ignores SIGINT
            proc.wait(timeout=180)
            left = leftovers()
            assert not left, f"the node left these behind: {left}"


@pytest.fixture(scope="session")
def admin(node: Node) -> Kubectl:
    return node.kubectl


@pytest.fixture(scope="session")
def image(node: Node) -> str:
    # `make e2e` builds it first (outside any test's timeout) and names it here; a bare pytest run builds it.
    archive = os.environ.get("E2E_IMAGE_ARCHIVE") or _last_line(["bash", str(HACK / "build-image.sh")])
    subprocess.run(["bash", str(HACK / "node-load-image.sh"), archive], check=True, timeout=600)
    return IMAGE


@pytest.fixture(scope="session")
def helm() -> Path:
    return Path(_last_line(["bash", str(HACK / "build-tool.sh"), "helm"]))


@pytest.fixture(scope="session")
def emulator(node: Node, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """DataWorks, outside the cluster as the cloud is: on the host end of the veth, reached by address."""
    registry = emulator_registry(tmp_path_factory.mktemp("emulator") / "registry.yaml")
    emu = EmulatorProcess(config=registry, args=["--host", HOST_IP]).start()
    try:
        yield emu
    finally:
        emu.stop()
