"""RRSA on a real node: the kubelet projects a ServiceAccount token for the audience sts.aliyuncs.com, the operator
exchanges it at STS (the emulator's, outside the cluster as the cloud's is) with AssumeRoleWithOIDC, and starts a task
with the role's credentials. The emulator checks the token as the cloud would check it against a registered OIDC
provider: signed by a key of the node API server's service-account issuer (its /openid/v1/jwks), that issuer, that
audience, not expired. deploy/ is installed through an overlay that does what ACK's pod-identity webhook does: the
projected token volume and the ALIBABA_CLOUD_* variables; no AccessKey anywhere."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import yaml
from e2e_support import HOST_IP, PROJECT_ID, REPO, all_ready, emulator_registry, restarts, wait_ready_pods
from test_kustomize import NAMESPACE

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess
from disync_operator.devstack.waiting import wait_for

ROLE = "acs:ram::1234567890:role/disync-operator"
PROVIDER = "acs:ram::1234567890:oidc-provider/ack-rrsa-e2e"
STS_AK, STS_SECRET, STS_TOKEN = "STS.rrsa-e2e", "rrsa-e2e-secret-4b1d", "rrsa-e2e-token-" + "7" * 48
TOKEN_DIR = "/var/run/secrets/ack.alibabacloud.com/rrsa-tokens"

RRSA_PATCH = f"""
- op: add
  path: /spec/template/spec/volumes/-
  value:
    name: rrsa-oidc-token
    projected:
      sources:
        - serviceAccountToken: {{path: token, audience: sts.aliyuncs.com, expirationSeconds: 3600}}
- op: add
  path: /spec/template/spec/containers/0/volumeMounts/-
  value: {{name: rrsa-oidc-token, mountPath: {TOKEN_DIR}, readOnly: true}}
"""


def sts_registry(path: Path, admin: Kubectl) -> Path:
    """The emulator's registry with an STS that trusts the node API server's service-account issuer."""
    discovery = json.loads(admin("get", "--raw", "/.well-known/openid-configuration"))
    jwks = json.loads(admin("get", "--raw", "/openid/v1/jwks"))
    config = yaml.safe_load(emulator_registry(path).read_text())
    config["access_keys"].append({"id": STS_AK, "secret": STS_SECRET, "security_token": STS_TOKEN, "projects": "*"})
    config["sts"] = {
        "issuer": discovery["issuer"],
        "jwks": jwks,
        "roles": [{"role_arn": ROLE, "oidc_provider_arn": PROVIDER, "access_key_id": STS_AK}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def rrsa_overlay(folder: Path, image: str, endpoint: str) -> Path:
    """deploy/ with the image and DataWorks' address, and what the pod-identity webhook injects; no AccessKey."""
    name, _, tag = image.rpartition(":")
    (folder / "rrsa.yaml").write_text(RRSA_PATCH)
    env = {
        "ALIBABA_CLOUD_ROLE_ARN": ROLE,
        "ALIBABA_CLOUD_OIDC_PROVIDER_ARN": PROVIDER,
        "ALIBABA_CLOUD_OIDC_TOKEN_FILE": f"{TOKEN_DIR}/token",
        "ALIBABA_CLOUD_STS_ENDPOINT": endpoint,
    }
    literals = "\n".join(f"      - {k}={v}" for k, v in {"DISYNC_ENDPOINT": endpoint, **env}.items())
    (folder / "kustomization.yaml").write_text(
        f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {os.path.relpath(REPO / "deploy", folder)}
images:
  - name: ghcr.io/disync-operator/disync-operator
    newName: {name}
    newTag: {tag}
configMapGenerator:
  - name: disync-operator-config
    namespace: {NAMESPACE}
    behavior: merge
    literals:
{literals}
patches:
  - path: rrsa.yaml
    target: {{kind: Deployment, name: disync-operator}}
"""
    )
    return folder


def test_rrsa_the_kubelets_token_becomes_sts_credentials_that_start_a_task(
    admin: Kubectl, image: str, tmp_path: Path
) -> None:
    registry = sts_registry(tmp_path / "registry.yaml", admin)
    sts = EmulatorProcess(config=registry, args=["--host", HOST_IP]).start()
    folder = rrsa_overlay(tmp_path, image, sts.url)
    crs_namespace = f"e2e-rrsa-{int(time.time())}"
    admin("apply", "--server-side", "-k", str(folder))
    kubectl = admin.bound(NAMESPACE)
    try:
        pods = wait_ready_pods(kubectl, 2)
        admin("create", "namespace", crs_namespace)
        crs = admin.bound(crs_namespace)
        body = {
            "apiVersion": "disync.dev/v1alpha1",
            "kind": "DISyncInstance",
            "metadata": {"name": "via-rrsa"},
            "spec": {
                "projectId": PROJECT_ID,
                "taskType": "DI_REALTIME",
                "fileId": 100,
                "startParam": {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}},
            },
        }
        t0 = time.monotonic()
        crs.apply(json.dumps(body))
        wait_for(lambda: all_ready(crs, ["via-rrsa"]), timeout=120, interval=0.5, what="the resource Ready via RRSA")
        took = time.monotonic() - t0
        exchanges = sts.requests("AssumeRoleWithOIDC")
        assert exchanges
        assert all(e["code"] == "success" for e in exchanges), exchanges
        assert all("OIDCToken" not in e["params"] for e in exchanges)
        (start,) = sts.starts(100)
        assert start["access_key_id"] == STS_AK  # signed with the role's STS credentials, nothing else
        pods = wait_ready_pods(kubectl, 2)
        assert [restarts(p) for p in pods] == [0, 0]
        print(
            f"\n[rrsa] the projected token (audience sts.aliyuncs.com) exchanged {len(exchanges)} time(s) at the "
            f"emulator's STS, its signature checked against the API server's JWKS; the task started with "
            f"{STS_AK} {took:.1f}s after apply; restarts 0"
        )
        crs("delete", "disyncinstances", "--all", "--timeout=60s")
        admin("delete", "-k", str(folder), "--timeout=180s")
    finally:
        admin.run("delete", "namespace", crs_namespace, "--ignore-not-found", "--wait=false", check=False)
        admin.run("delete", "-k", str(folder), "--ignore-not-found", "--timeout=180s", check=False)
        sts.stop()
