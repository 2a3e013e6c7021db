"""The kubelet rotates the operator's projected ServiceAccount token and the operator keeps reconciling past the
first token's expiry.

The token the ServiceAccount admission mounts lives 3607 s and the kubelet replaces it at 80 % of that (48 min); the
API server refuses a shorter --service-account-max-token-expiration than an hour. So this installs deploy/ through an
overlay that mounts the same three files at the same path from a projected volume of 600 s (the shortest the API
allows): the kubelet replaces the token after 480 s, and the node's API server (extend-token-expiration off) refuses
the old one after 600 s. Slow (11 min): `make e2e-chaos`.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from e2e_support import PROJECT_ID, all_ready, leader, restarts, wait_ready_pods
from test_kustomize import NAMESPACE, overlay

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess
from disync_operator.devstack.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

TOKEN_SECONDS = 600
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"

SHORT_TOKEN_PATCH = f"""
- op: add
  path: /spec/template/spec/automountServiceAccountToken
  value: false
- op: add
  path: /spec/template/spec/volumes/-
  value:
    name: short-token
    projected:
      sources:
        - serviceAccountToken: {{path: token, expirationSeconds: {TOKEN_SECONDS}}}
        - configMap: {{name: kube-root-ca.crt, items: [{{key: ca.crt, path: ca.crt}}]}}
        - downwardAPI: {{items: [{{path: namespace, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
- op: add
  path: /spec/template/spec/containers/0/volumeMounts/-
  value: {{name: short-token, mountPath: /var/run/secrets/kubernetes.io/serviceaccount, readOnly: true}}
"""


def token_expiry(kubectl: Kubectl, pod: str) -> tuple[str, int]:
    """The pod's current token (as the operator's container sees it) and its `exp` claim."""
    token = kubectl("exec", pod, "-c", "operator", "--", "cat", TOKEN_PATH).strip()
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return token, int(claims["exp"])


def test_the_operator_reconciles_past_its_first_tokens_expiry(
    admin: Kubectl, image: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    folder = overlay(tmp_path, image, emulator.url)
    (folder / "short-token.yaml").write_text(SHORT_TOKEN_PATCH)
    with (folder / "kustomization.yaml").open("a") as handle:
        handle.write("patches:\n  - path: short-token.yaml\n    target: {kind: Deployment, name: disync-operator}\n")
    crs_namespace = f"e2e-rotation-{int(time.time())}"
    admin("apply", "--server-side", "-k", str(folder))
    kubectl = admin.bound(NAMESPACE)
    try:
        wait_ready_pods(kubectl, 2)
        holder = wait_for(lambda: leader(kubectl), timeout=60, what="a leader")
        pod = holder.split("/")[0]
        first, first_exp = token_expiry(kubectl, pod)
        lifetime = first_exp - time.time()
        assert lifetime <= TOKEN_SECONDS + 5, f"the token lives {lifetime:.0f}s"
        # The kubelet replaces it at 80 % of its life; wait past the first token's expiry.
        rotated = wait_for(
            lambda: (t := token_expiry(kubectl, pod))[0] != first and t,
            timeout=TOKEN_SECONDS,
            interval=10,
            what="the kubelet to rotate the token",
        )
        rotated_after = time.time() - (first_exp - TOKEN_SECONDS)
        wait_for(
            lambda: time.time() > first_exp + 5, timeout=TOKEN_SECONDS, interval=5, what="the first token's expiry"
        )
        # The old token is refused now; the operator must be using the new one to reconcile this.
        admin("create", "namespace", crs_namespace)
        crs = admin.bound(crs_namespace)
        crs.apply(
            json.dumps(
                {
                    "apiVersion": "disync.dev/v1alpha1",
                    "kind": "DISyncInstance",
                    "metadata": {"name": "after-rotation"},
                    "spec": {
                        "projectId": PROJECT_ID,
                        "taskType": "DI_REALTIME",
                        "fileId": 100,
                        "startParam": {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}},
                    },
                }
            )
        )
        wait_for(lambda: all_ready(crs, ["after-rotation"]), timeout=120, interval=1, what="a resource Ready")
        still = leader(kubectl)
        pods = wait_ready_pods(kubectl, 2)
        assert [restarts(p) for p in pods] == [0, 0]
        print(
            f"\n[token rotation] token of {TOKEN_SECONDS}s replaced by the kubelet {rotated_after:.0f}s after issue "
            f"(new exp +{rotated[1] - first_exp}s); {time.time() - first_exp:.0f}s past the first token's expiry a "
            f"new resource is Ready; leader {still} (was {holder}), restarts 0"
        )
        crs("delete", "disyncinstances", "--all", "--timeout=60s")
        admin("delete", "-k", str(folder), "--timeout=180s")
    finally:
        admin.run("delete", "namespace", crs_namespace, "--ignore-not-found", "--wait=false", check=False)
        admin.run("delete", "-k", str(folder), "--ignore-not-found", "--timeout=180s", check=False)
