"""`make bench --merge` keeps sections this run did not measure, naming the run that did measure them, however many
runs carried them since."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.report import merge_previous


def run(started_at: str, commit: str, sections: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    return {
        "started_at": started_at,
        "commit": commit,
        "machine": {"load_average_at_start": [0.5, 0.5, 0.5]},
        "sections": sections,
        "notes": notes,
    }


def test_a_section_carried_twice_names_the_run_that_measured_it(tmp_path: Path) -> None:
    first = run("day-1", "aaa", {"P1": {"x": 1}, "VS": {"y": 1}}, ["a note of day 1"])
    (tmp_path / "latest.json").write_text(json.dumps(first))
    second = run("day-2", "bbb", {"VS": {"y": 2}}, [])
    merge_previous(second, tmp_path)
    (tmp_path / "latest.json").write_text(json.dumps(second))
    third = run("day-3", "ccc", {"VS": {"y": 3}}, [])
    merge_previous(third, tmp_path)

    assert third["sections"]["P1"]["x"] == 1
    assert third["sections"]["P1"]["from_run"]["commit"] == "aaa"
    carried = [n for n in third["notes"] if "is from the run of" in n]
    assert carried == ["P1 is from the run of day-1 (commit aaa, load average [0.5, 0.5, 0.5] at start)."]
    assert "a note of day 1" in third["notes"]
    assert third["sections"]["VS"] == {"y": 3}
