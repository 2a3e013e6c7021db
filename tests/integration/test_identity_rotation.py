"""The operator's Kubernetes identity as production hands it over, on the real API server:

- in a pod's shape: the wheel installed in a runtime-only virtualenv, the settings of deploy/manifests/operator.env,
  `KUBERNETES_SERVICE_HOST`/`_PORT` and the ServiceAccount's token, ca.crt and namespace files where in-cluster
  configuration reads them (/var/run/secrets/kubernetes.io/serviceaccount, bind-mounted in a private mount
  namespace), no kubeconfig;
- its token from the TokenRequest API, bound to a Secret as a pod's projected token is bound to the pod; then the
  kubelet's rotation: a new token written into the file and the old one revoked (its Secret deleted: 401 from then
  on). CRs created and changed afterwards go Ready, without a restart and without a second start;
- out of cluster, a kubeconfig whose user is an exec credential plugin, with short-lived credentials.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from e2e_helpers import DEADLINE, dsi, wait_ready

from disync_operator.devstack.controlplane import ControlPlane
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
SA = "disync-operator"
EMULATOR_CONFIG = Path(__file__).parent / "data" / "emulator.yaml"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def shipped_settings() -> dict[str, str]:
    settings = {}
    for line in (REPO / "deploy" / "manifests" / "operator.env").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def grant_operator_role(kubectl: Kubectl, namespace: str) -> None:
    """The ServiceAccount with the shipped rules (the ClusterRole's and the election Role's), in this namespace."""
    docs = list(yaml.safe_load_all((REPO / "deploy" / "manifests" / "rbac.yaml").read_text()))
    rules = [rule for d in docs if d["kind"] in ("ClusterRole", "Role") for rule in d["rules"]]
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": SA}, "rules": rules}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": SA},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SA},
        "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": namespace}],
    }
    kubectl("create", "serviceaccount", SA)
    for obj in (role, binding):
        kubectl("apply", "-f", "-", input=json.dumps(obj))


def bound_token(kubectl: Kubectl, secret: str) -> str:
    """A ServiceAccount token bound to a Secret: valid until the Secret is deleted (as a pod's token is bound to it)."""
    kubectl.run("create", "secret", "generic", secret, "--from-literal=bound=yes", check=False)
    return kubectl(
        "create", "token", SA, "--bound-object-kind=Secret", f"--bound-object-name={secret}", "--duration=1h"
    ).strip()


def accepted(control_plane: ControlPlane, token: str, namespace: str) -> bool:
    """Whether the API server takes this token (401 once it is revoked)."""
    answer = httpx.get(
        f"{control_plane.server}/apis/disync.dev/v1alpha1/namespaces/{namespace}/disyncinstances",
        headers={"Authorization": f"Bearer {token}"},
        verify=ssl.create_default_context(cafile=ca_path(control_plane)),
        timeout=10,
    )
    return answer.status_code == 200


def ca_path(control_plane: ControlPlane) -> str:
    config = json.loads(Path(control_plane.kubeconfig).read_text())
    return str(config["clusters"][0]["cluster"]["certificate-authority"])


def private_mount() -> list[str]:
    """A command prefix: the rest runs in a private mount namespace where the ServiceAccount folder
    ($SERVICE_ACCOUNT_SOURCE) is mounted at the in-cluster path (/var/run is /run; a tmpfs over /run hides the
    host's)."""
    script = (
        "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/secrets/kubernetes.io/serviceaccount; "
        'mount --bind "$SERVICE_ACCOUNT_SOURCE" /run/secrets/kubernetes.io/serviceaccount; exec "$@"'
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, "in-cluster"]


@pytest.fixture
def mount_namespaces() -> None:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--mount", "true"], check=False).returncode:
        pytest.skip("this machine can't create a private mount namespace (unshare --mount); a pod's files need one")


def write_token(folder: Path, token: str) -> None:
    # As the kubelet does: the new content appears at once (a rename), never half-written.
    (folder / "token.new").write_text(token)
    os.replace(folder / "token.new", folder / "token")


@pytest.fixture
def emulator_process() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess(config=EMULATOR_CONFIG).start(timeout=DEADLINE)
    yield process
    process.stop()


def test_in_a_pods_shape_the_token_rotates_and_the_old_one_is_revoked(
    crd: None,
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    emulator_process: EmulatorProcess,
    runtime_install: Path,
    mount_namespaces: None,
    tmp_path: Path,
) -> None:
    grant_operator_role(kubectl, namespace)
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    first = bound_token(kubectl, "pod-one")
    write_token(folder, first)
    shutil.copy(ca_path(control_plane), folder / "ca.crt")
    (folder / "namespace").write_text(namespace)

    host, port = control_plane.server.removeprefix("https://").rsplit(":", 1)
    env = shipped_settings() | {
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        "SERVICE_ACCOUNT_SOURCE": str(folder),
        "DISYNC_NAMESPACES": json.dumps([namespace]),
        # Test timing: kopf's watch reconnects often, so it meets the revoked token and must log in again too.
        "DISYNC_WATCH_SERVER_TIMEOUT": "5",
        "DISYNC_BACKOFF_BASE": "0.2",
        "DISYNC_BACKOFF_CAP": "3",
    }
    for port_setting in ("DISYNC_LIVENESS_PORT", "DISYNC_METRICS_PORT"):
        env.pop(port_setting)
    operator = OperatorProcess(
        kubeconfig=None,
        endpoint=emulator_process.url,
        env=env,
        python=str(runtime_install),
        wrapper=private_mount(),
    ).start(timeout=DEADLINE)
    try:
        # Leader election found its Lease's namespace in the ServiceAccount's namespace file.
        assert operator.readiness()["role"] == "leader"
        before = [f"before-{i}" for i in range(3)]
        for i, name in enumerate(before):
            kubectl("apply", "-f", "-", input=dsi(name, file_id=100 + i))
        for name in before:
            wait_ready(kubectl, name)
        pid = operator.pid

        # The kubelet's rotation: a new token in the file, then the old one revoked.
        second = bound_token(kubectl, "pod-two")
        write_token(folder, second)
        kubectl("delete", "secret", "pod-one")
        wait_for(lambda: not accepted(control_plane, first, namespace), timeout=DEADLINE, what="the old token's 401")
        assert accepted(control_plane, second, namespace)

        after = [f"after-{i}" for i in range(2)]
        for i, name in enumerate(after):
            kubectl("apply", "-f", "-", input=dsi(name, file_id=103 + i))
        kubectl("patch", "dsi", "before-0", "--type=merge", "-p", '{"spec":{"startParam":{"errorLimit":{"record":5}}}}')
        for name in after:
            wait_ready(kubectl, name)
        wait_ready(kubectl, "before-0", generation=2)

        # kopf's watch met the revoked token and logged in again, through the operator's login.
        wait_for(
            lambda: "Re-authentication has been initiated" in operator.log(), timeout=DEADLINE, what="kopf's re-login"
        )
        assert operator.running
        assert operator.pid == pid  # no restart
        starts: dict[str, int] = {}
        for entry in emulator_process.starts():
            key = str(entry["params"]["FileId"])
            starts[key] = starts.get(key, 0) + 1
        assert starts == {"100": 2, "101": 1, "102": 1, "103": 1, "104": 1}  # before-0 twice: two generations
    finally:
        operator.kill()
    for token in (first, second):
        assert token not in operator.log()


def exec_plugin(folder: Path, token_file: Path, lifetime: int) -> Path:
    """A credential plugin printing an ExecCredential with the token in `token_file`, valid `lifetime` seconds."""
    script = folder / "credential-plugin"
    script.write_text(
        f"#!{sys.executable}\n"
        "import datetime, json, os\n"
        f"count = {str(folder / 'runs')!r}\n"
        "open(count, 'a').write('x')\n"
        "request = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        f"token = open({str(token_file)!r}).read().strip()\n"
        f"expiry = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={lifetime})\n"
        "status = {'token': token, 'expirationTimestamp': expiry.strftime('%Y-%m-%dT%H:%M:%SZ')}\n"
        "print(json.dumps({'apiVersion': request['apiVersion'], 'kind': 'ExecCredential', 'status': status}))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_a_kubeconfig_with_an_exec_credential_plugin(
    crd: None,
    control_plane: ControlPlane,
    kubectl: Kubectl,
    namespace: str,
    emulator_process: EmulatorProcess,
    tmp_path: Path,
) -> None:
    grant_operator_role(kubectl, namespace)
    token_file = tmp_path / "token"
    token_file.write_text(bound_token(kubectl, "exec-one"))
    exec_plugin(tmp_path, token_file, lifetime=15)  # expires 10 s early: a fresh credential every ~5 s
    config: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "exec",
        "clusters": [
            {"name": "c", "cluster": {"server": control_plane.server, "certificate-authority": ca_path(control_plane)}}
        ],
        "users": [
            {
                "name": "exec-user",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": "./credential-plugin",  # relative to the kubeconfig, as kubectl resolves it
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [{"name": "exec", "context": {"cluster": "c", "user": "exec-user"}}],
    }
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    operator = OperatorProcess(
        kubeconfig=kubeconfig,
        endpoint=emulator_process.url,
        env={"DISYNC_NAMESPACES": json.dumps([namespace]), "DISYNC_WATCH_SERVER_TIMEOUT": "5"},
    ).start(timeout=DEADLINE)
    try:
        kubectl("apply", "-f", "-", input=dsi("first", file_id=100))
        wait_ready(kubectl, "first")
        began = dt.datetime.now(dt.UTC)
        # The credential expires and is fetched again (by the operator's client and by kopf's): still working.
        wait_for(lambda: len((tmp_path / "runs").read_text()) >= 3, timeout=DEADLINE, what="the plugin to run again")
        kubectl("apply", "-f", "-", input=dsi("second", file_id=101))
        wait_ready(kubectl, "second")
        assert (dt.datetime.now(dt.UTC) - began).total_seconds() > 5
        assert operator.running
    finally:
        operator.kill()
