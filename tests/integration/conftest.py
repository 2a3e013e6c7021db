"""Fixtures for end-to-end tests: an emulator, and the operator as a real process with fast test settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess

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


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(config=EMULATOR_CONFIG).start(timeout=60)
    yield process
    process.stop()


@pytest.fixture
def start_operator(
    launch_operator: Callable[[str, dict[str, str]], OperatorProcess], emulator: EmulatorProcess
) -> Callable[..., OperatorProcess]:
    def start(env: dict[str, str] | None = None) -> OperatorProcess:
        return launch_operator(emulator.url, {**FAST, **(env or {})})

    return start


@pytest.fixture
def operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    return start_operator()
