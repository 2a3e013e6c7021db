"""What every scenario needs: the control plane, the emulator, operator processes, a fast async kube client,
a watch that timestamps Ready, and per-process CPU/RSS readings from /proc."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import platform
import re
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from disync_operator import types as t
from disync_operator.controller.credentials import SECRET_TYPE
from disync_operator.devstack.controlplane import ControlPlane, build_binaries
from disync_operator.devstack.kubectl import Kubectl
from disync_operator.devstack.processes import (
    DEMO_ACCESS_KEY_ID,
    DEMO_ACCESS_KEY_SECRET,
    EmulatorProcess,
    OperatorProcess,
)

REPO = Path(__file__).resolve().parents[1]
CRD = REPO / "deploy" / "crds" / "disyncinstances.yaml"
PROJECT_ID = 10000
CR_PATH = f"/apis/{t.GROUP}/{t.VERSION}/namespaces/{{ns}}/{t.PLURAL}"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Config:
    """The stated conditions every number is measured under (they go into the report verbatim)."""

    latency_ms: float = 50.0
    qps: float = 100.0
    max_concurrency: int = 32
    # Long enough that the sweep's live-state reads don't run during a run: P1/P3 measure starts and restarts, not
    # polling (the sweep itself still runs; its resync safety net keeps the default interval).
    observe_interval: float = 3600.0
    log_level: str = "WARNING"
    # How many CR creates the bench keeps in flight (HTTP/1.1 connections to the apiserver).
    create_concurrency: int = 32
    # The interpreter the operator runs with: `make bench` gives it a virtualenv with the runtime dependencies only,
    # as in the image (the test extra's `kubernetes` package alone adds 19 MiB to any process that imports kopf).
    operator_python: str | None = None
    # The idiomatic kopf operator's interpreter: kopf and the official SDK only (make bench: .venv-contender).
    contender_python: str | None = None
    # Extra DISYNC_* settings for every operator run (e.g. to compare one setting's values in separate runs).
    extra_env: tuple[tuple[str, str], ...] = ()

    def operator_env(self, namespace: str, **overrides: str | None) -> dict[str, str]:
        """The operator's environment; an override of None leaves the variable unset, so the operator's own default
        applies (P5 measures at the default QPS, not at the bench's)."""
        env = {
            "DISYNC_QPS": str(self.qps),
            "DISYNC_MAX_CONCURRENCY": str(self.max_concurrency),
            "DISYNC_OBSERVE_INTERVAL": str(self.observe_interval),
            "DISYNC_LOG_FORMAT": "json",
            "DISYNC_LOG_LEVEL": self.log_level,
            "DISYNC_NAMESPACES": json.dumps([namespace]),
            **dict(self.extra_env),
            **overrides,
        }
        return {k: v for k, v in env.items() if v is not None}


def emulator_registry(tasks: int, path: Path) -> Path:
    """A registry with file ids 1..tasks (DI_REALTIME, project 10000) for the demo AccessKey."""
    lines = [
        "access_keys:",
        f"  - {{id: {DEMO_ACCESS_KEY_ID}, secret: {DEMO_ACCESS_KEY_SECRET}, projects: '*'}}",
        "projects:",
        f"  - id: {PROJECT_ID}",
        "    tasks:",
        *(f"      - {{file_id: {i}, task_type: DI_REALTIME, name: bench_{i}}}" for i in range(1, tasks + 1)),
        # Room for every request of the biggest run, so P3 can read the whole request log.
        f"request_log_size: {max(100_000, 4 * tasks)}",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def cr_body(name: str, file_id: int, secret: str | None = None) -> dict[str, Any]:
    """A DISyncInstance for one task; `secret` names its credentials Secret (None: the operator's own identity)."""
    spec: dict[str, Any] = {
        "projectId": PROJECT_ID,
        "taskType": "DI_REALTIME",
        "fileId": file_id,
        "startParam": {"failoverLimit": {"count": 10, "interval": 30}, "errorLimit": {"record": 0}},
    }
    if secret is not None:
        spec["credentials"] = {"secretRef": {"name": secret}}
    return {"apiVersion": f"{t.GROUP}/{t.VERSION}", "kind": "DISyncInstance", "metadata": {"name": name}, "spec": spec}


def credentials_secret(name: str) -> dict[str, Any]:
    """A Secret the operator accepts (its type opts it in) holding the demo AccessKey: the one the emulator's
    registry knows and the operator's default identity uses, so CRs naming it start like the others."""

    def encoded(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": SECRET_TYPE,
        "data": {"accessKeyId": encoded(DEMO_ACCESS_KEY_ID), "accessKeySecret": encoded(DEMO_ACCESS_KEY_SECRET)},
    }


def is_ready(obj: dict[str, Any]) -> bool:
    generation = obj.get("metadata", {}).get("generation")
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True" and cond.get("observedGeneration") == generation)
    return False


# -- /proc readings ------------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime+stime of one process (children excluded), from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return float("nan")
    # The command name may contain spaces and parentheses; the fields after the last ')' are fixed.
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{key} not in /proc/{pid}/status")


class RequestMeter:
    """Apiserver requests by verb and resource between start() and stop(), per CR: what each CR costs the apiserver
    (the watch requests of the bench's own tracker included, which are a handful per run)."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.before: dict[str, float] = {}

    async def start(self) -> RequestMeter:
        self.before = await self.kube.request_counts()
        return self

    async def stop(self, per: int) -> dict[str, float]:
        after = await self.kube.request_counts()
        delta = {k: v - self.before.get(k, 0.0) for k, v in after.items()}
        # Resource requests only: the non-resource ones are this meter's own scrapes and health checks.
        return {k: round(v / max(1, per), 3) for k, v in sorted(delta.items()) if v >= 1 and not k.endswith(" ")}


class CpuMeter:
    """CPU seconds each named process used between start() and stop(); the bench itself is included, because on
    2 cores its watch and creates compete with the apiserver and the operator."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {**pids, "bench": os.getpid()}
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def start(self) -> CpuMeter:
        self._start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self._wall = time.monotonic()
        return self

    def stop(self) -> dict[str, float]:
        result = {name: round(cpu_seconds(pid) - self._start[name], 2) for name, pid in self.pids.items()}
        result["wall"] = round(time.monotonic() - self._wall, 2)
        return result


def machine_info(kubectl: Kubectl | None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    kube = "unknown"
    if kubectl is not None:
        with contextlib.suppress(Exception):
            kube = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    try:
        import kopf

        kopf_version = getattr(kopf, "__version__", "unknown")
    except ImportError:  # pragma: no cover - kopf is a dependency
        kopf_version = "unknown"
    from importlib.metadata import version

    with contextlib.suppress(Exception):
        kopf_version = version("kopf")
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kube_apiserver": kube,
        "kopf": kopf_version,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


# -- the async kube client -------------------------------------------------------------------------------------------


class Kube:
    """httpx against the apiserver with the admin client certificate: cheap enough that the bench's own creates and
    watch do not eat the CPU the system under test needs (the `kubernetes` package is several times heavier)."""

    def __init__(self, kubeconfig: Path, connections: int = 32) -> None:
        config = json.loads(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        context = ssl.create_default_context(cafile=cluster["certificate-authority"])
        context.load_cert_chain(user["client-certificate"], user["client-key"])
        self.http = httpx.AsyncClient(
            base_url=cluster["server"],
            verify=context,
            timeout=httpx.Timeout(60.0),
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            headers={"Accept": "application/json"},
        )
        self._slots = asyncio.Semaphore(connections)
        # Watches are long-lived: their own client so they never wait for a slot in the pool above.
        self.watch_http = httpx.AsyncClient(
            base_url=cluster["server"], verify=context, timeout=httpx.Timeout(None, connect=10.0)
        )

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.watch_http.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        for _ in range(50):
            # Queued here, not in httpcore's pool, which is quadratic in queued requests
            # (see controller/runtime/kube.py).
            async with self._slots:
                response = await self.http.request(method, path, **kwargs)
            # A just-established CRD answers 429 until its storage is ready; the apiserver says when to come back.
            if response.status_code != 429:
                break
            await asyncio.sleep(min(float(response.headers.get("Retry-After") or 1), 1.0))
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", CR_PATH.format(ns=namespace), json=body)

    async def create_secret(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", f"/api/v1/namespaces/{namespace}/secrets", json=body)

    async def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._request(
            "PATCH",
            f"{CR_PATH.format(ns=namespace)}/{name}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"},
        )

    async def request_counts(self) -> dict[str, float]:
        """The apiserver's own `apiserver_request_total`, summed by "VERB resource[/subresource]" (all codes)."""
        async with self._slots:
            response = await self.http.get("/metrics", headers={"Accept": "text/plain"})
        response.raise_for_status()
        counts: dict[str, float] = {}
        for line in response.text.splitlines():
            if not line.startswith("apiserver_request_total{"):
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
            key = f"{labels.get('verb', '?')} {labels.get('resource', '?')}"
            if labels.get("subresource"):
                key += f"/{labels['subresource']}"
            counts[key] = counts.get(key, 0.0) + float(line.rsplit(" ", 1)[1])
        return counts

    async def list(self, namespace: str) -> dict[str, Any]:
        return await self._request("GET", CR_PATH.format(ns=namespace))

    async def watch(self, namespace: str, resource_version: str) -> AsyncIterator[tuple[float, dict[str, Any]]]:
        """(arrival time, event) from the given resourceVersion on."""
        params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true"}
        params["timeoutSeconds"] = "7200"
        async with self.watch_http.stream("GET", CR_PATH.format(ns=namespace), params=params) as response:
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line:
                    yield time.monotonic(), json.loads(line)


@dataclass
class Tracker:
    """Watches one namespace: when each CR was first seen Ready, and when anything last changed."""

    kube: Kube
    namespace: str
    ready_at: dict[str, float] = field(default_factory=dict)
    modified: int = 0
    last_change: float = 0.0
    _task: asyncio.Task[None] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> Tracker:
        listing = await self.kube.list(self.namespace)
        now = time.monotonic()
        for obj in listing.get("items", []):
            if is_ready(obj):
                self.ready_at[obj["metadata"]["name"]] = now
        self.last_change = now
        rv = listing["metadata"]["resourceVersion"]
        self._task = asyncio.create_task(self._run(rv))
        return self

    async def _run(self, rv: str) -> None:
        # The apiserver ends watches (its request timeout, or a watcher it finds too slow on a busy machine):
        # resume from the last resourceVersion seen, so no event is missed.
        while True:
            async for at, event in self.kube.watch(self.namespace, rv):
                kind, obj = event.get("type"), event.get("object", {})
                rv = obj.get("metadata", {}).get("resourceVersion") or rv
                if kind == "BOOKMARK":
                    continue
                if kind == "ERROR":
                    raise RuntimeError(f"watch error: {obj}")
                self.modified += 1
                self.last_change = at
                name = obj.get("metadata", {}).get("name")
                if name and name not in self.ready_at and is_ready(obj):
                    self.ready_at[name] = at
                self._changed.set()

    async def wait_ready(self, names: Iterable[str], limit: float) -> float:
        """Wait until every name is Ready; return the monotonic time the last one was seen Ready."""
        wanted = set(names)
        deadline = time.monotonic() + limit
        while not wanted <= self.ready_at.keys():
            if self._task is not None and self._task.done():
                self._task.result()
                raise RuntimeError("the watch ended")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = len(wanted - self.ready_at.keys())
                raise TimeoutError(f"{missing} of {len(wanted)} CRs not Ready after {limit:.0f}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return max(self.ready_at[n] for n in wanted)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


async def create_all(
    kube: Kube,
    namespace: str,
    bodies: list[dict[str, Any]],
    concurrency: int,
    after: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, float]:
    """Create every body with `concurrency` in flight (calling `after(body)` once each is created); return each
    name's send time (monotonic)."""
    queue = iter(bodies)
    sent: dict[str, float] = {}

    async def worker() -> None:
        for body in queue:  # a shared iterator: each worker takes the next body
            sent[body["metadata"]["name"]] = time.monotonic()
            await kube.create(namespace, body)
            if after is not None:
                after(body)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sent


# -- the stack ---------------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """Control plane + emulator for the whole run; operators come and go per scenario."""

    tasks: int
    config: Config
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="disync-bench-")))
    plane: ControlPlane | None = None
    emulator: EmulatorProcess | None = None
    kubectl: Kubectl | None = None
    _next_file_id: int = 1

    def start(self) -> Stack:
        self.plane = ControlPlane(build_binaries(quiet=True), work_dir=self.workdir / "controlplane")
        self.plane.start()
        self.kubectl = Kubectl(self.plane.kubectl_path, self.plane.kubeconfig)
        self.kubectl("apply", "--server-side", "-f", str(CRD))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{t.PLURAL}.{t.GROUP}")
        registry = emulator_registry(self.tasks, self.workdir / "emulator.yaml")
        self.emulator = EmulatorProcess(
            config=registry,
            args=["--latency-ms", str(self.config.latency_ms)],
            log_path=self.workdir / "emulator.log",
        ).start(timeout=120)
        return self

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
        if self.plane is not None:
            self.plane.stop()
        # etcd's data of a 10,000-CR run is hundreds of MiB; nothing here is needed after the report is written.
        shutil.rmtree(self.workdir, ignore_errors=True)

    def file_ids(self, count: int) -> list[int]:
        """Fresh task ids: every scenario starts tasks nobody started before, so no run sees another's state."""
        ids = list(range(self._next_file_id, self._next_file_id + count))
        if ids and ids[-1] > self.tasks:
            raise RuntimeError(f"the emulator registry has {self.tasks} tasks; {ids[-1]} needed")
        self._next_file_id += count
        return ids

    def namespace(self, name: str) -> str:
        assert self.kubectl is not None
        self.kubectl("create", "namespace", name)
        return name

    def pids(self) -> dict[str, int]:
        # The devstack keeps its Popen objects private; the pids are all the bench needs from them.
        assert self.plane is not None
        assert self.emulator is not None
        pids = {name: proc.pid for name, proc in self.plane._procs.items()}
        if self.emulator._proc is not None:
            pids["emulator"] = self.emulator._proc.pid
        return pids

    def contender(self, namespace: str, name: str, *, delete_handler: bool) -> ContenderProcess:
        assert self.plane is not None
        assert self.emulator is not None
        if self.config.contender_python is None:
            raise RuntimeError("no interpreter for the idiomatic kopf operator (--contender-python)")
        return ContenderProcess(
            kubeconfig=self.plane.kubeconfig,
            endpoint=self.emulator.url,
            namespace=namespace,
            python=self.config.contender_python,
            qps=self.config.qps,
            workers=self.config.max_concurrency,
            delete_handler=delete_handler,
            log_path=self.workdir / f"contender-{name}.log",
        )

    def operator(self, namespace: str, name: str, **env: str | None) -> OperatorProcess:
        assert self.plane is not None
        assert self.emulator is not None
        return OperatorProcess(
            kubeconfig=self.plane.kubeconfig,
            endpoint=self.emulator.url,
            env=self.config.operator_env(namespace, **env),
            python=self.config.operator_python,
            log_path=self.workdir / f"operator-{name}.log",
        )


CONTENDER = REPO / "bench" / "contender" / "operator.py"


@dataclass
class ContenderProcess:
    """The idiomatic kopf operator (bench/contender/operator.py) as a process, watching one namespace."""

    kubeconfig: Path
    endpoint: str
    namespace: str
    python: str
    qps: float
    workers: int
    delete_handler: bool
    log_path: Path
    port: int = 0
    _proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ContenderProcess:
        from disync_operator.devstack.controlplane import free_port

        self.port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DISYNC_", "ALIBABA_CLOUD_"))},
            "KUBECONFIG": str(self.kubeconfig),
            "DATAWORKS_ENDPOINT": self.endpoint,
            "ALIBABA_CLOUD_ACCESS_KEY_ID": DEMO_ACCESS_KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": DEMO_ACCESS_KEY_SECRET,
            "CONTENDER_QPS": str(self.qps),
            "CONTENDER_WORKERS": str(self.workers),
            "CONTENDER_DELETE_HANDLER": "1" if self.delete_handler else "0",
        }
        argv = [self.python, "-m", "kopf", "run", "--standalone", "--quiet", f"--namespace={self.namespace}"]
        argv += [f"--liveness=http://127.0.0.1:{self.port}/healthz", str(CONTENDER)]
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the contender exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        raise TimeoutError(f"the contender was not live within {timeout:.0f}s")

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of one metric in Prometheus text format (the operator's metrics port)."""
    samples = []
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            head, value = line.rsplit(" ", 1)
            labels = dict(re.findall(r'(\w+)="([^"]*)"', head[len(name) :]))
            samples.append((labels, float(value)))
    return samples


def emulator_requests(emulator: EmulatorProcess, action: str) -> list[dict[str, Any]]:
    """The emulator's request log for one action, filtered by the emulator (EmulatorProcess.requests fetches every
    entry and filters here: tens of MiB of JSON after a 10,000-CR run)."""
    response = httpx.get(f"{emulator.url}/_emulator/requests", params={"action": action}, timeout=120)
    response.raise_for_status()
    entries: list[dict[str, Any]] = response.json()
    return entries


def operator_pid(process: OperatorProcess) -> int:
    assert process._proc is not None
    return process._proc.pid


def git_revision() -> str:
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"
