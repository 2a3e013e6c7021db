"""Fixtures for the reliability suite: a large emulator registry, the operator as killable processes.

The control plane, namespaces and kubectl come from tests/conftest.py; the e2e helpers (`dsi`, `condition`, ...)
are imported from tests/integration, so both suites build manifests the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from rel_helpers import FAST, write_emulator_config

from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess


@pytest.fixture
def emulator_config(tmp_path: Path) -> Path:
    """A registry with 600 real-time tasks (file ids 1000..1599) in project 10000, plus the secret/STS keys."""
    return write_emulator_config(tmp_path / "emulator.yaml", count=600)


@pytest.fixture
def emulator(emulator_config: Path) -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(config=emulator_config).start(timeout=60)
    yield process
    process.stop()


@pytest.fixture
def start_operator(
    launch_operator: Callable[[str, dict[str, str]], OperatorProcess], emulator: EmulatorProcess
) -> Callable[..., OperatorProcess]:
    """Start an operator process watching the test's namespace; all are SIGKILLed at teardown."""

    def start(env: dict[str, str] | None = None) -> OperatorProcess:
        return launch_operator(emulator.url, {**FAST, **(env or {})})

    return start
