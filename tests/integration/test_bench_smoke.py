"""The benchmark harness at its smallest size, so it cannot rot. Only its shape is checked: numbers depend on the
machine (and on whatever else runs on it), so none is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]


def test_small_benchmark_writes_every_section(tmp_path: Path) -> None:
    # A subprocess, as `make bench` runs it: its own control plane, emulator and operators, none shared with tests.
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--small", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]

    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["small"] is True
    assert {"cpu_model", "cores", "memory_gib", "python", "kube_apiserver"} <= data["machine"].keys()
    assert {"qps", "max_concurrency", "emulator_latency_ms", "observe_interval"} <= data["conditions"].keys()
    sections = data["sections"]
    assert set(sections) == {"P1", "P2", "P3", "P4", "P5", "VS"}
    for name, section in sections.items():
        assert "error" not in section, (name, section)
    assert {"seconds", "starts"} <= sections["P1"]["floor"].keys()
    assert {"seconds", "starts"} <= sections["P1"]["operator"].keys()
    assert "ratio" in sections["P1"]
    assert [r["crs"] for r in sections["P2"]["readings"]] == [0, 50]
    assert all("rss_bytes" in r for r in sections["P2"]["readings"])
    assert {"starts", "verifies", "idle_seconds", "all_reconciled_seconds"} <= sections["P3"].keys()
    assert {"p50_ms", "p95_ms", "p99_ms"} <= sections["P4"].keys()
    for side in ("on", "off"):
        assert {"p50_ms", "p95_ms", "p99_ms", "starts", "window_apiserver_requests"} <= sections["P5"][side].keys()
        assert sections["P5"][side]["starts"] == sections["P5"]["burst"]
    on = sections["P5"]["on"]
    assert {"secret_gets_per_pass", "observe_period_projected_seconds", "run_dataworks_calls"} <= on.keys()
    assert "ratio" in sections["P5"]
    contenders = sections["VS"]["contenders"]
    assert set(contenders) == {"floor", "kopf", "kopf+delete", "operator"}
    for name, row in contenders.items():
        assert row["burst_starts"] == [50], name  # every contender started each CR exactly once
    for name in ("kopf", "kopf+delete", "operator"):
        assert {"ratio_to_floor", "steady_p50_ms", "steady_p99_ms", "apiserver_requests_per_cr"} <= contenders[
            name
        ].keys()
    assert set(contenders["operator"]["rss_mib"]) == {"0", "50"}
    assert set(data["targets"]) == {"P1", "P2", "P3", "P4", "P5", "VS burst", "VS steady", "VS memory"}

    markdown = (tmp_path / "latest.md").read_text()
    for heading in (
        "## P1",
        "## P2",
        "## P3",
        "## P4",
        "## P5",
        "## VS",
        "## Targets",
        "**Machine:**",
        "**Conditions:**",
    ):
        assert heading in markdown
