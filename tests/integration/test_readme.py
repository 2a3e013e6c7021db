"""Docs that drift are bugs: every command the README shows is run here or by a named test, and its examples are
accepted by the real API server."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from e2e_helpers import DEADLINE, dsi, wait_ready, wait_reason

from disync_operator.devstack.kubectl import Kubectl, KubectlError
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def console_commands() -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    return [line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith("$ ")]


def source_of(path: str, name: str) -> str:
    source = (REPO / path).read_text()
    assert f"def {name}(" in source, f"{path} has no {name}"
    return source


# How each README command is verified. A command missing here fails test_every_readme_command_is_verified.
MAKE_RUN_TEST = "tests/integration/test_make_run.py::test_make_run_once_reaches_ready_for_every_example"
COVERED_ELSEWHERE = {
    "make test": ".ci/run",
    "make run": MAKE_RUN_TEST,
    "DISYNC_DEV_ONCE=1 make run": MAKE_RUN_TEST,
    "kubectl apply --server-side -k deploy/": "tests/integration/test_deploy.py::test_apply_twice_changes_nothing",
}
RUN_HERE = {"kubectl get disyncinstances", ".venv/bin/disync-operator emulator --help"}


def test_every_readme_command_is_verified() -> None:
    commands = console_commands()
    assert len(commands) >= 5
    unverified = [c for c in commands if c not in COVERED_ELSEWHERE and c not in RUN_HERE]
    assert unverified == []


def test_commands_covered_elsewhere_are_really_run_there() -> None:
    ci_steps = [line.strip() for line in (REPO / ".ci/run").read_text().splitlines() if not line.startswith("#")]
    assert "make test" in ci_steps or "exec make test" in ci_steps
    make_run = source_of("tests/integration/test_make_run.py", "test_make_run_once_reaches_ready_for_every_example")
    assert '"DISYNC_DEV_ONCE": "1"' in make_run
    assert '"run"' in make_run
    deploy = source_of("tests/integration/test_deploy.py", "test_apply_twice_changes_nothing")
    assert '"apply", "--server-side", "-k", str(DEPLOY)' in deploy


def test_emulator_help_runs() -> None:
    result = subprocess.run(
        [str(REPO / ".venv/bin/disync-operator"), "emulator", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "--throttle-qps" in result.stdout


@pytest.mark.cluster
def test_the_table_in_the_readme_is_what_kubectl_prints(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    shown = README.split("$ kubectl get disyncinstances\n", 1)[1].split("```", 1)[0].splitlines()
    manifests = [
        ("bad", 999, "DI_REALTIME"),
        ("orders", 100, "DI_REALTIME"),
        ("sol", 200, "DI_SOLUTION"),
    ]
    for name, file_id, task_type in manifests:
        kubectl.apply(dsi(name, file_id=file_id, task_type=task_type))
    wait_ready(kubectl, "orders")
    wait_ready(kubectl, "sol")
    wait_reason(kubectl, "bad", "StartFailed")
    # As the README shows them: after the first look at their live state (the table says what it found).
    wait_reason(kubectl, "orders", "Running")
    wait_for(lambda: kubectl.get_json("disyncinstances", "sol")["status"].get("lastObservedTime"), timeout=DEADLINE)
    printed = kubectl("get", "disyncinstances").splitlines()
    assert printed[0].split() == shown[0].split(), "\n".join(printed)

    # Same rows, same words; only AGE and the RequestIds differ.
    def words(rows: list[str]) -> list[list[str]]:
        return [re.sub(r"RequestId [0-9A-F-]{36}", "RequestId <id>", row).split()[:-1] for row in rows]

    assert words(printed[1:]) == words(shown[1:]), "\n".join(printed)


@pytest.mark.cluster
def test_the_resource_example_in_the_readme_is_accepted(kubectl: Kubectl, crd: None) -> None:
    block = README.split("## The resource\n", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    manifest = yaml.safe_load(block)
    del manifest["metadata"]["namespace"]
    kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump(manifest))


@pytest.mark.cluster
def test_the_error_quoted_in_the_readme_is_the_api_servers(kubectl: Kubectl, crd: None) -> None:
    quoted = README.split("e.g.:\n\n```text\n", 1)[1].split("\n```", 1)[0]
    manifest = {
        "apiVersion": "disync.dev/v1alpha1",
        "kind": "DISyncInstance",
        "metadata": {"name": "bad"},
        "spec": {"projectId": 10000, "taskType": "DI_REALTIME", "fileId": 100},
    }
    with pytest.raises(KubectlError) as refused:
        kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    assert quoted in refused.value.stderr
