"""Tenancy, tried as an attacker on the real kube-apiserver: a tenant who may create DISyncInstances in their
namespace but not read its Secrets, and a second tenant naming the same DataWorks task. Each test asserts what the
tenant could see (status, Events, the operator's log and metrics) and what reached the cloud (the emulator)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from e2e_helpers import condition, dsi, wait_ready, wait_reason

from disync_operator.devstack.kubectl import Kubectl, KubectlError
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess

pytestmark = pytest.mark.cluster

TLS_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7plantedTLSkey\n"
    "bm90LWEtcmVhbC1rZXktYnV0LXNlY3JldC1lbm91Z2gtZm9yLWEtdGVzdA==\n"
    "-----END PRIVATE KEY-----"
)
DB_PASSWORD = "db-password-planted-9f3e1c"
NON_ASCII = "sécret-plänted-ünïcode-77"


def make_tenant(kubectl: Kubectl, namespace: str) -> str:
    """A tenant of `namespace` (impersonated with --as): may manage DISyncInstances and read Events, nothing else."""
    kubectl(
        "create", "role", "dsi-author", "--verb=get,list,watch,create,update,patch,delete",
        "--resource=disyncinstances.disync.dev",
    )  # fmt: skip
    kubectl("create", "role", "event-reader", "--verb=get,list", "--resource=events")
    user = f"system:serviceaccount:{namespace}:tenant"
    kubectl("create", "rolebinding", "tenant-dsi", "--role=dsi-author", f"--user={user}")
    kubectl("create", "rolebinding", "tenant-events", "--role=event-reader", f"--user={user}")
    return user


def emitted(kubectl: Kubectl, operator: OperatorProcess, tenant: str) -> str:
    """Everything a tenant or an operator's reader can see: CRs, Events, the log, the metrics."""
    return "\n".join(
        [
            kubectl("get", "dsi", "-o", "json", "--as", tenant),
            kubectl("get", "events", "-o", "json", "--as", tenant),
            operator.log(),
            operator.metrics(),
        ]
    )


def test_a_tenant_cannot_read_secrets_through_the_operator(
    kubectl: Kubectl, namespace: str, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    operator = start_operator({"DISYNC_LOG_LEVEL": "DEBUG"})
    # Secrets the tenant may not read: a TLS key and a database password (not meant for the operator), and a
    # credentials Secret with one multi-line value.
    kubectl(
        "create", "secret", "generic", "tls", f"--from-literal=tls.key={TLS_KEY}",
        f"--from-literal=password={DB_PASSWORD}",
    )  # fmt: skip
    kubectl(
        "create", "secret", "generic", "ak", "--type=disync.dev/dataworks-credentials",
        "--from-literal=accessKeyId=LTAIsecretKeyFromSecret", f"--from-literal=wrapped={TLS_KEY}",
        f"--from-literal=unicode={NON_ASCII}",
    )  # fmt: skip
    tenant = make_tenant(kubectl, namespace)
    with pytest.raises(KubectlError):
        kubectl("get", "secret", "tls", "--as", tenant)
    # The tenant points credentials at keys of those Secrets.
    keys = {"accessKeyId": "password", "accessKeySecret": "tls.key"}
    steal_tls = dsi("steal-tls", file_id=100, credentials={"secretRef": {"name": "tls", "keys": keys}})
    kubectl.apply(steal_tls, "--as", tenant)
    wrapped = {"accessKeySecret": "wrapped"}
    steal_wrapped = dsi("steal-wrapped", file_id=101, credentials={"secretRef": {"name": "ak", "keys": wrapped}})
    kubectl.apply(steal_wrapped, "--as", tenant)
    tls = wait_reason(kubectl, "steal-tls", "CredentialsUnavailable")
    assert "is not meant for disync-operator" in condition(tls)["message"]
    wrapped_obj = wait_reason(kubectl, "steal-wrapped", "CredentialsUnavailable")
    assert "key wrapped: contains a line break" in condition(wrapped_obj)["message"]
    # A non-ASCII value is refused the same way (it used to crash the reconcile, leaving no status at all).
    unicode_keys = {"accessKeySecret": "unicode"}
    steal_unicode = dsi("unicode", file_id=102, credentials={"secretRef": {"name": "ak", "keys": unicode_keys}})
    kubectl.apply(steal_unicode, "--as", tenant)
    unicode_obj = wait_reason(kubectl, "unicode", "CredentialsUnavailable")
    assert "key unicode:" in condition(unicode_obj)["message"]
    # Nothing reached the cloud, and no part of any secret came back out.
    assert emulator.requests() == []
    seen = emitted(kubectl, operator, tenant)
    for secret in (TLS_KEY, DB_PASSWORD, NON_ASCII):
        for line in secret.splitlines():
            for i in range(0, max(1, len(line) - 11), 6):
                assert line[i : i + 12] not in seen


def test_a_tenant_namespace_not_allowed_the_operator_identity_must_bring_a_secret(
    kubectl: Kubectl, namespace: str, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator({"DISYNC_DEFAULT_CREDENTIALS_NAMESPACES": json.dumps(["platform-team"])})
    kubectl.apply(dsi("borrowing", file_id=100))
    refused = wait_reason(kubectl, "borrowing", "CredentialsUnavailable")
    assert f"namespace {namespace} may not use the operator's own identity" in condition(refused)["message"]
    assert emulator.requests() == []
    kubectl(
        "create", "secret", "generic", "own", "--type=disync.dev/dataworks-credentials",
        "--from-literal=accessKeyId=LTAIsecretKeyFromSecret", "--from-literal=accessKeySecret=from-a-kubernetes-secret",
    )  # fmt: skip
    kubectl.apply(dsi("bringing", file_id=101, credentials={"secretRef": {"name": "own"}}))
    wait_ready(kubectl, "bringing")
    # Every call with the Secret's key (a verification may follow a start whose answer was slow under load), one start.
    assert {r["access_key_id"] for r in emulator.requests()} == {"LTAIsecretKeyFromSecret"}
    assert [r["access_key_id"] for r in emulator.starts()] == ["LTAIsecretKeyFromSecret"]


@pytest.fixture
def second_namespace(admin_kubectl: Kubectl, namespace: str) -> Iterator[str]:
    other = f"{namespace}-b"[:63]
    admin_kubectl("create", "namespace", other)
    yield other
    admin_kubectl.run("delete", "namespace", other, "--wait=false", check=False)


def test_one_task_is_managed_by_one_resource_across_namespaces(
    kubectl: Kubectl,
    admin_kubectl: Kubectl,
    namespace: str,
    second_namespace: str,
    emulator: EmulatorProcess,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    start_operator({"DISYNC_NAMESPACES": json.dumps([namespace, second_namespace])})
    other = admin_kubectl.bound(second_namespace)
    kubectl.apply(dsi("owner", file_id=100))
    wait_ready(kubectl, "owner")
    other.apply(dsi("intruder", file_id=100))
    intruder = wait_reason(other, "intruder", "Conflict")
    assert f"managed by {namespace}/owner" in condition(intruder)["message"]
    # Deleting the intruder stops nothing; the owner's task runs on.
    other("delete", "dsi", "intruder", "--timeout=60s")
    assert [r["action"] for r in emulator.requests()].count("StopDISyncInstance") == 0
    assert len(emulator.starts(100)) == 1
    # When the owner goes, the task passes to the next resource that names it.
    other.apply(dsi("successor", file_id=100))
    wait_reason(other, "successor", "Conflict")
    kubectl("delete", "dsi", "owner", "--timeout=60s")
    wait_ready(other, "successor")
    actions = [r["action"] for r in emulator.requests() if r["params"].get("FileId") == "100"]
    assert actions.count("StopDISyncInstance") == 1  # the owner's, on its deletion
    assert actions.count("StartDISyncInstance") == 2  # the owner's, then the successor's


def test_hand_written_intents_do_not_wedge_or_double_start(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator()
    future = json.dumps({"generation": 1, "since": "2099-01-01T00:00:00Z", "owner": "me", "id": "x"})
    for name, file_id, value in (("garbage", 100, "{not json"), ("future", 101, future)):
        manifest = json.loads(dsi(name, file_id=file_id))
        manifest["metadata"]["annotations"] = {"disync.dev/start-intent": value}
        kubectl.apply(json.dumps(manifest))
    for name, file_id in (("garbage", 100), ("future", 101)):
        wait_ready(kubectl, name)
        assert len(emulator.starts(file_id)) == 1


def test_no_room_for_the_intent_is_reported_and_nothing_is_sent(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator()
    manifest = json.loads(dsi("crowded", file_id=100))
    # Room for this annotation but not for the intent besides it (the API server allows 256 KiB of annotations).
    manifest["metadata"]["annotations"] = {"example.com/blob": "x" * (256 * 1024 - len("example.com/blob") - 50)}
    kubectl("create", "-f", "-", input=json.dumps(manifest))
    crowded = wait_reason(kubectl, "crowded", "IntentRejected")
    assert "256 KiB" in condition(crowded)["message"]
    assert emulator.requests() == []
    kubectl("annotate", "dsi", "crowded", "example.com/blob-")
    wait_ready(kubectl, "crowded")
    assert len(emulator.starts(100)) == 1


@pytest.mark.parametrize(
    ("secret_ref", "path"),
    [
        ({"name": "a..b"}, "spec.credentials.secretRef.name"),
        ({"name": "../../etc/passwd"}, "spec.credentials.secretRef.name"),
        ({"name": ""}, "spec.credentials.secretRef.name"),
        ({"name": "ok", "keys": {"accessKeySecret": "../x"}}, "spec.credentials.secretRef.keys.accessKeySecret"),
        ({"name": "ok", "keys": {"accessKeyId": ""}}, "spec.credentials.secretRef.keys.accessKeyId"),
    ],
)
def test_impossible_secret_names_and_keys_are_refused_at_admission(
    kubectl: Kubectl, crd: None, secret_ref: dict[str, object], path: str
) -> None:
    with pytest.raises(KubectlError) as refused:
        kubectl.apply(dsi("bad-ref", credentials={"secretRef": secret_ref}))
    assert path in refused.value.stderr


def test_start_param_json_is_held_to_the_typed_schema(
    kubectl: Kubectl, emulator: EmulatorProcess, start_operator: Callable[..., OperatorProcess]
) -> None:
    start_operator()
    loose = '{"errorLimit": {"record": "5"}, "errorLimit": {"record": 6}}'
    kubectl.apply(dsi("loose", file_id=100, startParamJSON=loose))
    wait_reason(kubectl, "loose", "InvalidSpec")  # decided before any call, in the same reconcile
    assert emulator.requests() == []
