"""Shared fixtures: a real control plane (session) with the CRD, a fresh namespace per test, a kubectl bound to both,
and operator processes watching that namespace.

The control plane starts only when a test asks for it, so unit tests run without it.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from disync_operator.devstack.controlplane import ControlPlane, running_control_plane, service_account_user
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import OperatorProcess
from secret_scan import assert_nothing_secret_emitted

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "deploy" / "crds" / "disyncinstances.yaml"

# Identities the deployment tests need as static tokens (as a real cluster would hand a ServiceAccount a token).
OPERATOR_SA = ("disync-system", "disync-operator")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    identities = [service_account_user(*OPERATOR_SA)]
    with running_control_plane(identities, work_dir=tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def runtime_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The operator as the image installs it: the built wheel in a fresh virtualenv with the runtime dependencies
    only (no test or dev extras). Returns that virtualenv's python."""
    folder = tmp_path_factory.mktemp("runtime-install")
    quiet = ["-q", "--disable-pip-version-check"]
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *quiet, "--no-deps", "-w", str(folder), str(REPO)], check=True
    )
    (wheel,) = folder.glob("disync_operator-*.whl")
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", *quiet, str(wheel)], check=True)
    return python


@pytest.fixture(scope="session")
def admin_kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubectl_path, control_plane.kubeconfig)


@pytest.fixture
def namespace(admin_kubectl: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    # A short readable prefix from the test name helps when reading apiserver state after a failure.
    stem = "".join(c for c in request.node.name.lower() if c.isalnum())[:40]
    name = f"t-{stem}-{secrets.token_hex(3)}"
    admin_kubectl("create", "namespace", name)
    yield name
    # No controller-manager runs, so the namespace would stay Terminating; deleting its objects is enough.
    admin_kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def kubectl(admin_kubectl: Kubectl, namespace: str) -> Kubectl:
    return admin_kubectl.bound(namespace)


@pytest.fixture(scope="session")
def crd(admin_kubectl: Kubectl) -> None:
    admin_kubectl("apply", "--server-side", "-f", str(CRD))
    admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/disyncinstances.disync.dev")


@pytest.fixture
def launch_operator(
    crd: None, control_plane: ControlPlane, namespace: str, admin_kubectl: Kubectl
) -> Iterator[Callable[[str, dict[str, str]], OperatorProcess]]:
    """`launch(endpoint, env)` starts an operator process watching the test's namespace (each suite's
    `start_operator` picks the emulator and the settings). All are SIGKILLed at teardown: no test needs a clean
    shutdown after its assertions, and a graceful one costs seconds each."""
    started: list[OperatorProcess] = []

    def launch(endpoint: str, env: dict[str, str]) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig=control_plane.kubeconfig,
            endpoint=endpoint,
            env={"DISYNC_NAMESPACES": json.dumps([namespace]), **env},
        )
        started.append(process)
        return process.start(timeout=60)

    yield launch
    try:
        assert_nothing_secret_emitted(admin_kubectl.bound(namespace), started)
    finally:
        for process in started:
            process.kill()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A plain run (`make test`) deselects `@pytest.mark.slow`; any explicit `-m` (e.g. `make chaos`) decides itself."""
    if config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
