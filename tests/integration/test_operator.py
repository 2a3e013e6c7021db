"""The operator end to end: real kube-apiserver, the emulator, and `disync-operator run` as a process."""

from __future__ import annotations

import itertools
import json

import pytest
from e2e_helpers import (
    DEADLINE,
    assert_backoff_schedule,
    backoff_step,
    condition,
    dsi,
    scheduled_retries,
    wait_instance_state,
    wait_ready,
    wait_reason,
)

from disync_operator.devstack.kubectl import Kubectl, KubectlError
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster


def test_create_reaches_ready_with_exactly_one_start(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("orders", file_id=100))
    kubectl("wait", "--for=condition=Ready", "--timeout=60s", "disyncinstance/orders")
    obj = wait_ready(kubectl, "orders")
    status = obj["status"]

    starts = emulator.starts(100)
    assert len(starts) == 1
    assert json.loads(starts[0]["params"]["StartParam"]) == {
        "failoverLimit": {"count": 10, "interval": 30},
        "errorLimit": {"record": 0},
    }
    # Status says exactly what the API said, and which request it was.
    assert status["status"] == "success"
    assert status["requestId"] == starts[0]["request_id"]
    assert status["startedGeneration"] == obj["metadata"]["generation"] == status["observedGeneration"]
    assert status["attempts"] == 1
    # No start intent is left unverified (the field's current name, and its name before v0.2).
    assert "unverifiedIntent" not in status
    assert "pendingStart" not in status
    # The intent was written on the object before the call (with the finalizer, in one write); status answers it.
    intent = json.loads(obj["metadata"]["annotations"]["disync.dev/start-intent"])
    assert (intent["generation"], status["answeredIntent"]) == (1, intent["id"])
    assert obj["metadata"]["finalizers"] == ["disync.dev/stop-instance"]
    assert condition(obj, "Synced")["status"] == "True"
    # The live state is followed: the emulator reports WAIT then RUN, and the condition says Running.
    wait_for(
        lambda: kubectl.get_json("dsi", "orders")["status"].get("instanceState") == "RUN",
        timeout=DEADLINE,
        what="instanceState RUN",
    )
    assert wait_reason(kubectl, "orders", "Running")

    table = kubectl("get", "disyncinstances")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "SYNCED", "REASON", "STATUS", "MESSAGE", "AGE"]
    assert row.split()[:5] == ["orders", "True", "True", "Running", "success"]
    wide = kubectl("get", "disyncinstances", "-o", "wide").splitlines()[1].split()
    assert {"10000", "DI_REALTIME", "100"} <= set(wide)


def test_spec_change_starts_again_and_label_change_does_not(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("orders", file_id=100))
    wait_ready(kubectl, "orders", generation=1)
    assert len(emulator.starts(100)) == 1

    kubectl("label", "dsi", "orders", "team=data")
    kubectl("annotate", "dsi", "orders", "argocd.argoproj.io/tracking-id=app:disync.dev/DISyncInstance:ns/orders")
    kubectl(
        "patch",
        "dsi",
        "orders",
        "--type=merge",
        "-p",
        '{"spec":{"startParam":{"failoverLimit":{"count":3,"interval":30},"errorLimit":{"record":5}}}}',
    )
    obj = wait_ready(kubectl, "orders", generation=2)

    # Labels and annotations bumped nothing; the spec change made exactly one more start, with the new parameters.
    starts = emulator.starts(100)
    assert len(starts) == 2
    assert json.loads(starts[1]["params"]["StartParam"])["errorLimit"] == {"record": 5}
    assert obj["status"]["startedGeneration"] == 2


def test_retryable_errors_back_off_then_succeed(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    emulator.set_faults(error_rate=1.0, actions=["StartDISyncInstance"])
    kubectl.apply(dsi("flaky", file_id=101))
    wait_for(
        lambda: len(emulator.requests("StartDISyncInstance")) >= 4, timeout=DEADLINE, what="4 failed start attempts"
    )
    obj = wait_reason(kubectl, "flaky", "RetryScheduled")
    assert "InternalError.System" in condition(obj)["message"]
    assert obj["status"]["lastError"] == {"code": "InternalError.System", "httpStatus": 500, "retryable": True}
    assert obj["status"].get("nextRetryTime")
    emulator.set_faults()
    obj = wait_ready(kubectl, "flaky")

    attempts = emulator.requests("StartDISyncInstance")
    assert [a["code"] for a in attempts[:-1]] == ["InternalError.System"] * (len(attempts) - 1)
    assert attempts[-1]["code"] == "success"
    assert obj["status"]["attempts"] == len(attempts)
    # Exponential, as the operator chose it: one scheduled retry per failed attempt, numbered on, each delay within
    # its attempt's band [step/2, step] with steps doubling from DISYNC_BACKOFF_BASE. Read from the operator's log:
    # the gaps between calls also hold however long this machine took for the calls and writes in between, so no
    # ratio of gaps is a statement about the operator.
    retries = scheduled_retries(operator)
    assert [n for n, _ in retries] == list(range(1, len(attempts))), retries
    assert_backoff_schedule(retries, operator.env)
    # And honoured: no attempt came before its delay had passed, so each wait is at least half its step (0.1, 0.2,
    # 0.4, 0.8 s, ...). A slow machine only lengthens the gaps (the emulator stamps a call when it arrives).
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(attempts)]
    early = [
        (n, round(gap, 3), delay)
        for gap, (n, delay) in zip(gaps, retries, strict=True)
        if gap < max(delay - 0.05, backoff_step(operator.env, n) / 2) - 0.005
    ]
    assert not early, f"attempts earlier than their backoff as (attempt, gap, delay): {early}; gaps {gaps}"
    # Between failed attempts the operator verified the live state rather than blindly starting again.
    assert emulator.requests("GetDISyncInstanceInfo")


def test_forbidden_is_terminal_and_not_retried(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("denied", project_id=30000, file_id=300))
    obj = wait_reason(kubectl, "denied", "AccessDenied")
    ready = condition(obj)
    assert ready["status"] == "False"
    assert "Forbidden.Access" in ready["message"]
    assert "Not retried until the spec or the credentials change" in ready["message"]
    assert condition(obj, "Synced")["status"] == "False"
    # A later CR going all the way to Ready is the barrier: by then the denied one had many chances to retry.
    kubectl.apply(dsi("barrier", file_id=102))
    wait_ready(kubectl, "barrier")
    wait_for(
        lambda: kubectl.get_json("dsi", "barrier")["status"].get("instanceState") == "RUN",
        timeout=DEADLINE,
        what="barrier observed",
    )
    assert len(emulator.requests("StartDISyncInstance")) == 2  # one denied, one barrier
    assert [r["code"] for r in emulator.requests("StartDISyncInstance")] == ["Forbidden.Access", "success"]


def test_api_failure_status_is_shown_as_the_api_said(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("unknown-file", file_id=999))
    obj = wait_reason(kubectl, "unknown-file", "StartFailed")
    assert obj["status"]["status"] == "fail"
    assert obj["status"]["message"] == "fileId:[999] is invalid."
    row = kubectl("get", "dsi", "unknown-file", "--no-headers").split()
    assert row[4:7] == ["fail", "fileId:[999]", "is"]


def test_resume_after_restart_does_not_start_again(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator, namespace: str
) -> None:
    first = start_operator()
    kubectl.apply(dsi("steady", file_id=100))
    wait_ready(kubectl, "steady")
    assert first.stop(timeout=DEADLINE) == 0  # SIGTERM: clean exit (the default 20 s grace is tight on a slow machine)

    second = start_operator()
    kubectl.apply(dsi("barrier", file_id=101))
    wait_ready(kubectl, "barrier")
    assert second.running
    assert len(emulator.starts(100)) == 1
    assert len(emulator.starts(101)) == 1


def test_lost_start_response_is_verified_not_repeated(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    emulator.set_faults(drop_start_response=1)
    kubectl.apply(dsi("dropped", file_id=103))
    obj = wait_ready(kubectl, "dropped")
    assert len(emulator.starts(103)) == 1
    assert emulator.requests("StartDISyncInstance")[0]["fault"] == "drop_start_response"
    assert "not started again" in condition(obj)["message"]


def test_killed_between_call_and_status_write_starts_once(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator
) -> None:
    first = start_operator()
    emulator.set_faults(latency_ms=1500, actions=["StartDISyncInstance"])
    kubectl.apply(dsi("crashy", file_id=104))
    # The intent is recorded before the call; the call then takes 1.5 s: kill the operator inside that window.
    wait_for(
        lambda: kubectl.get_json("dsi", "crashy")["metadata"].get("annotations", {}).get("disync.dev/start-intent"),
        timeout=DEADLINE,
        what="the start intent",
    )
    first.kill()
    emulator.set_faults()
    second = start_operator()
    obj = wait_ready(kubectl, "crashy")
    assert second.running
    assert len(emulator.starts(104)) == 1
    assert obj["status"]["startedGeneration"] == 1


@pytest.mark.parametrize("policy", ["Stop", "Orphan"])
def test_delete_stops_or_orphans(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess, policy: str
) -> None:
    kubectl.apply(dsi("bye", file_id=100, deletionPolicy=policy))
    wait_ready(kubectl, "bye")
    kubectl("delete", "dsi", "bye", "--timeout=60s")
    assert kubectl("get", "dsi", "--ignore-not-found", "-o", "name") == ""
    # The finalizer went only after the stop was answered, so the request log is complete now. The task's state is
    # not: the emulator moves a started task WAIT -> RUN, and a stopped one KILLING -> PAUSE, after its configured
    # delays, so the settled state is waited for (a stop never reaches RUN, a running task never reaches PAUSE).
    stops = emulator.requests("StopDISyncInstance")
    if policy == "Stop":
        assert [s["code"] for s in stops] == ["success"]
        wait_instance_state(emulator, 100, "PAUSE")
    else:
        assert stops == []
        wait_instance_state(emulator, 100, "RUN")
        assert emulator.requests("StopDISyncInstance") == []


def test_solution_starts_and_is_not_stopped_on_delete(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("solution", file_id=200, task_type="DI_SOLUTION"))
    obj = wait_ready(kubectl, "solution")
    start = emulator.starts(200)[0]
    assert "StartParam" not in start["params"]
    assert obj["status"]["status"] == "success"
    kubectl("delete", "dsi", "solution", "--timeout=60s")
    assert emulator.requests("StopDISyncInstance") == []


def test_credentials_from_a_secret_in_the_same_namespace(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    creds = {"credentials": {"secretRef": {"name": "dataworks-ak"}}}
    kubectl.apply(dsi("with-secret", project_id=30000, file_id=300, **creds))
    obj = wait_reason(kubectl, "with-secret", "CredentialsUnavailable")
    assert "Secret" in condition(obj)["message"]
    assert "not found" in condition(obj)["message"]

    # Creating the Secret is a change of credentials: the operator retries on its own.
    kubectl(
        "create",
        "secret",
        "generic",
        "dataworks-ak",
        "--type=disync.dev/dataworks-credentials",
        "--from-literal=accessKeyId=LTAIsecretKeyFromSecret",
        "--from-literal=accessKeySecret=from-a-kubernetes-secret",
    )
    wait_ready(kubectl, "with-secret")
    (start,) = emulator.starts(300)
    assert start["access_key_id"] == "LTAIsecretKeyFromSecret"


def test_secret_in_another_namespace_is_refused_at_admission(kubectl: Kubectl, crd: None) -> None:
    manifest = dsi("elsewhere", credentials={"secretRef": {"name": "ak", "namespace": "kube-system"}})
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(manifest)
    assert "spec.credentials.secretRef.namespace" in refused.value.stderr
    assert "must be in the DISyncInstance's own namespace" in refused.value.stderr


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"projectId": 0}, "spec.projectId", "greater than or equal to 1"),
        ({"fileId": -5}, "spec.fileId", "greater than or equal to 1"),
        ({"taskType": "DI_BATCH"}, "spec.taskType", 'Unsupported value: "DI_BATCH"'),
        ({"startParamJSON": "{}"}, "spec.startParamJSON", "either startParam or startParamJSON, not both"),
        (
            {"startParam": {"ddlMarkMap": {"ADDCOLUMN": "LOUD"}}},
            "spec.startParam.ddlMarkMap.ADDCOLUMN",
            "Unsupported value",
        ),
        ({"startParam": {"failoverLimit": {"count": 1}}}, "spec.startParam.failoverLimit.interval", "Required value"),
        ({"taskType": "DI_SOLUTION"}, "spec.startParam", "apply only to taskType DI_REALTIME"),
        ({"deletionPolicy": "Delete"}, "spec.deletionPolicy", 'Unsupported value: "Delete"'),
        ({"region": "Shanghai!"}, "spec.region", "should match"),
    ],
)
def test_invalid_manifests_are_rejected_with_the_field_path(
    kubectl: Kubectl, crd: None, spec: dict, field: str, words: str
) -> None:
    body = json.loads(dsi("bad"))
    body["spec"].update(spec)
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(json.dumps(body))
    assert field in refused.value.stderr
    assert words in refused.value.stderr


def test_realtime_without_start_param_is_rejected(kubectl: Kubectl, crd: None) -> None:
    body = json.loads(dsi("bare"))
    del body["spec"]["startParam"]
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(json.dumps(body))
    assert "spec.startParam" in refused.value.stderr
    assert "needs startParam or startParamJSON" in refused.value.stderr


def test_bad_start_param_json_is_a_terminal_condition_without_any_call(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    # The API server cannot parse JSON inside a string; the operator checks it with the same model before any call.
    kubectl.apply(dsi("json-typo", file_id=100, startParamJSON='{"failoverLimit": {"count": "ten", "interval": 1}}'))
    obj = wait_reason(kubectl, "json-typo", "InvalidSpec")
    assert "startParamJSON" in condition(obj)["message"]
    kubectl.apply(dsi("barrier", file_id=101))
    wait_ready(kubectl, "barrier")
    assert emulator.starts(100, outcome=None) == []
    # Fixing the spec is a new generation: it is started.
    kubectl(
        "patch",
        "dsi",
        "json-typo",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"startParamJSON": '{"failoverLimit":{"count":10,"interval":1}}'}}),
    )
    wait_ready(kubectl, "json-typo", generation=2)
    assert len(emulator.starts(100)) == 1


def test_events_and_metrics_tell_what_happened(
    kubectl: Kubectl, emulator: EmulatorProcess, operator: OperatorProcess
) -> None:
    kubectl.apply(dsi("observable", file_id=100))
    kubectl.apply(dsi("broken", file_id=998))
    wait_ready(kubectl, "observable")
    wait_reason(kubectl, "broken", "StartFailed")

    def events() -> list[tuple[str, str, str]]:
        items = kubectl.get_json("events")["items"]
        return [(e["involvedObject"]["name"], e["type"], e["reason"]) for e in items]

    wait_for(
        lambda: {("observable", "Normal", "Started"), ("broken", "Warning", "StartFailed")} <= set(events()),
        timeout=DEADLINE,
        what="Started and StartFailed events",
    )

    def metric(text: str, name: str, **labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    text = operator.metrics()
    assert metric(text, "disync_dataworks_calls_total", action="StartDISyncInstance", outcome="success") == 1
    assert metric(text, "disync_dataworks_calls_total", action="StartDISyncInstance", outcome="failed") == 1
    assert metric(text, "disync_dataworks_call_duration_seconds_count", action="StartDISyncInstance") == 2
    assert metric(text, "disync_instances", ready="False", reason="StartFailed") == 1
    assert metric(text, "disync_reconcile_total", controller="disyncinstance", source="event", result="success") >= 2
    # JSON logs carry the object and the RequestId of the call.
    started = [r for r in operator.log_records() if r.get("message", "").startswith("started generation")]
    assert started
    assert started[0]["object"]["name"] == "observable"
    assert started[0]["request_id"] == emulator.starts(100)[0]["request_id"]


def test_terminal_failure_with_the_operator_identity_is_retried_after_a_restart(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator
) -> None:
    """Fixing a RAM policy for the operator's own identity is followed by a restart: that retries, once."""
    first = start_operator()
    kubectl.apply(dsi("denied", project_id=30000, file_id=300))
    obj = wait_reason(kubectl, "denied", "AccessDenied")
    assert obj["status"]["message"].startswith("Forbidden.Access")
    assert obj["status"].get("status") is None
    first.stop()
    start_operator()
    wait_for(
        lambda: len(emulator.requests("StartDISyncInstance")) == 2, timeout=DEADLINE, what="one retry after restart"
    )
    wait_reason(kubectl, "denied", "AccessDenied")
    kubectl.apply(dsi("barrier", file_id=101))
    wait_ready(kubectl, "barrier")
    assert [r["code"] for r in emulator.requests("StartDISyncInstance")] == [
        "Forbidden.Access",
        "Forbidden.Access",
        "success",
    ]
