"""The README's first command: `make run`, in its one-shot mode, reaches Ready for every example.

CI runs `make test` in a fresh clone, so this runs `make run` in a fresh clone too.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.cluster


def test_make_run_once_reaches_ready_for_every_example(tmp_path: Path, control_plane: object) -> None:
    # `control_plane` only guarantees the binaries are built (and cached) before the clock starts.
    env = {**os.environ, "DISYNC_DEV_ONCE": "1", "DISYNC_DEV_WORKDIR": str(tmp_path / "dev-cluster")}
    result = subprocess.run(
        ["make", "--no-print-directory", "run", "RUN_ARGS=--timeout 120"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    documents = [
        doc
        for path in sorted((REPO / "examples").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc.get("kind") == "DISyncInstance"
    ]
    assert documents, "examples/ has no DISyncInstance"
    assert f"all {len(documents)} examples Ready in" in output
    assert "kubeconfig:" in output
    assert "operator metrics at http://127.0.0.1:" in output
    assert "ERROR" not in output  # e.g. the API server still warming up the new CRD's storage
    # A table is printed when a row changes, not when only its AGE does.
    tables = output.split("\nNAME ")[1:]
    assert len(tables) <= 3 * 3 + 1, len(tables)
    # The last table it printed shows every example with READY True.
    last_table = output.rsplit("\nNAME ", 1)[1].splitlines()[1:]
    rows = {line.split()[0]: line for line in last_table if line.strip() and not line.startswith("[")}
    for doc in documents:
        assert " True " in rows[doc["metadata"]["name"]], rows


def test_ctrl_c_stops_make_run_cleanly(tmp_path: Path, control_plane: object) -> None:
    """Ctrl-C reaches the whole foreground process group: `make run`'s command (`disync-operator dev`) stops
    everything and exits 0; make itself then reports the interrupt, as for any target."""
    import signal
    import time

    env = {**os.environ, "DISYNC_DEV_WORKDIR": str(tmp_path / "dev-cluster")}
    env.pop("DISYNC_DEV_ONCE", None)
    log = tmp_path / "run.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(REPO / ".venv" / "bin" / "disync-operator"), "dev"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 180
            while "example DISyncInstances" not in log.read_text() and time.monotonic() < deadline:
                assert process.poll() is None, log.read_text()[-3000:]
                time.sleep(0.2)  # polling a log file for a line, with a deadline
            assert "example DISyncInstances" in log.read_text(), log.read_text()[-3000:]
            os.killpg(process.pid, signal.SIGINT)  # what a terminal sends on Ctrl-C
            code = process.wait(timeout=150)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "exited unexpectedly" not in output
    assert "[dev] shutting down" in output
