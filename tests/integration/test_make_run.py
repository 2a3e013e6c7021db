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
    # The last table it printed shows every example with READY True.
    last_table = output.rsplit("\nNAME ", 1)[1].splitlines()[1:]
    rows = {line.split()[0]: line for line in last_table if line.strip() and not line.startswith("[")}
    for doc in documents:
        assert " True " in rows[doc["metadata"]["name"]], rows
