"""Shared fixtures: a real control plane (session), a fresh namespace per test, a kubectl bound to both.

The control plane starts only when a test asks for it, so unit tests run without it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from disync_operator.devstack.controlplane import ControlPlane, build_binaries, service_account_user
from disync_operator.devstack.kubectl import Kubectl

REPO = Path(__file__).resolve().parents[1]

# Identities the deployment tests need as static tokens (as a real cluster would hand a ServiceAccount a token).
OPERATOR_SA = ("disync-system", "disync-operator")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    bin_dir = build_binaries()
    user, groups = service_account_user(*OPERATOR_SA)
    plane = ControlPlane(bin_dir, token_identities=[(user, groups)], work_dir=tmp_path_factory.mktemp("controlplane"))
    plane.start()
    try:
        yield plane
    finally:
        plane.stop()


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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A plain run (`make test`) deselects `@pytest.mark.slow`; any explicit `-m` (e.g. `make chaos`) decides itself."""
    if config.getoption("markexpr"):
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]
