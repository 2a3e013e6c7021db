"""`disync-operator dev` / `make run`: the whole thing on one machine, no cloud account needed.

A local kube-apiserver + etcd (built from source on first use), the DataWorks emulator with its demo registry,
the CRD, the examples, and the operator in the foreground. Prints the `kubectl get disyncinstances` table as it
changes; Ctrl-C stops everything. `--once` exits 0 as soon as every example is Ready (non-zero with the reason
if not, within `--timeout`), which is how CI proves the README's first command works.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from disync_operator.devstack.controlplane import REPO_ROOT, ControlPlane, ControlPlaneError, build_binaries
from disync_operator.devstack.kubectl import Kubectl, KubectlError
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for


def say(message: str) -> None:
    print(f"[dev] {message}", flush=True)


def ready_summary(items: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(names Ready for their current generation, human-readable reasons for the rest)."""
    ready, waiting = [], []
    for item in items:
        name = item["metadata"]["name"]
        generation = item["metadata"].get("generation")
        conditions = {c["type"]: c for c in item.get("status", {}).get("conditions", [])}
        cond = conditions.get("Ready")
        if cond and cond["status"] == "True" and cond.get("observedGeneration") == generation:
            ready.append(name)
        elif cond:
            waiting.append(f"{name}: Ready={cond['status']} {cond['reason']}: {cond.get('message', '')}")
        else:
            waiting.append(f"{name}: not handled yet")
    return ready, waiting


def rows(items: list[dict[str, Any]]) -> list[tuple[object, ...]]:
    """What the table says of each resource, its AGE left out: the table is printed again only when this changes."""
    summary = []
    for item in items:
        status = item.get("status") or {}
        ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
        summary.append((item["metadata"]["name"], ready.get("status"), ready.get("reason"), status.get("status")))
    return sorted(summary, key=repr)


def run_dev(*, once: bool, timeout: float, examples: Path) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    # Ctrl-C reaches the whole foreground process group (the operator and the emulator too): it is the way to stop,
    # not an error, so both signals end the loop and the run exits 0.
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    say("building or reusing the local control plane (the first build compiles Kubernetes: several minutes)")
    try:
        bin_dir = build_binaries()
    except ControlPlaneError as error:
        say(str(error))
        return 2
    work_dir = Path(os.environ.get("DISYNC_DEV_WORKDIR") or Path.home() / ".cache" / "disync-operator" / "dev-cluster")
    if work_dir.exists():
        shutil.rmtree(work_dir)  # a fresh cluster each run: the demo starts from a known state
    plane = ControlPlane(bin_dir, work_dir=work_dir)
    emulator = EmulatorProcess()
    operator: OperatorProcess | None = None
    started = time.monotonic()
    try:
        plane.start()
        say(f"control plane up at {plane.server} in {time.monotonic() - started:.1f}s")
        say(f"kubeconfig: {plane.kubeconfig}")
        say(f"try:  export KUBECONFIG={plane.kubeconfig}; {plane.kubectl_path} get disyncinstances -A")
        kubectl = Kubectl(plane.kubectl_path, plane.kubeconfig, "default")

        emulator.start()
        say(f"DataWorks emulator (demo registry) at {emulator.url}")

        # -k: deploy/crds/ holds a kustomization.yaml, which `-f <dir>` would try to apply as an object.
        kubectl("apply", "--server-side", "-k", str(REPO_ROOT / "deploy" / "crds"))
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/disyncinstances.disync.dev")
        # Established is not yet served: the first list can still answer "storage is (re)initializing", which the
        # operator would log as an error on a first run.
        wait_for(lambda: kubectl.run("get", "disyncinstances", check=False).returncode == 0, timeout=60, interval=0.2)
        say("CRD installed; starting the operator (logs below)")
        operator = OperatorProcess(
            kubeconfig=plane.kubeconfig,
            endpoint=emulator.url,
            env={"DISYNC_LOG_FORMAT": "plain", "DISYNC_OBSERVE_INTERVAL": "5", "DISYNC_BACKOFF_CAP": "30"},
            log_path=None,
            stream=True,
        ).start()
        say(f"operator metrics at http://127.0.0.1:{operator.metrics_port}/metrics")
        applied = kubectl("apply", "-k" if (examples / "kustomization.yaml").exists() else "-f", str(examples))
        names = [line.split()[0].split("/")[-1] for line in applied.splitlines() if "disyncinstance" in line]
        say(f"applied {len(names)} example DISyncInstances from {examples}")

        deadline = time.monotonic() + timeout
        last_table, last_rows = "", None
        while not stopping:
            if not operator.running:
                if stopping:
                    break
                say("the operator exited unexpectedly")
                return 1
            items = kubectl.get_json("disyncinstances")["items"]
            if rows(items) != last_rows:
                last_table = kubectl.run("get", "disyncinstances", check=False).stdout
                print("\n" + last_table, flush=True)
                last_rows = rows(items)
            ready, waiting = ready_summary([i for i in items if i["metadata"]["name"] in names])
            if once and names and len(ready) == len(names):
                final = kubectl.run("get", "disyncinstances", check=False).stdout
                if final != last_table:
                    print("\n" + final, flush=True)
                say(f"all {len(names)} examples Ready in {time.monotonic() - started:.1f}s")
                return 0
            if once and time.monotonic() > deadline:
                say(f"not every example became Ready within {timeout:.0f}s:")
                for line in waiting:
                    say(f"  {line}")
                return 1
            time.sleep(0.5)  # a UI refresh loop, not test synchronisation
        return 0
    except KeyboardInterrupt:
        return 0
    except (KubectlError, ControlPlaneError, RuntimeError) as error:
        if stopping:
            return 0  # Ctrl-C reached the kubectl we were running too
        say(f"failed: {error}")
        return 1
    finally:
        say("shutting down")
        if operator is not None:
            operator.stop()
        emulator.stop()
        plane.stop()
        sys.stdout.flush()
