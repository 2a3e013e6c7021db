"""The test ground itself: a real kube-apiserver + etcd doing what the rest of the suite relies on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubernetes import client, config, watch

from disync_operator.devstack.controlplane import ControlPlane
from disync_operator.devstack.kubectl import Kubectl, KubectlError
from disync_operator.devstack.waiting import wait_for

# Waits return as soon as their condition holds: the deadline only bounds a broken run, so it is generous.
DEADLINE = 60

pytestmark = pytest.mark.cluster

CRD = (Path(__file__).parent / "ground" / "widget-crd.yaml").read_text()
GROUP, VERSION, PLURAL = "ground.disync.dev", "v1", "widgets"


def widget(name: str, size: object = 3, **spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Widget",
            "metadata": {"name": name},
            "spec": {"size": size, **spec},
        }
    )


@pytest.fixture(scope="module")
def widget_crd(admin_kubectl: Kubectl) -> None:
    admin_kubectl.apply(CRD)
    admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{PLURAL}.{GROUP}")


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


def test_server_version_matches_the_pinned_build(admin_kubectl: Kubectl) -> None:
    versions = json.loads(admin_kubectl("version", "-o", "json"))
    assert versions["serverVersion"]["gitVersion"] == "v1.37.2"
    assert versions["clientVersion"]["gitVersion"] == "v1.37.2"


def test_custom_object_lifecycle_with_watch(
    widget_crd: None, kubectl: Kubectl, namespace: str, api: client.ApiClient
) -> None:
    kubectl.apply(widget("w1"))
    kubectl.apply(widget("w2", size=5, color="red"))
    assert kubectl.get_json("widget", "w1")["spec"] == {"size": 3}
    listed = kubectl.get_json("widgets")
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == ["w1", "w2"]
    assert kubectl("get", "wdg", "-o", "name").split() == ["widget.ground.disync.dev/w1", "widget.ground.disync.dev/w2"]

    # Watch from the API list's resourceVersion (kubectl's own List has none): the server replays exactly what
    # happened after it.
    objects = client.CustomObjectsApi(api)
    since = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["metadata"]["resourceVersion"]
    kubectl("patch", "widget", "w1", "--type=merge", "-p", '{"spec":{"size":4}}')
    kubectl("delete", "widget", "w2")
    seen = []
    for event in watch.Watch().stream(
        objects.list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        resource_version=since,
        timeout_seconds=DEADLINE,  # a server-side bound only: the loop ends at DELETED
    ):
        seen.append((event["type"], event["object"]["metadata"]["name"]))
        if event["type"] == "DELETED":
            break
    assert seen == [("MODIFIED", "w1"), ("DELETED", "w2")]
    assert kubectl("get", "widgets", "-o", "name").split() == ["widget.ground.disync.dev/w1"]


def test_schema_violation_is_rejected_with_the_field_path(widget_crd: None, kubectl: Kubectl) -> None:
    with pytest.raises(KubectlError) as too_big:
        kubectl.apply(widget("bad", size=20))
    assert "spec.size" in too_big.value.stderr
    assert "less than or equal to 10" in too_big.value.stderr
    with pytest.raises(KubectlError) as wrong_enum:
        kubectl.apply(widget("bad", color="blue"))
    assert "spec.color" in wrong_enum.value.stderr
    assert 'Unsupported value: "blue"' in wrong_enum.value.stderr
    assert kubectl("get", "widgets", "-o", "name") == ""


def test_rbac_refuses_then_allows_after_role_binding(
    widget_crd: None, control_plane: ControlPlane, kubectl: Kubectl, namespace: str
) -> None:
    jane = control_plane.mint_identity("jane", ["developers"])
    as_jane = kubectl.bound(kubeconfig=jane.kubeconfig)
    refused = as_jane.run("get", "widgets", check=False)
    assert refused.returncode != 0
    assert "Forbidden" in refused.stderr
    assert 'User "jane" cannot list resource "widgets"' in refused.stderr

    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "widget-reader"},
                "rules": [{"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list"]}],
            }
        )
    )
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "jane-reads"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-reader"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "jane"}],
            }
        )
    )
    wait_for(
        lambda: as_jane.run("get", "widgets", check=False).returncode == 0, timeout=DEADLINE, what="RBAC to allow jane"
    )
    # The grant is exactly what the Role says: reading, not writing, and only in this namespace.
    assert "Forbidden" in as_jane.run("create", "-f", "-", input=widget("x"), check=False).stderr
    assert "Forbidden" in as_jane.run("get", "widgets", "-n", "default", check=False).stderr


def test_static_token_identity_of_a_service_account(
    widget_crd: None, control_plane: ControlPlane, kubectl: Kubectl
) -> None:
    operator = control_plane.service_account_identity("disync-system", "disync-operator")
    assert operator.token, "the operator's ServiceAccount is registered in the token file"
    whoami = json.loads(kubectl.bound(kubeconfig=operator.kubeconfig)("auth", "whoami", "-o", "json"))
    assert whoami["status"]["userInfo"]["username"] == "system:serviceaccount:disync-system:disync-operator"
    assert "system:serviceaccounts:disync-system" in whoami["status"]["userInfo"]["groups"]
    assert "Forbidden" in kubectl.bound(kubeconfig=operator.kubeconfig).run("get", "widgets", check=False).stderr


def test_status_subresource_separates_spec_and_status(widget_crd: None, kubectl: Kubectl) -> None:
    kubectl.apply(widget("w"))
    generation = kubectl.get_json("widget", "w")["metadata"]["generation"]

    # A status write through /status changes status only, even if it carries a spec change.
    kubectl(
        "patch",
        "widget",
        "w",
        "--subresource=status",
        "--type=merge",
        "-p",
        '{"status":{"phase":"Ready"},"spec":{"size":9}}',
    )
    after_status = kubectl.get_json("widget", "w")
    assert after_status["status"] == {"phase": "Ready"}
    assert after_status["spec"]["size"] == 3
    assert after_status["metadata"]["generation"] == generation

    # A write to the main resource changes spec only (and bumps generation), never status.
    kubectl("patch", "widget", "w", "--type=merge", "-p", '{"spec":{"size":7},"status":{"phase":"Hacked"}}')
    after_spec = kubectl.get_json("widget", "w")
    assert after_spec["spec"]["size"] == 7
    assert after_spec["status"] == {"phase": "Ready"}
    assert after_spec["metadata"]["generation"] == generation + 1


def test_no_orphans_when_the_runner_is_killed(control_plane: ControlPlane, tmp_path: Path) -> None:
    """SIGKILL of the process that started a control plane takes etcd and the apiserver with it."""
    import os
    import signal
    import subprocess
    import sys

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from disync_operator.devstack.controlplane import ControlPlane\n"
        f"p = ControlPlane(Path({str(control_plane.bin_dir)!r}), work_dir=Path({str(tmp_path)!r}))\n"
        "p.start()\n"
        "print(' '.join(str(proc.pid) for proc in p._procs.values()), flush=True)\n"
        "time.sleep(600)\n"
    )
    runner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert runner.stdout is not None
    pids = [int(pid) for pid in runner.stdout.readline().split()]
    assert len(pids) == 2
    runner.send_signal(signal.SIGKILL)
    runner.wait()

    def all_gone() -> bool:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                # A zombie (exited, not yet reaped by init) counts as gone.
                state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
                if state != "Z":
                    alive.append(pid)
            except (ProcessLookupError, FileNotFoundError):
                pass
        return not alive

    wait_for(all_gone, timeout=DEADLINE, what="etcd and kube-apiserver to exit after their parent was killed")
