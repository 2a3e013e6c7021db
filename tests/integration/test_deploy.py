"""deploy/ and examples/ against a real API server: install, re-apply, least-privilege RBAC, kubectl UX.

The operator runs here exactly as deploy/ configures it: its settings from deploy/manifests/operator.env (cluster-
wide: DISYNC_NAMESPACES unset), the identity of ServiceAccount disync-system/disync-operator (a static token the API
server knows), and nothing but the shipped ClusterRole. Only the DataWorks endpoint (the emulator), the ports and the
test timings differ. No kubelet or scheduler runs, so the Deployment itself never starts a pod; the operator runs as
a local process instead.

This module has its own API server. The operator watches every namespace as deployed, so it must not meet other
modules' DISyncInstances (their namespaces stay Terminating forever: no controller-manager runs here), and the RBAC
tests rewrite a ClusterRole that nothing else should depend on.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import DEADLINE, condition, wait_ready, wait_reason

from disync_operator.devstack.controlplane import ControlPlane, running_control_plane, service_account_user
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_ID, EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for
from secret_scan import assert_nothing_secret_emitted

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = REPO / "examples"
SA_NAMESPACE, SA_NAME = "disync-system", "disync-operator"
SA_USER, _ = service_account_user(SA_NAMESPACE, SA_NAME)
IMAGE = "ghcr.io/disync-operator/disync-operator:0.1.0"
EXAMPLE_NAMES = ["orders-realtime", "users-realtime", "warehouse-solution"]
# Test timings only (short backoff, frequent observation); everything else comes from deploy/.
LEASES = itertools.count()
FAST_ENV = {"DISYNC_BACKOFF_BASE": "0.2", "DISYNC_BACKOFF_CAP": "3", "DISYNC_OBSERVE_INTERVAL": "1"}


# --- fixtures ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    identities = [service_account_user(SA_NAMESPACE, SA_NAME)]
    with running_control_plane(identities, work_dir=tmp_path_factory.mktemp("deploy-controlplane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def admin_kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubectl_path, control_plane.kubeconfig)


@pytest.fixture(scope="module")
def rendered(admin_kubectl: Kubectl) -> list[dict[str, Any]]:
    """deploy/ as kustomize renders it (kubectl's built-in kustomize, the same one `apply -k` uses)."""
    return [doc for doc in yaml.safe_load_all(admin_kubectl("kustomize", str(DEPLOY))) if doc]


@pytest.fixture(scope="module")
def deployed(admin_kubectl: Kubectl, rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    admin_kubectl("apply", "--server-side", "-k", str(DEPLOY))
    admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/disyncinstances.disync.dev")
    return rendered


@pytest.fixture
def demo_emulator() -> Iterator[EmulatorProcess]:
    # The demo registry `make run` uses (no --config): the examples must work against exactly that.
    process = EmulatorProcess().start(timeout=DEADLINE)
    yield process
    process.stop()


def shipped_settings() -> dict[str, str]:
    """The operator's environment from deploy/manifests/operator.env (what the ConfigMap holds)."""
    settings = {}
    for line in (DEPLOY / "manifests" / "operator.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


@pytest.fixture
def run_operator(
    deployed: list[dict[str, Any]],
    control_plane: ControlPlane,
    demo_emulator: EmulatorProcess,
    admin_kubectl: Kubectl,
) -> Iterator[Callable[..., OperatorProcess]]:
    started: list[OperatorProcess] = []

    def start(wait: bool = True) -> OperatorProcess:
        env = shipped_settings()
        # The ports are per test process here (the Deployment's 8080/9090 would collide between tests).
        env.pop("DISYNC_LIVENESS_PORT")
        env.pop("DISYNC_METRICS_PORT")
        # As the Deployment's downward API sets it: where the leader-election Lease lives. Each test's process gets
        # a Lease of its own, so that one left held by a refused test never delays the next.
        env["POD_NAMESPACE"] = SA_NAMESPACE
        env["DISYNC_LEADER_ELECTION_NAME"] = f"disync-operator-{len(started)}-{os.getpid()}-{next(LEASES)}"
        process = OperatorProcess(
            kubeconfig=control_plane.service_account_identity(SA_NAMESPACE, SA_NAME).kubeconfig,
            endpoint=demo_emulator.url,
            env={**env, **FAST_ENV},
        )
        started.append(process)
        # Ready once it leads and has listed every CR: slow on a loaded machine (cf. tests/conftest).
        return process.start(timeout=DEADLINE, wait=wait)

    yield start
    try:
        assert_nothing_secret_emitted(admin_kubectl, started)
    finally:
        for process in started:
            process.stop()


@pytest.fixture
def examples_ns(kubectl: Kubectl, namespace: str) -> Iterator[Kubectl]:
    """A namespace for the examples; whatever is left in it is removed afterwards, finalizers included, so the next
    test's cluster-wide operator starts from an empty cluster (the namespace itself stays Terminating)."""
    yield kubectl
    for name in kubectl("get", "disyncinstances", "-o", "name").split():
        kubectl.run("patch", name, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
        kubectl.run("delete", name, "--wait=false", "--ignore-not-found", check=False)


# The API server's refusal, however a client words it: "... is forbidden: User ... cannot patch resource ...",
# APIForbiddenError, "Code: 403".
REFUSAL = re.compile(r"forbidden|cannot \w+ resource|\b403\b", re.IGNORECASE)


def forbidden_lines(operator: OperatorProcess) -> list[str]:
    return [line for line in operator.log().splitlines() if REFUSAL.search(line)]


def can_i(kubectl: Kubectl, verb: str, resource: str) -> bool:
    """Whether the operator's ServiceAccount may `verb` `resource` (plural[.group][/subresource]) anywhere."""
    plural, _, sub = resource.partition("/")
    args = [f"--subresource={sub}"] if sub else []
    result = kubectl.run("auth", "can-i", verb, plural, *args, "--all-namespaces", f"--as={SA_USER}", check=False)
    return result.stdout.strip() == "yes"


def shipped_cluster_role() -> dict[str, Any]:
    role: dict[str, Any] = next(
        doc
        for doc in yaml.safe_load_all((DEPLOY / "manifests" / "rbac.yaml").read_text())
        if doc["kind"] == "ClusterRole"
    )
    return role


def permissions(role: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    ]


def resource_arg(group: str, resource: str) -> str:
    plural, _, sub = resource.partition("/")
    name = f"{plural}.{group}" if group else plural
    return f"{name}/{sub}" if sub else name


# --- install -----------------------------------------------------------------------------------------------------


@pytest.mark.cluster
def test_apply_twice_changes_nothing(admin_kubectl: Kubectl, deployed: list[dict[str, Any]]) -> None:
    def versions() -> dict[str, str]:
        found = {}
        for doc in deployed:
            ns = ["-n", doc["metadata"]["namespace"]] if "namespace" in doc["metadata"] else []
            obj = admin_kubectl.get_json(*ns, doc["kind"].lower(), doc["metadata"]["name"])
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = obj["metadata"]["resourceVersion"]
        return found

    before = versions()
    assert set(before) == {
        "CustomResourceDefinition/disyncinstances.disync.dev",
        "Namespace/disync-system",
        "ServiceAccount/disync-operator",
        "ClusterRole/disync-operator",
        "ClusterRoleBinding/disync-operator",
        "Role/disync-operator-leader-election",
        "RoleBinding/disync-operator-leader-election",
        "PodDisruptionBudget/disync-operator",
        f"ConfigMap/{next(d for d in deployed if d['kind'] == 'ConfigMap')['metadata']['name']}",
        "Deployment/disync-operator",
        "Service/disync-operator-metrics",
    }
    diff = admin_kubectl.run("diff", "--server-side", "-k", str(DEPLOY), check=False)
    assert (diff.returncode, diff.stdout, diff.stderr) == (0, "", "")
    admin_kubectl("apply", "--server-side", "-k", str(DEPLOY))
    assert versions() == before


@pytest.mark.cluster
def test_deployment_is_native_and_restricted(admin_kubectl: Kubectl, deployed: list[dict[str, Any]]) -> None:
    by_kind = {doc["kind"]: doc for doc in deployed}
    namespace = by_kind["Namespace"]["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    deployment = by_kind["Deployment"]
    spec = deployment["spec"]
    # A hot standby (leader election), rolled one new pod at a time, never below one ready replica.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert by_kind["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert by_kind["PodDisruptionBudget"]["spec"]["selector"] == spec["selector"]
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == SA_NAME
    assert pod["automountServiceAccountToken"] is True
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    config_map = by_kind["ConfigMap"]
    assert container["envFrom"][0] == {"configMapRef": {"name": config_map["metadata"]["name"]}}
    # The tests run the operator with these very settings: cluster-wide, as the ClusterRole assumes.
    assert config_map["data"] == shipped_settings()
    assert "DISYNC_NAMESPACES" not in config_map["data"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert config_map["data"]["DISYNC_LEADER_ELECTION"] == "true"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"healthz": int(config_map["data"]["DISYNC_LIVENESS_PORT"]), "metrics": 9090}
    assert config_map["data"]["DISYNC_METRICS_PORT"] == "9090"
    assert set(container["resources"]) == {"requests", "limits"}
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsUser"] == 65532
    assert by_kind["Service"]["spec"]["ports"][0]["targetPort"] == "metrics"

    # The namespace enforces "restricted": the API server's PodSecurity admission accepts the operator's pod...
    pod_manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "operator-pod-check", "namespace": SA_NAMESPACE},
        "spec": copy.deepcopy(pod),
    }
    admin_kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod_manifest))
    # ...and refuses the same pod once it may escalate (so the check above was a real one).
    pod_manifest["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True
    refused = admin_kubectl.run("create", "--dry-run=server", "-f", "-", input=json.dumps(pod_manifest), check=False)
    assert refused.returncode != 0
    assert "violates PodSecurity" in refused.stderr


@pytest.mark.cluster
def test_shipped_role_lacks_what_is_not_needed(admin_kubectl: Kubectl, deployed: list[dict[str, Any]]) -> None:
    granted = [
        ("list", "disyncinstances.disync.dev"),
        ("watch", "disyncinstances.disync.dev"),
        ("patch", "disyncinstances.disync.dev"),
        ("patch", "disyncinstances.disync.dev/status"),
        ("get", "secrets"),
        ("create", "events"),
    ]
    absent = [
        ("get", "disyncinstances.disync.dev"),
        ("update", "disyncinstances.disync.dev"),
        ("delete", "disyncinstances.disync.dev"),
        ("get", "disyncinstances.disync.dev/status"),
        ("update", "disyncinstances.disync.dev/status"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("patch", "events"),
        ("update", "events"),
        ("list", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "leases.coordination.k8s.io"),
    ]
    assert [p for p in granted if not can_i(admin_kubectl, *p)] == []
    assert [p for p in absent if can_i(admin_kubectl, *p)] == []

    # Leader election: its one Lease, in the operator's namespace only.
    def can_i_in(namespace: str, verb: str) -> bool:
        answer = admin_kubectl.run(
            "auth", "can-i", verb, "leases.coordination.k8s.io", "-n", namespace, f"--as={SA_USER}", check=False
        )
        return answer.stdout.strip() == "yes"

    assert [v for v in ("get", "create", "update") if not can_i_in(SA_NAMESPACE, v)] == []
    assert [v for v in ("list", "watch", "delete", "patch") if can_i_in(SA_NAMESPACE, v)] == []
    assert [v for v in ("get", "create", "update") if can_i_in("default", v)] == []


@pytest.mark.cluster
def test_all_example_manifests_are_accepted(
    admin_kubectl: Kubectl, deployed: list[dict[str, Any]], kubectl: Kubectl
) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            kubectl("apply", "--server-side", "--dry-run=server", "-f", str(path))
    # The documented-only extras name their own namespace (disync-system).
    for path in sorted((DEPLOY / "examples").glob("*.yaml")):
        admin_kubectl("apply", "--server-side", "--dry-run=server", "-f", str(path))
    names = kubectl("kustomize", str(EXAMPLES))
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(names) if d)
    assert kinds == [("DISyncInstance", n) for n in EXAMPLE_NAMES] + [("Secret", "dataworks-credentials")]


@pytest.mark.cluster
def test_explain_shows_the_field_docs(admin_kubectl: Kubectl, deployed: list[dict[str, Any]]) -> None:
    text = wait_for(
        lambda: admin_kubectl.run("explain", "disyncinstance.spec.startParam", check=False).stdout,
        timeout=DEADLINE,
        what="the CRD schema to be published for kubectl explain",
    )
    assert "Start parameters as an object (DI_REALTIME only)" in text
    for field in ("failoverLimit", "errorLimit", "ddlMarkMap"):
        assert field in text


# --- the operator with nothing but the shipped RBAC ----------------------------------------------------------------


@pytest.mark.cluster
def test_lifecycle_with_only_the_shipped_rbac(
    examples_ns: Kubectl, namespace: str, demo_emulator: EmulatorProcess, run_operator: Callable[[], OperatorProcess]
) -> None:
    kubectl = examples_ns
    operator = run_operator()
    kubectl("apply", "-k", str(EXAMPLES))
    kubectl("wait", "--for=condition=Ready", "--timeout=60s", *[f"disyncinstance/{n}" for n in EXAMPLE_NAMES])
    objs = {name: wait_ready(kubectl, name) for name in EXAMPLE_NAMES}

    # Printer columns, as a user sees them.
    header, *rows = kubectl("get", "disyncinstances").splitlines()
    assert header.split() == ["NAME", "READY", "SYNCED", "REASON", "STATUS", "MESSAGE", "AGE"]
    table = {row.split()[0]: row.split() for row in rows}
    assert all(row[1:3] == ["True", "True"] for row in table.values())
    assert table["orders-realtime"][4] == table["warehouse-solution"][4] == "success"
    header, *rows = kubectl("get", "disyncinstances", "-o", "wide").splitlines()
    assert header.split()[7:10] == ["PROJECT", "TYPE", "FILE"]
    wide = {row.split()[0]: row.split() for row in rows}
    assert {"10000", "DI_REALTIME", "100"} <= set(wide["orders-realtime"])
    assert {"10000", "DI_SOLUTION", "200"} <= set(wide["warehouse-solution"])

    # users-realtime ran with its Secret (read with `get secrets`), and its startParamJSON went out as given.
    assert objs["users-realtime"]["status"]["credentialsVersion"].startswith("secret:dataworks-credentials:")
    (users_start,) = demo_emulator.starts(101)
    assert users_start["access_key_id"] == DEMO_ACCESS_KEY_ID
    assert json.loads(users_start["params"]["StartParam"]) == {
        "failoverLimit": {"count": 5, "interval": 60},
        "errorLimit": {"record": 100},
    }

    # A spec change starts the new generation.
    kubectl(
        "patch",
        "dsi",
        "orders-realtime",
        "--type=merge",
        "-p",
        '{"spec":{"startParam":{"failoverLimit":{"count":3,"interval":30}}}}',
    )
    orders = wait_ready(kubectl, "orders-realtime", generation=2)
    assert len(demo_emulator.starts(100)) == 2
    assert orders["metadata"]["finalizers"] == ["disync.dev/stop-instance"]

    # Suspended (its stop intent is a metadata patch too) and resumed: one stop, one start.
    kubectl("patch", "dsi", "orders-realtime", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_reason(kubectl, "orders-realtime", "Suspended")
    kubectl("patch", "dsi", "orders-realtime", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    orders = wait_ready(kubectl, "orders-realtime", generation=4)
    assert len(demo_emulator.starts(100)) == 3
    assert len(demo_emulator.requests("StopDISyncInstance")) == 1

    # Argo CD must not refresh on the operator's own bookkeeping: it writes status, its finalizer and its start and
    # stop intent annotations, nothing else, and Argo CD is told to ignore all of them.
    patch = yaml.safe_load((DEPLOY / "argocd" / "argocd-cm-patch.yaml").read_text())
    ignored = yaml.safe_load(patch["data"]["resource.customizations.ignoreResourceUpdates.disync.dev_DISyncInstance"])
    written = {
        key
        for obj in [orders, *objs.values()]
        for key in obj["metadata"].get("annotations", {})
        if key.startswith("disync.dev/")
    }
    assert written == {"disync.dev/start-intent", "disync.dev/stop-intent"}
    assert set(ignored["jsonPointers"]) == {
        "/status",
        "/metadata/finalizers",
        "/metadata/annotations/disync.dev~1start-intent",
        "/metadata/annotations/disync.dev~1stop-intent",
    }
    # Only the real-time task with deletionPolicy Stop has a finalizer: the others have nothing to do at deletion.
    assert {n: o["metadata"].get("finalizers") for n, o in objs.items()} == {
        "orders-realtime": ["disync.dev/stop-instance"],
        "users-realtime": None,
        "warehouse-solution": None,
    }

    # Delete: the real-time task is stopped and the finalizer released; Orphan and the solution are left alone.
    for name in EXAMPLE_NAMES:
        kubectl("delete", "dsi", name, "--timeout=60s")
    assert kubectl("get", "dsi", "-o", "name") == ""
    stops = demo_emulator.requests("StopDISyncInstance")
    assert [(s["params"]["FileId"], s["code"]) for s in stops] == [("100", "success")] * 2  # the suspend's, this one

    def reasons() -> set[tuple[str, str]]:
        return {(e["involvedObject"]["name"], e["reason"]) for e in kubectl.get_json("events")["items"]}

    expected = {
        ("orders-realtime", "Started"),
        ("orders-realtime", "Suspended"),
        ("orders-realtime", "Stopped"),
        ("users-realtime", "Orphaned"),
    }
    wait_for(lambda: expected <= reasons(), timeout=DEADLINE, what=f"events {expected}")
    # Events were only ever created (kopf never patches one): `create` alone sufficed, and nothing was refused.
    assert forbidden_lines(operator) == []
    assert operator.running


# --- every permission is needed ------------------------------------------------------------------------------------

# What breaks without each permission, and how it shows: the API server's refusal in the operator's log, except for
# `get secrets`, which the operator turns into a condition a user can read.
PERMISSIONS = permissions(shipped_cluster_role())


@pytest.fixture
def restrict(admin_kubectl: Kubectl, deployed: list[dict[str, Any]]) -> Iterator[Callable[[str, str, str], None]]:
    full = shipped_cluster_role()

    def apply(role: dict[str, Any]) -> None:
        admin_kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(role))

    def without(group: str, resource: str, verb: str) -> None:
        role = copy.deepcopy(full)
        for rule in role["rules"]:
            if group in rule["apiGroups"] and resource in rule["resources"]:
                rule["verbs"] = [v for v in rule["verbs"] if v != verb]
        role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
        apply(role)
        # RBAC changes reach the authorizer through an informer: wait until it answers "no".
        wait_for(
            lambda: not can_i(admin_kubectl, verb, resource_arg(group, resource)), timeout=DEADLINE, what="revocation"
        )

    yield without
    apply(full)
    wait_for(
        lambda: all(can_i(admin_kubectl, v, resource_arg(g, r)) for g, r, v in PERMISSIONS),
        timeout=DEADLINE,
        what="the full role to be in force again",
    )


@pytest.mark.cluster
@pytest.mark.parametrize(
    ("group", "resource", "verb"), PERMISSIONS, ids=[f"{r}-{v}".replace("/", "-") for _, r, v in PERMISSIONS]
)
def test_every_permission_is_needed(
    examples_ns: Kubectl,
    restrict: Callable[[str, str, str], None],
    run_operator: Callable[..., OperatorProcess],
    group: str,
    resource: str,
    verb: str,
) -> None:
    kubectl = examples_ns
    restrict(group, resource, verb)
    kubectl("apply", "-k", str(EXAMPLES))
    operator = run_operator(wait=False)  # (without list it never gets ready: its first listing is refused)
    if (resource, verb) == ("secrets", "get"):
        ready = condition(wait_reason(kubectl, "users-realtime", "CredentialsUnavailable"))
        assert ready is not None
        assert "may not read Secret" in ready["message"]
        assert "RBAC: secrets get" in ready["message"]
        return
    refusal = f'cannot {verb} resource \\"{resource}\\"'

    def refused() -> list[str]:
        return [line for line in operator.log().splitlines() if refusal in line or refusal.replace("\\", "") in line]

    lines = wait_for(refused, timeout=DEADLINE, what=f"the operator to be refused: {refusal}")
    print(lines[0])  # the evidence, shown with `pytest -rP`
    assert SA_USER in lines[0]


@pytest.mark.cluster
@pytest.mark.parametrize("verb", ["get", "create", "update"])
def test_every_leader_election_permission_is_needed(
    admin_kubectl: Kubectl, deployed: list[dict[str, Any]], run_operator: Callable[..., OperatorProcess], verb: str
) -> None:
    """Without one of the Role's verbs, leader election is refused (and the process stands by, reconciling nothing)."""
    full: dict[str, Any] = next(
        doc for doc in yaml.safe_load_all((DEPLOY / "manifests" / "rbac.yaml").read_text()) if doc["kind"] == "Role"
    )
    role = copy.deepcopy(full)
    role["rules"][0]["verbs"] = [v for v in role["rules"][0]["verbs"] if v != verb]

    def allowed() -> bool:
        answer = admin_kubectl.run(
            "auth", "can-i", verb, "leases.coordination.k8s.io", "-n", SA_NAMESPACE, f"--as={SA_USER}", check=False
        )
        return answer.stdout.strip() == "yes"

    admin_kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(role))
    try:
        wait_for(lambda: not allowed(), timeout=DEADLINE, what="revocation")
        operator = run_operator(wait=False)
        refusal = f'cannot {verb} resource \\"leases\\"'
        lines = wait_for(
            lambda: [ln for ln in operator.log().splitlines() if refusal in ln or refusal.replace("\\", "") in ln],
            timeout=DEADLINE,
            what=f"the operator to be refused: {refusal}",
        )
        assert SA_USER in lines[0]
        if verb != "update":  # (without update it does lead once it has created the Lease, then can't renew)
            assert operator.readiness()["role"] == "standby"
    finally:
        admin_kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(full))
        wait_for(allowed, timeout=DEADLINE, what="the full Role to be in force again")


@pytest.mark.cluster
def test_namespaced_install_grants_nothing_outside_its_namespaces(
    admin_kubectl: Kubectl,
    deployed: list[dict[str, Any]],
    control_plane: ControlPlane,
    demo_emulator: EmulatorProcess,
    namespace: str,
    kubectl: Kubectl,
) -> None:
    """deploy/namespaced: the ClusterRole bound only by RoleBindings in the listed namespaces, no ClusterRoleBinding;
    applied for this test's namespace, the operator works there and may read nothing elsewhere."""
    docs = [doc for doc in yaml.safe_load_all(admin_kubectl("kustomize", str(DEPLOY / "namespaced"))) if doc]
    assert [d for d in docs if d["kind"] == "ClusterRoleBinding"] == []
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "ClusterRole"]
    # Leader election's Role stays where it is: the operator's own namespace.
    (election,) = [d for d in docs if d["kind"] == "RoleBinding" and d["roleRef"]["kind"] == "Role"]
    assert election["metadata"]["namespace"] == SA_NAMESPACE
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    listed = json.loads(config["data"]["DISYNC_NAMESPACES"])
    assert sorted(b["metadata"]["namespace"] for b in bindings) == sorted(listed)
    assert json.loads(config["data"]["DISYNC_DEFAULT_CREDENTIALS_NAMESPACES"]) == listed

    binding = copy.deepcopy(bindings[0])
    binding["metadata"]["namespace"] = namespace
    admin_kubectl("delete", "clusterrolebinding", "disync-operator")
    try:
        admin_kubectl("apply", "-f", "-", input=json.dumps(binding))

        def may(verb: str, resource: str, where: str) -> bool:
            args = ("auth", "can-i", verb, resource, f"--namespace={where}", f"--as={SA_USER}")
            return admin_kubectl.run(*args, check=False).stdout.strip() == "yes"

        assert may("get", "secrets", namespace)
        assert not may("get", "secrets", "kube-system")
        assert not may("list", "disyncinstances.disync.dev", "default")
        assert not can_i(admin_kubectl, "get", "secrets")  # nothing cluster-wide

        env = shipped_settings() | FAST_ENV
        env.pop("DISYNC_LIVENESS_PORT")
        env.pop("DISYNC_METRICS_PORT")
        env |= {
            "POD_NAMESPACE": SA_NAMESPACE,
            "DISYNC_LEADER_ELECTION_NAME": f"disync-operator-namespaced-{os.getpid()}",
            "DISYNC_NAMESPACES": json.dumps([namespace]),
            "DISYNC_DEFAULT_CREDENTIALS_NAMESPACES": json.dumps([namespace]),
        }
        operator = OperatorProcess(
            kubeconfig=control_plane.service_account_identity(SA_NAMESPACE, SA_NAME).kubeconfig,
            endpoint=demo_emulator.url,
            env=env,
        ).start(timeout=DEADLINE)
        try:
            kubectl("apply", "-f", str(EXAMPLES / "orders-realtime.yaml"))
            wait_ready(kubectl, "orders-realtime")
            assert forbidden_lines(operator) == []
        finally:
            operator.stop()
            kubectl.run(
                "patch", "dsi", "orders-realtime", "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False
            )
            kubectl.run("delete", "dsi", "orders-realtime", "--wait=false", "--ignore-not-found", check=False)
    finally:
        admin_kubectl.run("delete", "rolebinding", "disync-operator", f"--namespace={namespace}", check=False)
        admin_kubectl("apply", "--server-side", "-k", str(DEPLOY))  # the cluster-wide binding back, for the others
