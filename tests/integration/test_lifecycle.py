"""The declarative lifecycle end to end: the real kube-apiserver, the emulator (its console calls drive drift) and
`disync-operator run` as a process. Suspend/resume, ObserveOnly and its take-over, restartPolicy OnFailure and its
cap, the pause annotation, and what admission refuses. Operator kills between suspend/resume flips are in
tests/reliability/test_lifecycle_flips.py."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from e2e_helpers import DEADLINE, condition, dsi, wait_instance_state, wait_ready, wait_reason

from disync_operator.devstack.kubectl import Kubectl, KubectlError
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster

START, STOP, INFO = "StartDISyncInstance", "StopDISyncInstance", "GetDISyncInstanceInfo"


def calls(emulator: EmulatorProcess, file_id: int, action: str | None = None) -> list[dict[str, Any]]:
    return [e for e in emulator.requests(action) if e["params"].get("FileId") == str(file_id)]


def actions(emulator: EmulatorProcess, file_id: int) -> list[str]:
    """The start and stop calls made for the task, in order (reads left out)."""
    entries = sorted(calls(emulator, file_id), key=lambda e: e["seq"])
    return [e["action"] for e in entries if e["action"] in (START, STOP)]


def patch_spec(kubectl: Kubectl, name: str, **spec: Any) -> None:
    kubectl("patch", "dsi", name, "--type=merge", "-p", json.dumps({"spec": spec}))


def events(kubectl: Kubectl, name: str) -> list[tuple[str, str]]:
    items = kubectl.get_json("events", "--field-selector", f"involvedObject.name={name}")["items"]
    return [(e["type"], e["reason"]) for e in sorted(items, key=lambda e: e["metadata"]["creationTimestamp"])]


def wait_event(kubectl: Kubectl, name: str, reason: str, count: int = 1) -> list[tuple[str, str]]:
    def posted() -> list[tuple[str, str]] | None:
        seen = events(kubectl, name)
        return seen if sum(1 for _, r in seen if r == reason) >= count else None

    return wait_for(posted, timeout=DEADLINE, what=f"{count} {reason} Event(s) for {name}")


def metric(operator: OperatorProcess, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.compile(rf"^{re.escape(name)}(\{{{re.escape(wanted)}\}})? (\S+)$" if labels else rf"^{name} (\S+)$")
    for line in operator.metrics().splitlines():
        match = pattern.match(line)
        if match:
            return float(match.groups()[-1])
    raise AssertionError(f"{name}{{{wanted}}} not exported")


def reconciles(operator: OperatorProcess, source: str) -> float:
    total = 0.0
    for line in operator.metrics().splitlines():
        if line.startswith("disync_reconcile_total{") and f'source="{source}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def table(output: str) -> list[dict[str, str]]:
    """kubectl's table as rows of {COLUMN: value}, cut at the header's column starts (a value may be empty)."""
    header, *rows = output.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{name: row[a:b].strip() for name, (a, b) in zip(names, bounds, strict=True)} for row in rows]


def wait_object(kubectl: Kubectl, name: str, holds: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj: dict[str, Any] = kubectl.get_json("dsi", name)
        return obj if holds(obj) else None

    return wait_for(reached, timeout=DEADLINE, what=f"{name}: {what}")


def operator_looks(operator: OperatorProcess, times: int) -> Callable[[], None]:
    """Call the result to wait until the operator has reconciled `times` more objects (watch events, the sweep's
    visits) than when this was called: a span in which it would have acted on a paused object, had it meant to."""
    before = reconciles(operator, "event") + reconciles(operator, "observe")

    def wait() -> None:
        wait_for(
            lambda: reconciles(operator, "event") + reconciles(operator, "observe") >= before + times,
            timeout=DEADLINE,
            what=f"{times} more reconciles",
        )

    return wait


def sweeps_pass(emulator: EmulatorProcess, file_id: int, passes: int = 3) -> None:
    """Wait until the operator's sweep has read the task's live state `passes` more times (DISYNC_OBSERVE_INTERVAL
    is 1 s here): a span in which it would have acted, had it meant to."""
    seen = len(calls(emulator, file_id, INFO))
    wait_for(
        lambda: len(calls(emulator, file_id, INFO)) >= seen + passes,
        timeout=DEADLINE,
        what=f"{passes} more live-state reads of {file_id}",
    )


# --- suspend -------------------------------------------------------------------------------------------------------


def test_suspend_stops_exactly_once_and_resume_starts_exactly_once(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("orders", file_id=100))
    wait_ready(kubectl, "orders")
    wait_instance_state(emulator, 100, "RUN")

    patch_spec(kubectl, "orders", suspend=True)
    obj = wait_reason(kubectl, "orders", "Suspended")
    status = obj["status"]
    assert (status["stoppedGeneration"], condition(obj)["observedGeneration"], condition(obj)["status"]) == (
        2,
        2,
        "False",
    )
    wait_instance_state(emulator, 100, "PAUSE")
    sweeps_pass(emulator, 100)
    assert actions(emulator, 100) == [START, STOP]
    # The stop intent went on the object before the call; status answers it.
    obj = kubectl.get_json("dsi", "orders")
    intent = json.loads(obj["metadata"]["annotations"]["disync.dev/stop-intent"])
    assert (intent["generation"], obj["status"]["answeredStopIntent"]) == (2, intent["id"])
    # The live state is followed quietly: PAUSE recorded, no NotRunning alarm, still Suspended.
    wait_object(kubectl, "orders", lambda o: o["status"].get("instanceState") == "PAUSE", "PAUSE recorded")
    assert condition(kubectl.get_json("dsi", "orders"))["reason"] == "Suspended"
    assert ("Warning", "NotRunning") not in events(kubectl, "orders")
    assert ("Normal", "Suspended") in wait_event(kubectl, "orders", "Suspended")
    assert metric(operator, "disync_instances_lifecycle", lifecycle="suspended") == 1
    (row,) = table(kubectl("get", "dsi", "orders", "-o", "wide"))
    assert list(row)[:7] == ["NAME", "READY", "SYNCED", "REASON", "STATUS", "MESSAGE", "AGE"]
    assert (row["SUSPEND"], row["POLICY"], row["READY"], row["REASON"], row["SYNCED"], row["SYNCED-REASON"]) == (
        "true",
        "Full",
        "False",
        "Suspended",
        "True",
        "ReconcileSuccess",
    )
    assert row["MESSAGE"]  # why it is not Ready, in the default table

    patch_spec(kubectl, "orders", suspend=False)
    wait_ready(kubectl, "orders", generation=3)
    sweeps_pass(emulator, 100)
    assert actions(emulator, 100) == [START, STOP, START]
    assert metric(operator, "disync_instances_lifecycle", lifecycle="suspended") == 0


def test_suspend_and_resume_before_the_operator_acts_calls_nothing(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    """Suspending and resuming is no change of the start parameters: with no operator running in between, the task
    keeps running from its first start, and the operator that comes back starts nothing."""
    operator = start_operator()
    kubectl.apply(dsi("orders", file_id=100))
    wait_ready(kubectl, "orders")
    operator.kill()
    patch_spec(kubectl, "orders", suspend=True)
    patch_spec(kubectl, "orders", suspend=False)
    start_operator()
    obj = wait_ready(kubectl, "orders", generation=3)
    assert obj["status"]["startedGeneration"] == 3
    sweeps_pass(emulator, 100)
    assert actions(emulator, 100) == [START]


# --- observe only --------------------------------------------------------------------------------------------------


def test_observe_only_calls_nothing_and_follows_console_stops_and_starts(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    emulator.console_start(101)
    wait_instance_state(emulator, 101, "RUN")
    kubectl.apply(dsi("imported", file_id=101, managementPolicy="ObserveOnly"))
    obj = wait_reason(kubectl, "imported", "Observed")
    assert condition(obj)["status"] == "True"
    assert obj["status"]["instanceState"] == "RUN"
    assert "finalizers" not in obj["metadata"]
    sweeps_pass(emulator, 101, passes=4)

    emulator.console_stop(101)
    obj = wait_reason(kubectl, "imported", "NotRunning")
    assert obj["status"]["instanceState"] in ("KILLING", "PAUSE")
    emulator.console_start(101)
    wait_for(lambda: kubectl.get_json("dsi", "imported")["status"].get("instanceState") == "RUN", timeout=DEADLINE)
    assert condition(kubectl.get_json("dsi", "imported"))["reason"] == "Observed"
    sweeps_pass(emulator, 101)
    assert actions(emulator, 101) == []  # over every sweep: not one start or stop
    assert metric(operator, "disync_instances_lifecycle", lifecycle="observe_only") == 1
    # Deleted at once (no finalizer), and the task goes on running.
    kubectl("delete", "dsi", "imported", "--timeout=30s")
    assert actions(emulator, 101) == []
    wait_instance_state(emulator, 101, "RUN")


def test_a_console_task_is_imported_without_start_parameters(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    """Adopting a task someone built and started in the console: ObserveOnly asks for no startParam (the user
    has none); Full does, since it may start the task."""
    emulator.console_start(104)
    wait_instance_state(emulator, 104, "RUN")
    body = json.loads(dsi("console-task", file_id=104, managementPolicy="ObserveOnly"))
    del body["spec"]["startParam"]
    kubectl.apply(json.dumps(body))
    assert condition(wait_reason(kubectl, "console-task", "Observed"))["status"] == "True"
    with pytest.raises(KubectlError) as refused:
        patch_spec(kubectl, "console-task", managementPolicy="Full")
    assert "spec.startParam" in refused.value.stderr
    assert actions(emulator, 104) == []


def test_observe_only_to_full_adopts_a_running_task_without_a_start(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    emulator.console_start(102)
    wait_instance_state(emulator, 102, "RUN")
    kubectl.apply(dsi("imported", file_id=102, managementPolicy="ObserveOnly"))
    wait_reason(kubectl, "imported", "Observed")
    patch_spec(kubectl, "imported", managementPolicy="Full")
    obj = wait_reason(kubectl, "imported", "Adopted")
    assert (condition(obj)["status"], obj["status"]["startedGeneration"]) == ("True", 2)
    assert obj["metadata"]["finalizers"] == ["disync.dev/stop-instance"]
    sweeps_pass(emulator, 102)
    assert actions(emulator, 102) == []
    assert ("Normal", "Adopted") in wait_event(kubectl, "imported", "Adopted")
    # Managed now: deleting it stops what was taken over.
    kubectl("delete", "dsi", "imported", "--timeout=60s")
    assert actions(emulator, 102) == [STOP]


# --- restart on failure --------------------------------------------------------------------------------------------

RESTARTS_PER_HOUR = 3


def test_on_failure_restarts_after_a_console_stop_and_a_failing_task_hits_the_cap(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator({"DISYNC_MAX_RESTARTS_PER_HOUR": str(RESTARTS_PER_HOUR)})
    kubectl.apply(dsi("orders", file_id=103, restartPolicy="OnFailure"))
    wait_ready(kubectl, "orders")
    wait_instance_state(emulator, 103, "RUN")

    emulator.console_stop(103)
    obj = wait_object(kubectl, "orders", lambda o: o["status"].get("restarts") == 1, "one restart")
    assert obj["status"]["lastRestartTime"] == obj["status"]["restartTimes"][0]
    wait_instance_state(emulator, 103, "RUN")
    assert actions(emulator, 103) == [START, START]
    # After the backoff, as the operator chose it: the restart's start came at least that long after the read that
    # found the task stopped (base 0.2 s: the first step lies in [0.1, 0.2] s).
    scheduled = [r for r in operator.log_records() if str(r.get("message", "")).startswith("the task is PAUSE")]
    assert len(scheduled) == 1, scheduled
    delay = float(re.findall(r"restart in ([0-9.]+)s", scheduled[0]["message"])[0])
    assert 0.1 - 0.05 <= delay <= 0.2 + 0.05
    reads = [e for e in calls(emulator, 103, INFO) if e["seq"] < calls(emulator, 103, START)[-1]["seq"]]
    found_stopped_at = min(e["time"] for e in reads if e["seq"] > calls(emulator, 103, START)[0]["seq"])
    assert calls(emulator, 103, START)[-1]["time"] - found_stopped_at >= delay - 0.05
    assert [r for _, r in wait_event(kubectl, "orders", "Restarted")].count("Restarted") == 1

    # Now it keeps failing: restarted until the cap, then left for a person, and Ready says why.
    emulator.fail(103, times=None, run_seconds=0.3)
    obj = wait_reason(kubectl, "orders", "RestartLimitReached")
    message = condition(obj)["message"]
    assert f"{RESTARTS_PER_HOUR} restarts in the last hour" in message
    assert "DISYNC_MAX_RESTARTS_PER_HOUR" in message
    sweeps_pass(emulator, 103, passes=4)
    assert obj["status"]["restarts"] == RESTARTS_PER_HOUR
    assert actions(emulator, 103) == [START] * (1 + RESTARTS_PER_HOUR)
    assert metric(operator, "disync_restarts_total") == RESTARTS_PER_HOUR
    seen = wait_event(kubectl, "orders", "RestartLimitReached")
    assert [r for _, r in seen].count("Restarted") == RESTARTS_PER_HOUR
    assert [r for _, r in seen].count("RestartLimitReached") == 1


# --- pause ---------------------------------------------------------------------------------------------------------


class Writes:
    """Every version of one object a `kubectl get --watch` sees after it starts: each is one write."""

    def __init__(self, kubectl: Kubectl, name: str) -> None:
        argv = [str(kubectl.binary), f"--kubeconfig={kubectl.kubeconfig}", f"--namespace={kubectl.namespace}"]
        self._proc = subprocess.Popen(
            [*argv, "get", "dsi", name, "--watch", "-o", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self._lock = threading.Lock()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, name="dsi-writes", daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        lines: list[str] = []
        for line in self._proc.stdout:
            lines.append(line)
            if line.rstrip("\n") == "}":
                with self._lock:
                    self.seen.append(json.loads("".join(lines)))
                lines = []

    def versions(self) -> list[dict[str, Any]]:
        """The versions written since the watch began (the first one it prints is the object as it was then)."""
        with self._lock:
            return self.seen[1:]

    def started(self) -> bool:
        with self._lock:
            return bool(self.seen)

    def close(self) -> None:
        self._proc.kill()
        self._proc.wait()


@contextmanager
def writes(kubectl: Kubectl, name: str) -> Iterator[Writes]:
    watch = Writes(kubectl, name)
    try:
        wait_for(watch.started, timeout=DEADLINE, what=f"the watch on {name} to begin")
        yield watch
    finally:
        watch.close()


def synced(obj: dict[str, Any]) -> dict[str, Any]:
    found = condition(obj, "Synced")
    assert found is not None
    return found


def test_paused_makes_no_call_and_no_write_but_its_condition_then_acts_once_on_the_newest_spec(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("orders", file_id=104))
    wait_ready(kubectl, "orders")
    wait_instance_state(emulator, 104, "RUN")
    ready_before = condition(kubectl.get_json("dsi", "orders"))
    kubectl("annotate", "dsi", "orders", "disync.dev/paused=true")
    paused = wait_object(kubectl, "orders", lambda o: synced(o)["reason"] == "ReconcilePaused", "paused")
    assert synced(paused)["status"] == "False"
    assert condition(paused) == ready_before  # Ready keeps its last word
    before = len(calls(emulator, 104))

    with writes(kubectl, "orders") as seen:
        looked_at = operator_looks(operator, 6)
        for record in (3, 4, 5):
            patch_spec(kubectl, "orders", startParam={"errorLimit": {"record": record}})
        emulator.console_stop(104)  # no restart, no read, no alarm while paused
        looked_at()  # its three events and the sweep's visits: the operator looked, and left it be
        versions = seen.versions()
    assert [v["metadata"]["generation"] for v in versions] == [2, 3, 4]  # the user's three writes, nothing else
    assert len(calls(emulator, 104)) == before
    assert metric(operator, "disync_instances_lifecycle", lifecycle="paused") == 1
    (row,) = table(kubectl("get", "dsi", "orders", "-o", "wide"))
    assert (row["READY"], row["SYNCED"], row["SYNCED-REASON"]) == ("True", "False", "ReconcilePaused")

    kubectl("annotate", "dsi", "orders", "disync.dev/paused-")
    obj = wait_ready(kubectl, "orders", generation=4)
    assert synced(obj)["reason"] == "ReconcileSuccess"
    starts = calls(emulator, 104, START)
    assert len(starts) == 2  # the first, and one for the newest spec
    assert json.loads(starts[1]["params"]["StartParam"])["errorLimit"] == {"record": 5}


def test_deleting_a_paused_object_waits_and_says_so(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("orders", file_id=104))
    wait_ready(kubectl, "orders")
    looked_at = operator_looks(operator, 3)
    kubectl("annotate", "dsi", "orders", "disync.dev/paused=true")
    kubectl("delete", "dsi", "orders", "--wait=false")
    obj = wait_object(kubectl, "orders", lambda o: "deletion waits" in synced(o)["message"], "deletion waits")
    assert obj["metadata"]["finalizers"] == ["disync.dev/stop-instance"]
    kubectl("label", "dsi", "orders", "team=data")  # one more event: still hands off
    looked_at()
    assert kubectl.get_json("dsi", "orders")["metadata"]["finalizers"] == ["disync.dev/stop-instance"]
    assert actions(emulator, 104) == [START]
    kubectl("annotate", "dsi", "orders", "disync.dev/paused-")
    kubectl("wait", "--for=delete", "dsi/orders", "--timeout=60s")
    assert actions(emulator, 104) == [START, STOP]


# --- what admission refuses, and what kubectl explains -------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "said"),
    [
        ({"taskType": "DI_SOLUTION", "fileId": 200, "suspend": True}, "spec.suspend: Forbidden: suspend applies only"),
        (
            {"taskType": "DI_SOLUTION", "fileId": 200, "restartPolicy": "OnFailure"},
            "spec.restartPolicy: Forbidden: restartPolicy OnFailure applies only to taskType DI_REALTIME",
        ),
        ({"managementPolicy": "ObserveOnly", "suspend": True}, "spec.suspend: Forbidden: suspend needs"),
        (
            {"managementPolicy": "ObserveOnly", "restartPolicy": "OnFailure"},
            "spec.restartPolicy: Forbidden: restartPolicy OnFailure needs managementPolicy Full",
        ),
        ({"managementPolicy": "Observe"}, 'spec.managementPolicy: Unsupported value: "Observe"'),
        ({"restartPolicy": "Always"}, 'spec.restartPolicy: Unsupported value: "Always"'),
        ({"suspend": "yes"}, "spec.suspend: Invalid value"),
    ],
)
def test_bad_lifecycle_combinations_are_refused_at_admission_naming_the_field(
    kubectl: Kubectl, crd: None, spec: dict[str, Any], said: str
) -> None:
    manifest = json.loads(dsi("bad", file_id=100))
    manifest["spec"].update(spec)
    if manifest["spec"]["taskType"] == "DI_SOLUTION":
        manifest["spec"].pop("startParam")
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(json.dumps(manifest), "--dry-run=server")
    assert said in refused.value.stderr


def test_kubectl_explain_documents_the_lifecycle(kubectl: Kubectl, crd: None) -> None:
    suspend = kubectl("explain", "disyncinstance.spec.suspend")
    assert "StopDISyncInstance, once" in suspend
    policy = kubectl("explain", "disyncinstance.spec.managementPolicy")
    assert "ObserveOnly" in policy
    assert "Adopted" in policy
    restart = kubectl("explain", "disyncinstance.spec.restartPolicy")
    assert "DISYNC_MAX_RESTARTS_PER_HOUR" in restart
    assert "restarts" in kubectl("explain", "disyncinstance.status.restarts")
