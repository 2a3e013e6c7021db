"""Scenario 6: secrets never leave the process that uses them, and a CR cannot reach beyond its namespace.

A full lifecycle (create, retries on faults, a wrong key, update, delete) runs with known secret values: the AccessKey
secret from a Secret, an STS AccessKey and token from another Secret, and the operator's own AccessKey secret from its
environment. The operator's log (at DEBUG), every Event in the namespace and every CR (status and metadata, captured
at each stage) must contain none of them, raw or base64-encoded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from e2e_helpers import DEADLINE, condition, dsi, wait_ready, wait_reason
from hypothesis import given, settings
from hypothesis import strategies as st
from rel_helpers import (
    FIRST_FILE,
    OPERATOR_AK_SECRET,
    PROJECT,
    SECRET_AK_ID,
    SECRET_AK_SECRET,
    STS_AK_ID,
    STS_AK_SECRET,
    STS_TOKEN,
    assert_exactly_once,
    list_dsi,
    name_of,
    record_results,
    scan_for,
)

from disync_operator import types as t
from disync_operator.controller.runtime import Runtime
from disync_operator.controller.settings import OperatorSettings
from disync_operator.dataworks import REGION_ENDPOINTS, StaticCredentialsProvider, UnknownRegionError
from disync_operator.devstack.kubectl import Kubectl, KubectlError
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster

WRONG_SECRET = "wrong-but-still-secret-71c2d9"
SECRETS = {
    "Secret AccessKey secret": SECRET_AK_SECRET,
    "STS AccessKey secret": STS_AK_SECRET,
    "STS security token": STS_TOKEN,
    "operator AccessKey secret (env)": OPERATOR_AK_SECRET,
    "wrong AccessKey secret": WRONG_SECRET,
}


def _secret(kubectl: Kubectl, name: str, **values: str) -> None:
    literals = [f"--from-literal={k}={v}" for k, v in values.items()]
    kubectl("create", "secret", "generic", name, "--type=disync.dev/dataworks-credentials", *literals)


def _manifest(file_id: int, secret: str | None = None, **spec: Any) -> str:
    if secret is not None:
        spec["credentials"] = {"secretRef": {"name": secret}}
    return dsi(name_of(file_id), file_id=file_id, project_id=PROJECT, **spec)


@pytest.mark.parametrize(
    "copies",
    [
        pytest.param(1, id="bounded"),
        pytest.param(15, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(1800)]),
    ],
)
def test_no_secret_reaches_logs_events_or_status_over_a_full_lifecycle(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess], copies: int
) -> None:
    operator = start_operator({"DISYNC_LOG_LEVEL": "DEBUG"})
    _secret(kubectl, "ak-static", accessKeyId=SECRET_AK_ID, accessKeySecret=SECRET_AK_SECRET)
    _secret(kubectl, "ak-sts", accessKeyId=STS_AK_ID, accessKeySecret=STS_AK_SECRET, securityToken=STS_TOKEN)
    _secret(kubectl, "ak-wrong", accessKeyId=SECRET_AK_ID, accessKeySecret=WRONG_SECRET)
    snapshots: list[str] = []

    def snapshot() -> None:
        snapshots.append(json.dumps(kubectl.get_json("disyncinstances")))

    # One group of CRs per identity: the operator's own (env), a Secret's AccessKey, an STS AccessKey and token.
    ids = iter(range(FIRST_FILE, FIRST_FILE + 3 * copies + 1))
    groups: dict[str, tuple[str | None, list[int]]] = {
        "LTAIdemoAccessKeyId": (None, [next(ids) for _ in range(copies)]),
        SECRET_AK_ID: ("ak-static", [next(ids) for _ in range(copies)]),
        STS_AK_ID: ("ak-sts", [next(ids) for _ in range(copies)]),
    }
    wrong = next(ids)
    healthy = [f for _, files in groups.values() for f in files]

    # Create under faults: retries write error messages into status, conditions and Events.
    emulator.set_faults(seed=11, error_rate=0.3, truncated_rate=0.15, malformed_rate=0.1)
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [json.loads(_manifest(f, secret)) for secret, files in groups.values() for f in files]
                + [json.loads(_manifest(wrong, "ak-wrong"))],
            }
        )
    )
    wait_for(lambda: [e for e in emulator.requests() if e["fault"]], timeout=DEADLINE, what="faults to bite")
    snapshot()
    for file_id in healthy:
        wait_ready(kubectl, name_of(file_id), timeout=90)
    wait_reason(kubectl, name_of(wrong), "AuthenticationFailed", timeout=90)
    emulator.set_faults()
    snapshot()

    # Each CR really used its own identity, the STS one with its token.
    for key_id, (_, files) in groups.items():
        for file_id in files:
            assert [s["access_key_id"] for s in emulator.starts(file_id)] == [key_id]

    # Update: a new generation is started once more with the same credentials.
    patch = '{"spec":{"startParam":{"failoverLimit":{"count":3,"interval":60},"errorLimit":{"record":1}}}}'
    for file_id in healthy:
        kubectl("patch", "dsi", name_of(file_id), "--type=merge", "-p", patch)
    for file_id in healthy:
        wait_ready(kubectl, name_of(file_id), generation=2, timeout=60)
    snapshot()
    assert all(len(emulator.starts(f)) == 2 for f in healthy)

    # Delete: Stop with each CR's own credentials, then the finalizer goes.
    kubectl("delete", "dsi", "--all", "--timeout=120s")
    assert list_dsi(kubectl) == []
    stops = {str(s["params"]["FileId"]): s["access_key_id"] for s in emulator.requests("StopDISyncInstance")}
    assert all(stops.get(str(f)) == STS_AK_ID for f in groups[STS_AK_ID][1])

    events = kubectl("get", "events", "-o", "json")
    assert '"Started"' in events  # the scan below covers real Events, not an empty list
    log = operator.log()
    assert "Authentication" in log or "SignatureDoesNotMatch" in log
    leaks = {
        "operator log": scan_for(log, SECRETS),
        "events": scan_for(events, SECRETS),
        "custom resources": scan_for("\n".join(snapshots), SECRETS),
    }
    assert leaks == {"operator log": [], "events": [], "custom resources": []}
    if copies > 1:
        record_results(
            "secrets",
            {
                "crs": len(healthy) + 1,
                "secret_values_checked": len(SECRETS),
                "operator_log_bytes": len(log),
                "events_bytes": len(events),
                "cr_snapshots": len(snapshots),
                "leaks_found": sum(len(v) for v in leaks.values()),
            },
        )


def test_a_cr_cannot_use_another_namespaces_secret(
    kubectl: Kubectl, admin_kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator()
    other = kubectl.namespace + "-other"
    admin_kubectl("create", "namespace", other)
    try:
        _secret(kubectl.bound(other), "ak-static", accessKeyId=SECRET_AK_ID, accessKeySecret=SECRET_AK_SECRET)
        # Naming the namespace is refused at admission, with the field path.
        body = json.loads(_manifest(FIRST_FILE, "ak-static"))
        body["spec"]["credentials"]["secretRef"]["namespace"] = other
        with pytest.raises(KubectlError) as refused:
            kubectl.apply(json.dumps(body))
        assert "spec.credentials.secretRef.namespace" in refused.value.stderr
        # Without it, the same name resolves in the CR's own namespace only: not found, nothing called.
        kubectl.apply(_manifest(FIRST_FILE, "ak-static"))
        obj = wait_reason(kubectl, name_of(FIRST_FILE), "CredentialsUnavailable")
        assert f"Secret {kubectl.namespace}/ak-static not found" in condition(obj)["message"]
        assert emulator.requests() == []
    finally:
        admin_kubectl.run("delete", "namespace", other, "--wait=false", check=False)


def test_region_cannot_redirect_calls_and_endpoint_is_not_a_spec_field(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator()
    # A region that is not DataWorks' (here the virtual host of an OSS bucket named "dataworks") is refused before
    # any call, even with DISYNC_ENDPOINT set (the emulator): nothing is sent anywhere.
    kubectl.apply(_manifest(FIRST_FILE, region="oss-cn-hangzhou"))
    refused = wait_reason(kubectl, name_of(FIRST_FILE), "InvalidSpec")
    assert "not a DataWorks region" in condition(refused)["message"]
    assert emulator.requests() == []
    kubectl.apply(_manifest(FIRST_FILE, region="cn-hangzhou"))  # a DataWorks region: fine
    wait_ready(kubectl, name_of(FIRST_FILE), generation=2)
    assert len(emulator.starts(FIRST_FILE)) == 1

    # spec.endpoint does not exist: strict validation (kubectl's default) refuses it with the path ...
    body = json.loads(_manifest(FIRST_FILE + 1))
    body["spec"]["endpoint"] = "https://attacker.example.com"
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(json.dumps(body))
    assert 'unknown field "spec.endpoint"' in refused.value.stderr
    # ... a lax client gets it pruned (never stored, never seen by the operator), and the model forbids it too.
    kubectl("create", "--validate=false", "-f", "-", input=json.dumps(body))
    stored = kubectl.get_json("dsi", name_of(FIRST_FILE + 1))
    assert "endpoint" not in stored["spec"]
    with pytest.raises(ValueError, match="endpoint"):
        t.DISyncInstanceSpec.model_validate(body["spec"])
    wait_ready(kubectl, name_of(FIRST_FILE + 1))
    assert_exactly_once(emulator, list_dsi(kubectl))
    assert {e["params"]["FileId"] for e in emulator.requests()} == {str(FIRST_FILE), str(FIRST_FILE + 1)}


REGION_PATTERN = r"[a-z]{2,}(-[a-z0-9]+)+"
DATAWORKS_HOSTS = {f"https://{host}" for host in REGION_ENDPOINTS.values()}


@settings(max_examples=300, deadline=None)
@given(
    region=st.one_of(
        st.from_regex(REGION_PATTERN, fullmatch=True).filter(lambda r: len(r) <= 64),
        st.sampled_from(sorted(REGION_ENDPOINTS)),
    )
)
def test_any_admissible_region_maps_to_a_dataworks_endpoint_or_is_refused(region: str) -> None:
    """Whatever region a CR names (the CRD admits this pattern), calls go to a host of the official SDK's endpoint
    map, or nowhere: the operator refuses the region before any call."""
    credentials = StaticCredentialsProvider("LTAIx", "x")
    by_region = Runtime(OperatorSettings(region="cn-shanghai"), default_credentials=credentials)
    spec = t.DISyncInstanceSpec.model_validate(
        {"projectId": 1, "taskType": "DI_SOLUTION", "fileId": 1, "region": region}
    )
    problem = by_region.dataworks.region_problem(spec)
    if region in REGION_ENDPOINTS:
        assert problem is None
        assert by_region.dataworks.endpoint_for(region) == f"https://{REGION_ENDPOINTS[region]}"
    else:
        assert problem is not None
        with pytest.raises(UnknownRegionError):
            by_region.dataworks.endpoint_for(region)
    assert by_region.dataworks.endpoint_for(None) == "https://dataworks.cn-shanghai.aliyuncs.com"
    assert by_region.dataworks.endpoint_for(None) in DATAWORKS_HOSTS
