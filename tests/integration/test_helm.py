"""The Helm chart (deploy/helm/disync-operator), checked with real helm (hack/build-tool.sh builds it from its pinned Go
module) against a real API server.

- one source of truth: with values that mirror them, the chart renders the very objects `kubectl kustomize` renders
  for deploy/, deploy/namespaced/ and deploy/monitoring/ (Helm's own labels, the CRD's keep annotation and the
  ConfigMap's name aside), and its files/ are copies of deploy/'s;
- `helm lint --strict`, and `helm template` applied with a server-side dry run; the ServiceMonitor, PrometheusRule and
  dashboard too, against the Prometheus Operator's published CRDs;
- `helm install`, `upgrade` and `uninstall`, with the operator run (no kubelet here: as a local process) as the chart's
  ServiceAccount with the chart's settings, leading and reconciling a resource to Ready.

This module has its own API server: the chart installs cluster-wide objects (the CRD, a ClusterRole) that the shared
one's fixtures apply differently.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_helpers import DEADLINE, dsi, wait_ready

from disync_operator.devstack.controlplane import ControlPlane, build_binaries, running_control_plane
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "disync-operator"
DEPLOY = REPO / "deploy"
RELEASE = "disync-operator"
BUILD_TOOL = REPO / "hack" / "build-tool.sh"

# What Helm adds and kustomize doesn't: the chart's labels, and the CRD kept on uninstall.
HELM_LABELS = {
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
}
HELM_ANNOTATIONS = {"helm.sh/resource-policy", "checksum/config"}
# kustomize's generated ConfigMap names end in a hash of their data (the chart rolls pods with checksum/config).
HASHED = re.compile(r"^(disync-operator-config)-[a-z0-9]{10}$")

# Values that mirror each kustomize variant.
DEFAULT_VALUES = ["--set", "namespace.create=true", "--set", "namespace.name=disync-system"]
WATCH_TEAMS = [
    "--set-json",
    'watchNamespaces=["team-a","team-b"]',
    "--set-json",
    'settings.defaultCredentialsNamespaces=["team-a","team-b"]',
]
NAMESPACED_VALUES = [*DEFAULT_VALUES, *WATCH_TEAMS]
MONITORING_VALUES = ["--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true,dashboard.enabled=true"]


@pytest.fixture(scope="session")
def helm() -> Path:
    result = subprocess.run(["bash", str(BUILD_TOOL), "helm"], stdout=subprocess.PIPE, text=True, check=False)
    assert result.returncode == 0, f"building helm failed; run {BUILD_TOOL} helm to see why"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def local_kubectl() -> Kubectl:
    """kubectl for what needs no cluster (its built-in kustomize)."""
    return Kubectl(build_binaries() / "kubectl", Path("/dev/null"))


def run_helm(helm: Path, *args: str, kubeconfig: Path | None = None) -> str:
    argv = [str(helm), *args] + (["--kubeconfig", str(kubeconfig)] if kubeconfig else [])
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def template(helm: Path, *values: str, namespace: str = "disync-system") -> list[dict[str, Any]]:
    text = run_helm(helm, "template", RELEASE, str(CHART), "--namespace", namespace, *values)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(kubectl: Kubectl, folder: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(kubectl("kustomize", str(folder))) if doc]


def normalized(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Objects by (kind, namespace, name), without what only one of the two tools adds."""

    def strip(meta: dict[str, Any]) -> None:
        for key, drop in (("labels", HELM_LABELS), ("annotations", HELM_ANNOTATIONS)):
            kept = {k: v for k, v in (meta.get(key) or {}).items() if k not in drop}
            if kept:
                meta[key] = kept
            else:
                meta.pop(key, None)

    found = {}
    for doc in json.loads(json.dumps(docs)):
        meta = doc["metadata"]
        if doc["kind"] == "ConfigMap":
            meta["name"] = HASHED.sub(r"\1", meta["name"])
        strip(meta)
        if doc["kind"] == "Deployment":
            pod = doc["spec"]["template"]
            strip(pod["metadata"])
            for container in pod["spec"]["containers"]:
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        source["configMapRef"]["name"] = HASHED.sub(r"\1", source["configMapRef"]["name"])
        found[(doc["kind"], meta.get("namespace", ""), meta["name"])] = doc
    return found


def assert_same(rendered: dict[Any, dict[str, Any]], expected: dict[Any, dict[str, Any]]) -> None:
    assert sorted(rendered) == sorted(expected)
    different = [key for key in expected if rendered[key] != expected[key]]
    assert different == [], "\n".join(
        f"{key}:\n  helm:      {rendered[key]}\n  kustomize: {expected[key]}" for key in different
    )


# --- one source of truth -------------------------------------------------------------------------------------------


def test_chart_files_are_copies_of_deploy() -> None:
    pairs = {
        "disyncinstances.yaml": DEPLOY / "crds" / "disyncinstances.yaml",
        "prometheusrule.yaml": DEPLOY / "monitoring" / "prometheusrule.yaml",
        "dashboard.json": DEPLOY / "monitoring" / "dashboard.json",
    }
    stale = [name for name, source in pairs.items() if (CHART / "files" / name).read_text() != source.read_text()]
    assert stale == [], f"the chart's files/ differ from deploy/ (run `make chart-files`): {stale}"


@pytest.mark.parametrize(
    ("folder", "values"),
    [("", DEFAULT_VALUES), ("namespaced", NAMESPACED_VALUES)],
    ids=["deploy", "deploy-namespaced"],
)
def test_chart_renders_what_kustomize_renders(
    helm: Path, local_kubectl: Kubectl, folder: str, values: list[str]
) -> None:
    assert_same(normalized(template(helm, *values)), normalized(kustomize(local_kubectl, DEPLOY / folder)))


def test_chart_monitoring_is_deploy_monitoring(helm: Path, local_kubectl: Kubectl) -> None:
    expected = normalized(kustomize(local_kubectl, DEPLOY / "monitoring"))
    plain = normalized(template(helm))
    rendered = {k: v for k, v in normalized(template(helm, *MONITORING_VALUES)).items() if k not in plain}
    assert_same(rendered, expected)


def test_settings_become_the_operator_environment(helm: Path) -> None:
    docs = template(
        helm,
        "--set",
        "settings.qps=7.5,settings.logLevel=DEBUG,settings.observeQps=2,settings.metricsPort=0,settings.region=null",
    )
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    data = config["data"]
    assert (data["DISYNC_QPS"], data["DISYNC_LOG_LEVEL"], data["DISYNC_OBSERVE_QPS"]) == ("7.5", "DEBUG", "2")
    assert "DISYNC_REGION" not in data  # null: the operator's own default
    assert "DISYNC_NAMESPACES" not in data
    # Metrics off: no Service, no metrics port.
    assert [d for d in docs if d["kind"] == "Service"] == []
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert [p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]] == ["healthz"]


@pytest.mark.parametrize(
    "values", [[], NAMESPACED_VALUES, MONITORING_VALUES, ["--set", "image.digest=sha256:" + "0" * 64]]
)
def test_lint_strict(helm: Path, values: list[str]) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART), *values)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


# --- mistakes are refused --------------------------------------------------------------------------------------------


def test_the_values_schema_is_generated_from_the_settings_model() -> None:
    generated = subprocess.run(
        [sys.executable, str(CHART.parents[2] / "hack" / "gen_chart_schema.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert (CHART / "values.schema.json").read_text() == generated, "run `make chart-files`"


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (["--set", "settings.qsp=50"], "at '/settings': additional properties 'qsp' not allowed"),
        (["--set", "replicaCount=two"], "at '/replicaCount': got string, want integer"),
        (["--set", "settings.qps=fast"], "at '/settings/qps'"),
        (["--set", "imageTag=1.0"], "additional properties 'imageTag' not allowed"),
        (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
        (["--set", "watchNamespaces[0]=a\nkind: ClusterRoleBinding"], "at '/watchNamespaces/0'"),
        (["--set", "priorityClassName=x\nhostNetwork: true"], "at '/priorityClassName'"),
        (["--set", "credentialsSecretName=../etc"], "at '/credentialsSecretName'"),
    ],
    ids=[
        "unknown-setting",
        "replicas-word",
        "qps-word",
        "unknown-value",
        "pull-policy",
        "namespace-injection",
        "priority-injection",
        "secret-name",
    ],
)
def test_a_mistake_is_refused_with_its_path(helm: Path, values: list[str], said: str) -> None:
    for command in (["template", RELEASE], ["lint", "--strict"]):
        result = subprocess.run([str(helm), *command, str(CHART), *values], capture_output=True, text=True, check=False)
        assert result.returncode != 0, result.stdout[-2000:]
        assert said in result.stdout + result.stderr


def test_numbers_render_as_numbers_and_names_as_strings(helm: Path, tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(
        "settings:\n  maxResponseBytes: 2097152\n  qps: 2.5\nwatchNamespaces: ['123', 'on', 'null']\n"
        "priorityClassName: 'null'\n"
    )
    docs = template(helm, "-f", str(values))
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    assert (config["data"]["DISYNC_MAX_RESPONSE_BYTES"], config["data"]["DISYNC_QPS"]) == ("2097152", "2.5")
    bound = sorted(
        d["metadata"]["namespace"] for d in docs if d["kind"] == "RoleBinding" and "namespace" in d["metadata"]
    )
    assert {"123", "on", "null"} <= set(bound)
    assert all(isinstance(n, str) for n in bound)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["priorityClassName"] == "null"
    # What the operator reads back is what was meant.
    from disync_operator.controller.settings import OperatorSettings

    assert (
        OperatorSettings(
            region="cn-shanghai", max_response_bytes=config["data"]["DISYNC_MAX_RESPONSE_BYTES"]
        ).max_response_bytes
        == 2097152
    )


def test_a_service_account_made_elsewhere_is_used(helm: Path) -> None:
    docs = template(helm, "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=made-by-terraform")
    assert [d for d in docs if d["kind"] == "ServiceAccount"] == []
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "made-by-terraform"
    subjects = [s for d in docs if d["kind"].endswith("Binding") for s in d["subjects"]]
    assert subjects
    assert {s["name"] for s in subjects} == {"made-by-terraform"}
    refused = subprocess.run(
        [str(helm), "template", RELEASE, str(CHART), "--set", "serviceAccount.create=false"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0
    assert "serviceAccount.name is required when serviceAccount.create is false" in refused.stderr


def test_security_contexts_are_values_for_platforms_that_assign_uids(helm: Path) -> None:
    ids = ["runAsUser", "runAsGroup"]
    unset = [a for key in ids for a in ("--set", f"containerSecurityContext.{key}=null")]
    unset += [a for key in [*ids, "fsGroup"] for a in ("--set", f"podSecurityContext.{key}=null")]
    (deployment,) = [d for d in template(helm, *unset) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]["securityContext"]
    assert not {"runAsUser", "runAsGroup", "fsGroup"} & set(pod["securityContext"])
    assert not {"runAsUser", "runAsGroup"} & set(container)
    assert container["readOnlyRootFilesystem"] is True  # the rest of the restricted profile stays
    assert container["capabilities"] == {"drop": ["ALL"]}


def test_name_overrides(helm: Path) -> None:
    docs = template(helm, "--set", "fullnameOverride=dsi")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    assert deployment["metadata"]["name"] == "dsi"


# --- against the API server ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(work_dir=tmp_path_factory.mktemp("helm-controlplane")) as plane:
        yield plane


@pytest.fixture(scope="module")
def admin_kubectl(control_plane: ControlPlane) -> Kubectl:
    return Kubectl(control_plane.kubectl_path, control_plane.kubeconfig)


@pytest.mark.cluster
@pytest.mark.parametrize("values", [[], WATCH_TEAMS], ids=["cluster-wide", "namespaced"])
def test_template_passes_a_server_side_dry_run(
    helm: Path, admin_kubectl: Kubectl, namespace: str, values: list[str]
) -> None:
    for watched in ("team-a", "team-b"):
        if admin_kubectl.run("get", "namespace", watched, check=False).returncode != 0:
            admin_kubectl("create", "namespace", watched)
    docs = template(helm, *values, namespace=namespace)
    out = admin_kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        "-",
        input=json.dumps({"kind": "List", "apiVersion": "v1", "items": docs}),
    )
    assert len(out.strip().splitlines()) == len(docs), out
    # Nothing was created.
    assert admin_kubectl.run("get", "deployment", RELEASE, "-n", namespace, check=False).returncode != 0


@pytest.fixture(scope="module")
def monitoring_crds(admin_kubectl: Kubectl) -> None:
    """The Prometheus Operator's published ServiceMonitor and PrometheusRule CRDs (from its Go module, pinned in
    hack/tools/monitoring-crds), installed so that the API server validates those objects against their schema."""
    module = "github.com/prometheus-operator/prometheus-operator"
    env = {**os.environ, "GOFLAGS": "-mod=readonly", "GOWORK": "off", "GOTOOLCHAIN": "local"}
    result = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=REPO / "hack" / "tools" / "monitoring-crds",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    crds = Path(json.loads(result.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    for plural in ("servicemonitors", "prometheusrules"):
        admin_kubectl("apply", "--server-side", "-f", str(crds / f"monitoring.coreos.com_{plural}.yaml"))
        admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{plural}.monitoring.coreos.com")


@pytest.mark.cluster
def test_monitoring_objects_pass_their_published_schema(
    helm: Path, local_kubectl: Kubectl, admin_kubectl: Kubectl, monitoring_crds: None, namespace: str
) -> None:
    def dry_run(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
        for doc in docs:
            doc["metadata"]["namespace"] = namespace
        items = json.dumps({"kind": "List", "apiVersion": "v1", "items": docs})
        return admin_kubectl.run("apply", "--server-side", "--dry-run=server", "-f", "-", input=items, check=False)

    plain = {(d["kind"], d["metadata"]["name"]) for d in template(helm)}
    chart = [d for d in template(helm, *MONITORING_VALUES) if (d["kind"], d["metadata"]["name"]) not in plain]
    assert sorted(d["kind"] for d in chart) == ["ConfigMap", "PrometheusRule", "ServiceMonitor"]
    for docs in (chart, kustomize(local_kubectl, DEPLOY / "monitoring")):
        result = dry_run(docs)
        assert result.returncode == 0, result.stderr
    # The schema is really checked: a malformed duration is refused.
    broken = [d for d in kustomize(local_kubectl, DEPLOY / "monitoring") if d["kind"] == "PrometheusRule"]
    broken[0]["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    refused = dry_run(broken)
    assert refused.returncode != 0
    assert "spec.groups[0].rules[0].for" in refused.stderr


@pytest.fixture
def helm_install(helm: Path, control_plane: ControlPlane, admin_kubectl: Kubectl) -> Iterator[Callable[..., str]]:
    """`install(*args)` installs or upgrades the release into disync-helm; uninstalled at the end."""
    namespace = "disync-helm"

    def install(*args: str) -> str:
        return run_helm(
            helm,
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "--namespace",
            namespace,
            *args,
            kubeconfig=control_plane.kubeconfig,
        )

    yield install
    subprocess.run(
        [str(helm), "uninstall", RELEASE, "--namespace", namespace, "--kubeconfig", str(control_plane.kubeconfig)],
        capture_output=True,
        check=False,
    )


def operator_as_installed(
    control_plane: ControlPlane, admin_kubectl: Kubectl, emulator: EmulatorProcess, namespace: str
) -> OperatorProcess:
    """The operator as the chart configures it: the ConfigMap's settings, the ServiceAccount's identity, the pod's
    namespace; only the DataWorks endpoint (the emulator) and the ports (free ones) are the test's."""
    config = admin_kubectl.get_json("configmap", f"{RELEASE}-config", "-n", namespace)["data"]
    env = {k: v for k, v in config.items() if k not in ("DISYNC_LIVENESS_PORT", "DISYNC_METRICS_PORT")}
    env |= {"POD_NAMESPACE": namespace, "DISYNC_OBSERVE_INTERVAL": "1"}
    return OperatorProcess(
        kubeconfig=control_plane.service_account_identity(namespace, RELEASE).kubeconfig,
        endpoint=emulator.url,
        env=env,
    ).start(timeout=DEADLINE)


@pytest.mark.cluster
def test_install_upgrade_uninstall(
    helm: Path,
    helm_install: Callable[..., str],
    control_plane: ControlPlane,
    admin_kubectl: Kubectl,
    emulator: EmulatorProcess,
    namespace: str,
    kubectl: Kubectl,
) -> None:
    helm_install("--create-namespace", "--set", "settings.qps=5")
    objects = {
        ("deployment", "disync-helm"),
        ("serviceaccount", "disync-helm"),
        ("configmap", "disync-helm"),
        ("poddisruptionbudget", "disync-helm"),
        ("role", "disync-helm"),
    }
    for kind, ns in objects:
        name = f"{RELEASE}-config" if kind == "configmap" else RELEASE
        name = f"{RELEASE}-leader-election" if kind == "role" else name
        admin_kubectl("get", kind, name, "-n", ns)
    admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/disyncinstances.disync.dev")

    # The operator, as installed, leads and reconciles.
    operator = operator_as_installed(control_plane, admin_kubectl, emulator, "disync-helm")
    try:
        wait_for(lambda: operator.readiness()["role"] == "leader", timeout=DEADLINE, what="the operator to lead")
        kubectl("apply", "-f", "-", input=dsi("via-helm", file_id=100))
        wait_ready(kubectl, "via-helm")
        assert (
            admin_kubectl.get_json("configmap", f"{RELEASE}-config", "-n", "disync-helm")["data"]["DISYNC_QPS"] == "5"
        )
    finally:
        operator.stop()

    # An upgrade changes the settings and rolls the pods (the pod template's checksum changes).
    def checksum() -> str:
        deployment = admin_kubectl.get_json("deployment", RELEASE, "-n", "disync-helm")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    before = checksum()
    helm_install("--reuse-values", "--set", "settings.qps=10")
    assert checksum() != before
    history = json.loads(
        run_helm(helm, "history", RELEASE, "-n", "disync-helm", "-o", "json", kubeconfig=control_plane.kubeconfig)
    )
    assert [(h["revision"], h["status"]) for h in history] == [(1, "superseded"), (2, "deployed")]
    operator = operator_as_installed(control_plane, admin_kubectl, emulator, "disync-helm")
    try:
        wait_for(lambda: operator.readiness()["role"] == "leader", timeout=DEADLINE, what="the operator to lead")
        kubectl("apply", "-f", "-", input=dsi("after-upgrade", file_id=101))
        wait_ready(kubectl, "after-upgrade")
        # Uninstall in the documented order: the resources first, while the operator runs.
        kubectl("delete", "dsi", "--all", "--timeout=60s")
    finally:
        operator.stop()

    run_helm(helm, "uninstall", RELEASE, "--namespace", "disync-helm", "--wait", kubeconfig=control_plane.kubeconfig)
    for kind, ns in objects:
        name = f"{RELEASE}-config" if kind == "configmap" else RELEASE
        name = f"{RELEASE}-leader-election" if kind == "role" else name
        assert admin_kubectl.run("get", kind, name, "-n", ns, check=False).returncode != 0, kind
    assert admin_kubectl.run("get", "clusterrole", RELEASE, check=False).returncode != 0
    # The CRD stays (helm.sh/resource-policy: keep): deleting it would delete every DISyncInstance.
    admin_kubectl("get", "crd", "disyncinstances.disync.dev")


@pytest.mark.cluster
def test_namespace_create_installs_with_a_plain_helm_install(
    helm: Path, control_plane: ControlPlane, admin_kubectl: Kubectl
) -> None:
    kubeconfig = control_plane.kubeconfig
    args = ["--set", "namespace.create=true", "--set", "namespace.name=disync-made", "--set", "crds.install=false"]
    try:
        run_helm(helm, "install", "made", str(CHART), "--namespace", "default", *args, kubeconfig=kubeconfig)
        made = admin_kubectl.get_json("namespace", "disync-made")
        assert made["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        admin_kubectl("get", "deployment", "made-disync-operator", "-n", "disync-made")
        admin_kubectl("get", "serviceaccount", "made-disync-operator", "-n", "disync-made")
    finally:
        subprocess.run(
            # No --wait: a bare API server has no namespace controller, so the namespace stays Terminating.
            [str(helm), "uninstall", "made", "--namespace", "default", "--kubeconfig", str(kubeconfig)],
            capture_output=True,
            check=False,
        )


@pytest.mark.cluster
def test_the_chart_takes_over_a_crd_applied_by_kustomize_with_the_documented_command(
    helm: Path, control_plane: ControlPlane, admin_kubectl: Kubectl
) -> None:
    """README: a CRD first applied from deploy/ belongs to no release; one annotate and one label hand it to Helm."""
    kubeconfig = control_plane.kubeconfig
    admin_kubectl("delete", "crd", "disyncinstances.disync.dev", "--ignore-not-found", "--wait=true")
    admin_kubectl("apply", "--server-side", "-k", str(DEPLOY / "crds"))
    install = [
        str(helm),
        "install",
        "adopt",
        str(CHART),
        "-n",
        "adopt",
        "--create-namespace",
        "--kubeconfig",
        str(kubeconfig),
    ]
    refused = subprocess.run(install, capture_output=True, text=True, check=False)
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr
    try:
        crd = "crd/disyncinstances.disync.dev"
        admin_kubectl("annotate", crd, "meta.helm.sh/release-name=adopt", "meta.helm.sh/release-namespace=adopt")
        admin_kubectl("label", crd, "app.kubernetes.io/managed-by=Helm")
        run_helm(helm, "install", "adopt", str(CHART), "-n", "adopt", "--create-namespace", kubeconfig=kubeconfig)
    finally:
        subprocess.run(
            [str(helm), "uninstall", "adopt", "-n", "adopt", "--kubeconfig", str(kubeconfig)],
            capture_output=True,
            check=False,
        )
