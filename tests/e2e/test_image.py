"""The image as built from the Dockerfile, run by the node's kubelet: its user, contents, entrypoint and size."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

from e2e_support import IMAGE, REPO, restricted_namespace

from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.waiting import wait_for

# Runs in the image as a restricted pod: no runAsUser in the pod, so the kubelet has to find the image's own USER
# numeric and non-root (runAsNonRoot), as the Deployment needs.
PROBE = r"""
echo "uid=$(id -u) gid=$(id -g)"
echo "version=$(disync-operator --version)"
for c in gcc cc c++ g++ clang tcc ld as; do command -v "$c" && echo "compiler=$c"; done
/opt/venv/bin/python -m pip list --format=freeze --exclude pip --exclude setuptools | sed 's/^/freeze=/'
echo "python=$(python --version)"
"""


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s\\;]+)", line)
        if match:
            pins[normalise(match.group(1))] = match.group(2)
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_runs_as_65532_with_exactly_the_locked_packages_and_no_compiler(
    admin: Kubectl, image: str, tmp_path: Path
) -> None:
    namespace = restricted_namespace(admin, "e2e-image")
    kubectl = admin.bound(namespace)
    name = f"probe-{secrets.token_hex(3)}"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", PROBE],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    try:
        kubectl.apply(json.dumps(pod))

        def finished() -> str | None:
            phase: str = kubectl.get_json("pod", name)["status"].get("phase", "")
            return phase if phase in ("Succeeded", "Failed") else None

        phase = wait_for(finished, timeout=120, interval=0.5, what="the probe pod to finish")
        output = kubectl("logs", name)
        assert phase == "Succeeded", output
    finally:
        admin.run("delete", "namespace", namespace, "--wait=false", check=False)

    facts = [line.split("=", 1) for line in output.splitlines() if "=" in line]
    # The kubelet passes the image's uid on as runAsUser but not its gid (the pod sets no runAsGroup), so the group is
    # 0 here; the Deployment sets runAsGroup 65532 itself.
    assert "uid=65532 " in output, output
    compilers = [v for k, v in facts if k == "compiler"]
    assert compilers == [], f"compilers in the image: {compilers}"
    version = next(v for k, v in facts if k == "version")
    assert "0.1.0" in version, version
    frozen = {}
    for key, value in facts:
        if key == "freeze":
            pkg, _, ver = value.partition("==")
            frozen[normalise(pkg)] = ver
    operator_version = frozen.pop("disync-operator", None)
    assert operator_version is not None, f"the operator's wheel is not installed: {sorted(frozen)}"
    assert frozen == lock_pins(), "installed set differs from requirements.lock"
    python = next(v for k, v in facts if k == "python")
    images = Path.home() / ".cache" / "disync-operator" / "images"
    archive = images / (IMAGE.replace("/", "_").replace(":", "_") + ".tar")
    size = archive.stat().st_size if archive.exists() else -1
    print(
        f"\n[image] {image}: uid 65532 (the image's USER, runAsNonRoot verified by the kubelet), {version}, "
        f"{python}, {len(frozen)} locked packages + the operator "
        f"{operator_version}, no compiler; OCI archive {size / 2**20:.1f} MiB"
    )
