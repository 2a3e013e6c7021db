"""deploy/ as the README installs it (`kubectl apply --server-side -k`), through an overlay that sets only what an
installer must: the image, DataWorks' address (the emulator) and the operator's default AccessKey Secret."""

from __future__ import annotations

import os
import time
from pathlib import Path

from e2e_support import NODE_NAME, REPO, all_ready, ready_pods, restarts, wait_ready_pods

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import DEMO_ACCESS_KEY_ID, DEMO_ACCESS_KEY_SECRET, EmulatorProcess
from disync_operator.devstack.waiting import wait_for

NAMESPACE = "disync-system"  # deploy/'s, labelled to enforce the restricted Pod Security Standard
EXAMPLES = ["orders-realtime", "users-realtime", "warehouse-solution"]


def overlay(folder: Path, image: str, endpoint: str) -> Path:
    """An installer's overlay of deploy/ (kustomize takes a base only by a relative path)."""
    name, _, tag = image.rpartition(":")
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
      - DISYNC_ENDPOINT={endpoint}
secretGenerator:
  - name: disync-operator-credentials
    namespace: {NAMESPACE}
    options:
      disableNameSuffixHash: true
    literals:
      - ALIBABA_CLOUD_ACCESS_KEY_ID={DEMO_ACCESS_KEY_ID}
      - ALIBABA_CLOUD_ACCESS_KEY_SECRET={DEMO_ACCESS_KEY_SECRET}
"""
    )
    return folder


def test_kustomize_install_runs_restricted_and_uninstalls_clean(
    admin: Kubectl, image: str, emulator: EmulatorProcess, tmp_path: Path
) -> None:
    folder = overlay(tmp_path, image, emulator.url)
    examples_namespace = f"e2e-kustomize-examples-{int(time.time())}"
    t0 = time.monotonic()
    admin("apply", "--server-side", "-k", str(folder))
    labels = admin.get_json("namespace", NAMESPACE)["metadata"]["labels"]
    assert labels.get("pod-security.kubernetes.io/enforce") == "restricted", labels
    kubectl = admin.bound(NAMESPACE)
    try:
        pods = wait_ready_pods(kubectl, 2)
        t_pods = time.monotonic() - t0
        admin("create", "namespace", examples_namespace)
        examples = admin.bound(examples_namespace)
        examples("apply", "-k", str(REPO / "examples"))
        t1 = time.monotonic()
        wait_for(lambda: all_ready(examples, EXAMPLES), timeout=120, interval=0.5, what="the examples Ready")
        t_examples = time.monotonic() - t1
        pods = ready_pods(kubectl, 2) or []
        assert [restarts(p) for p in pods] == [0, 0]
        assert {p["spec"]["nodeName"] for p in pods} == {NODE_NAME}
        print(
            f"\n[kustomize install] 2 pods Running and Ready {t_pods:.1f}s after `kubectl apply --server-side -k`; "
            f"the 3 examples Ready {t_examples:.1f}s after apply; restarts 0"
        )
        # The README's uninstall, in its order: resources first (the operator stops their tasks), then deploy/.
        t2 = time.monotonic()
        examples("delete", "disyncinstances", "--all", "--timeout=120s")
        admin("delete", "-k", str(folder), "--timeout=180s")
        t_uninstall = time.monotonic() - t2
    finally:
        admin.run("delete", "namespace", examples_namespace, "--wait=false", check=False)
    assert admin.run("get", "namespace", NAMESPACE, check=False).returncode != 0
    assert admin.run("get", "crd", "disyncinstances.disync.dev", check=False).returncode != 0
    cluster = admin.get_json("clusterrole,clusterrolebinding", "-l", "app.kubernetes.io/part-of=disync-operator")
    assert cluster["items"] == [], [i["metadata"]["name"] for i in cluster["items"]]
    took = f"{t_uninstall:.1f}s"
    print(f"\n[kubectl delete -k] removed the namespace, the CRD and the cluster RBAC in {took}; nothing left")
