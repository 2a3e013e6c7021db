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


def run_dev(*, once: bool, timeout: float, examples: Path) -> int:
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
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
        say("CRD installed; starting the operator (logs below)")
        operator = OperatorProcess(
            kubeconfig=plane.kubeconfig,
            endpoint=emulator.url,
            env={"DISYNC_LOG_FORMAT": "plain", "DISYNC_OBSERVE_INTERVAL": "5", "DISYNC_BACKOFF_CAP": "30"},
            log_path=None,
            stream=True,
        ).start()
        applied = kubectl("apply", "-k" if (examples / "kustomization.yaml").exists() else "-f", str(examples))
        names = [line.split()[0].split("/")[-1] for line in applied.splitlines() if "disyncinstance" in line]
        say(f"applied {len(names)} example DISyncInstances from {examples}")

        deadline = time.monotonic() + timeout
        last_table = ""
        while not stopping:
            if not operator.running:
                say("the operator exited unexpectedly")
                return 1
            table = kubectl.run("get", "disyncinstances", check=False).stdout
            if table != last_table:
                print("\n" + table, flush=True)
                last_table = table
            items = kubectl.get_json("disyncinstances")["items"]
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
        say(f"failed: {error}")
        return 1
    finally:
        say("shutting down")
        if operator is not None:
            operator.stop()
        emulator.stop()
        plane.stop()
        sys.stdout.flush()
