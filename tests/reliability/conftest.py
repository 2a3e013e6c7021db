"""Fixtures for the reliability suite: a large emulator registry, the operator as killable processes.

The control plane, namespaces and kubectl come from tests/conftest.py; the e2e helpers (`dsi`, `condition`, ...)
are imported from tests/integration, so both suites build manifests the same way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from rel_helpers import CRD, FAST, write_emulator_config

from disync_operator.devstack.controlplane import ControlPlane
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess


@pytest.fixture(scope="session")
def crd(admin_kubectl: Kubectl) -> None:
    admin_kubectl("apply", "--server-side", "-f", str(CRD))
    admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/disyncinstances.disync.dev")


@pytest.fixture
def emulator_config(tmp_path: Path) -> Path:
    """A registry with 600 real-time tasks (file ids 1000..1599) in project 10000, plus the secret/STS keys."""
    return write_emulator_config(tmp_path / "emulator.yaml", count=600)


@pytest.fixture
def emulator(emulator_config: Path) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(config=emulator_config).start()
    yield process
    process.stop()


@pytest.fixture
def start_operator(
    crd: None, control_plane: ControlPlane, emulator: EmulatorProcess, namespace: str
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start an operator process watching the test's namespace; all are stopped at teardown."""
    started: list[OperatorProcess] = []

    def start(env: dict[str, str] | None = None, wait: bool = True) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig=control_plane.kubeconfig,
            endpoint=emulator.url,
            env={**FAST, "DISYNC_NAMESPACES": json.dumps([namespace]), **(env or {})},
        )
        started.append(process)
        return process.start(timeout=60, wait=wait)

    yield start
    # SIGKILL: these tests prove the operator needs no clean shutdown, and a graceful one costs seconds each.
    for process in started:
        process.kill()
