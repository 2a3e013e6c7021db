"""The emulator and the operator as real child processes, as they run in production: separate from the caller.

Tests kill them (SIGKILL) to prove crash safety, read the emulator's request log over its admin API, and read the
operator's log file to check what it printed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from disync_operator.devstack.controlplane import _die_with_parent, free_port
from disync_operator.devstack.waiting import wait_for

DEMO_ACCESS_KEY_ID = "LTAIdemoAccessKeyId"
DEMO_ACCESS_KEY_SECRET = "demo-secret-not-real"


def _python_module(*args: str, python: str | None = None) -> list[str]:
    return [python or sys.executable, "-m", "disync_operator", *args]


@dataclass
class EmulatorProcess:
    config: Path | None = None
    args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    url: str = field(init=False, default="")
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def start(self, timeout: float = 30) -> EmulatorProcess:
        folder = Path(tempfile.mkdtemp(prefix="disync-emulator-"))
        ready = folder / "url"
        self.log_path = self.log_path or folder / "emulator.log"
        argv = _python_module(
            "emulator", "--port", "0", "--ready-file", str(ready), "--log-level", "WARNING", *self.args
        )
        if self.config is not None:
            argv += ["--config", str(self.config)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)

        def listening() -> str | None:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"emulator exited {self._proc.returncode}: {self.log_tail()}")
            return ready.read_text().strip() if ready.exists() and ready.read_text().strip() else None

        self.url = wait_for(listening, timeout=timeout, what="the emulator to listen")
        return self

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_emulator/{path}", json=body, timeout=30)
        response.raise_for_status()
        return response.json() if response.content else None

    def requests(self, action: str | None = None) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._admin("GET", "requests")
        if isinstance(entries, dict):
            entries = entries.get("requests", [])
        return [e for e in entries if action is None or e.get("action") == action]

    def clear_requests(self) -> None:
        self._admin("DELETE", "requests")

    def counters(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = self._admin("GET", "counters")
        return result

    def instances(self) -> list[dict[str, Any]]:
        result = self._admin("GET", "instances")
        return result.get("instances", result) if isinstance(result, dict) else result  # type: ignore[no-any-return]

    def set_faults(self, **faults: Any) -> None:
        self._admin("PUT", "faults", faults)

    def console_start(self, file_id: int, project: int = 10000) -> dict[str, Any]:
        """Start the task as a person in the DataWorks console would (no API call in the request log)."""
        view: dict[str, Any] = self._admin("POST", f"console/{project}/{file_id}/start")
        return view

    def console_stop(self, file_id: int, project: int = 10000) -> dict[str, Any]:
        """Stop the task as a person in the DataWorks console would (no API call in the request log)."""
        view: dict[str, Any] = self._admin("POST", f"console/{project}/{file_id}/stop")
        return view

    def fail(
        self,
        file_id: int,
        *,
        times: int | None = None,
        run_seconds: float = 0.0,
        state: str = "NORUN",
        project: int = 10000,
    ) -> dict[str, Any]:
        """Make the task fail: now if it runs, and after each of the next `times` starts (None: every one)."""
        body = {"times": times, "run_seconds": run_seconds, "state": state}
        view: dict[str, Any] = self._admin("POST", f"console/{project}/{file_id}/fail", body)
        return view

    def starts(self, file_id: int | None = None, outcome: str | None = "success") -> list[dict[str, Any]]:
        """StartDISyncInstance calls in the log (by default the ones that took effect), optionally for one file."""
        found = []
        for entry in self.requests("StartDISyncInstance"):
            if file_id is not None and str(entry.get("params", {}).get("FileId")) != str(file_id):
                continue
            # A start whose response was dropped or truncated still took effect: its code is "success" too.
            if outcome is not None and entry.get("code") != outcome:
                continue
            found.append(entry)
        return found


@dataclass
class OperatorProcess:
    kubeconfig: Path | None  # None: no KUBECONFIG (in-cluster identity, from the environment and files)
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    stream: bool = False  # True: logs go to our own stdout (the dev stack), not to a file
    python: str | None = None  # the interpreter to run it with (bench/: a runtime-only virtualenv); default ours
    wrapper: list[str] = field(default_factory=list)  # a command the operator runs under (e.g. `unshare ...`)
    # The whole command instead of `<python> -m disync_operator run`, e.g. an install's `disync-operator run` script.
    command: list[str] | None = None
    liveness_port: int = field(init=False, default=0)
    metrics_port: int = field(init=False, default=0)
    _proc: subprocess.Popen[bytes] | None = field(init=False, default=None)

    def start(self, timeout: float = 30, wait: bool = True) -> OperatorProcess:
        folder = Path(tempfile.mkdtemp(prefix="disync-operator-"))
        self.log_path = self.log_path or folder / "operator.log"
        self.liveness_port, self.metrics_port = free_port(), free_port()
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("DISYNC_", "ALIBABA_CLOUD_", "KUBERNETES_SERVICE_")) and k != "KUBECONFIG"
            },
            **({"KUBECONFIG": str(self.kubeconfig)} if self.kubeconfig is not None else {}),
            "DISYNC_ENDPOINT": self.endpoint,
            "DISYNC_LIVENESS_PORT": str(self.liveness_port),
            "DISYNC_METRICS_PORT": str(self.metrics_port),
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET,
            # The local stack has one tenant: every namespace may use the (emulator's) operator identity.
            "DISYNC_DEFAULT_CREDENTIALS_NAMESPACES": '["*"]',
            **self.env,
        }
        with self.log_path.open("ab") as log:
            output = None if self.stream else log
            self._proc = subprocess.Popen(
                [*self.wrapper, *(self.command or _python_module("run", python=self.python))],
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
            )
        if wait:
            wait_for(self.ready, timeout=timeout, what=f"the operator to be ready\n{self.log_tail()}")
        return self

    def ready(self) -> bool:
        """/readyz answers 200: leading with its task index loaded, or standing by with the Lease read."""
        return self._probe("/readyz")

    def readiness(self) -> dict[str, Any]:
        """/readyz's body: {"ready", "role" (starting, standby, leader, stopping), "leader"}."""
        body: dict[str, Any] = httpx.get(f"http://127.0.0.1:{self.liveness_port}/readyz", timeout=2).json()
        return body

    def healthy(self) -> bool:
        return self._probe("/healthz")

    def _probe(self, path: str) -> bool:
        if self._proc is None or self._proc.poll() is not None:
            raise RuntimeError(f"operator exited: {self.log_tail()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.liveness_port}{path}", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no final patches: what a node failure or OOM kill looks like."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()

    def terminate(self) -> None:
        """SIGTERM, without waiting: what the kubelet sends first when a pod goes (a rollout, a drain)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()

    def wait(self, timeout: float) -> int:
        assert self._proc is not None
        return self._proc.wait(timeout)

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self, timeout: float = 20) -> int | None:
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        return self._proc.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
