"""`disync-operator emulator` as a subprocess: ready file, stdout banner, per-request logs, flags, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from disync_operator.cli import main
from disync_operator.emulator.cli import build_config
from disync_operator.emulator.testing import sign_request

AK, SECRET = "LTAIdemoAccessKeyId", "demo-secret-not-real"
TASK: dict[str, str | int] = {"ProjectId": 10000, "FileId": 100, "TaskType": "DI_REALTIME"}


class Running:
    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url

    def finish(self, signum: int = signal.SIGTERM) -> tuple[int, str, str]:
        self.proc.send_signal(signum)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, out, err


def wait_for_file(path: Path, proc: subprocess.Popen[str], timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return path.read_text().strip()
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"emulator exited with {proc.returncode}: {err}")
        time.sleep(0.05)  # polling interval, bounded by the deadline above
    raise AssertionError("emulator did not become ready")


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Running:
        ready = tmp_path / f"ready-{len(procs)}"
        proc = subprocess.Popen(
            [sys.executable, "-m", "disync_operator", "emulator", "--ready-file", str(ready), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        procs.append(proc)
        return Running(proc, wait_for_file(ready, proc))

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def signed_post(url: str, action: str = "GetDISyncInstanceInfo") -> httpx.Response:
    req = sign_request(url, action, TASK, access_key_id=AK, access_key_secret=SECRET)
    return httpx.post(httpx.URL(req.url), headers=req.headers, timeout=10)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_demo_and_exits_cleanly(launch: object, signum: int) -> None:
    running = launch()  # type: ignore[operator]
    assert running.url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{running.url}/_emulator/healthz", timeout=10).json() == {"status": "ok"}
    assert signed_post(running.url).json()["Data"]["Name"] == "orders_realtime"
    code, out, err = running.finish(signum)
    assert code == 0, err
    assert f"emulator listening on {running.url}" in out.splitlines()
    request_lines = [line for line in err.splitlines() if "GetDISyncInstanceInfo" in line]
    assert len(request_lines) == 1
    assert "INFO" in request_lines[0]
    assert "status=200" in request_lines[0]
    assert SECRET not in err
    assert "Traceback" not in err


def test_cli_config_file_and_fault_flags(launch: object, tmp_path: Path) -> None:
    config = tmp_path / "emu.yaml"
    config.write_text(
        "access_keys: [{id: LTAIdemoAccessKeyId, secret: demo-secret-not-real}]\n"
        "projects: [{id: 10000, tasks: [{file_id: 100, task_type: DI_REALTIME, name: from_file}]}]\n"
        "faults: {seed: 1, latency_ms: 0}\n"
    )
    running = launch(  # type: ignore[operator]
        "--config", str(config), "--error-rate", "1", "--fault-actions", "StartDISyncInstance", "--seed", "42"
    )
    faults = httpx.get(f"{running.url}/_emulator/faults", timeout=10).json()
    assert (faults["error_rate"], faults["seed"], faults["actions"]) == (1.0, 42, ["StartDISyncInstance"])
    assert signed_post(running.url).json()["Data"]["Name"] == "from_file"
    assert signed_post(running.url, "StartDISyncInstance").status_code == 500
    code, _, err = running.finish()
    assert code == 0, err


def test_cli_rejects_bad_flags() -> None:
    result = CliRunner().invoke(main, ["emulator", "--error-rate", "2"])
    assert result.exit_code != 0
    assert "invalid emulator configuration" in result.output
    result = CliRunner().invoke(main, ["emulator", "--fault-actions", "Nope"])
    assert result.exit_code != 0
    assert "unknown action" in result.output


def test_build_config_overrides() -> None:
    config = build_config(
        None,
        {"throttle_qps": 3.0, "drop_start_response": 2, "latency_ms": None},
        {"start_wait_seconds": 9.0, "stop_seconds": None, "stop_state": "NORUN"},
    )
    assert (config.faults.throttle_qps, config.faults.drop_start_response, config.faults.latency_ms) == (3.0, 2, 0)
    assert (config.timings.start_wait_seconds, config.timings.stop_seconds, config.timings.stop_state) == (
        9.0,
        0.1,
        "NORUN",
    )
    assert config.access_keys[0].secret.get_secret_value() == SECRET


def test_help_lists_the_command() -> None:
    result = CliRunner().invoke(main, ["emulator", "--help"])
    assert result.exit_code == 0
    assert "--ready-file" in result.output
    assert "--throttle-qps" in result.output
