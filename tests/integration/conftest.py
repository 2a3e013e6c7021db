"""Fixtures for end-to-end tests: the CRD installed, an emulator, and the operator as a real process."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from disync_operator.devstack.controlplane import ControlPlane
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "deploy" / "crds" / "disyncinstances.yaml"
EMULATOR_CONFIG = Path(__file__).parent / "data" / "emulator.yaml"

# Fast policy for tests: short backoff, frequent observation, a short lease on foreign start intents.
FAST = {
    "DISYNC_BACKOFF_BASE": "0.2",
    "DISYNC_BACKOFF_FACTOR": "2",
    "DISYNC_BACKOFF_CAP": "3",
    "DISYNC_OBSERVE_INTERVAL": "1",
    "DISYNC_RESYNC_INTERVAL": "3",
    "DISYNC_START_LEASE_SECONDS": "4",
    "DISYNC_CONNECT_TIMEOUT": "1",
    "DISYNC_READ_TIMEOUT": "2.5",
    "DISYNC_LOG_FORMAT": "json",
}


@pytest.fixture(scope="session")
def crd(admin_kubectl: Kubectl) -> None:
    admin_kubectl("apply", "--server-side", "-f", str(CRD))
    admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/disyncinstances.disync.dev")


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(config=EMULATOR_CONFIG).start()
    yield process
    process.stop()


@pytest.fixture
def start_operator(
    crd: None, control_plane: ControlPlane, emulator: EmulatorProcess, namespace: str
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(env: dict[str, str] | None = None, kubeconfig: Path | None = None) -> OperatorProcess:
        process = OperatorProcess(
            kubeconfig=kubeconfig or control_plane.kubeconfig,
            endpoint=emulator.url,
            env={**FAST, "DISYNC_NAMESPACES": json.dumps([namespace]), **(env or {})},
        )
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator()
