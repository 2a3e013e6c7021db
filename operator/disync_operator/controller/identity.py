"""Who the operator is to the Kubernetes API server, kept current while that changes.

One `Identity` per process feeds every Kubernetes request: kopf's login handler returns what it logs in with (so
kopf's watch uses it), and the operator's own client (runtime/kube.py) and the leader elector read it before each
request. Credentials come, in this order, from the pod's ServiceAccount (as client-go reads it: the
`KUBERNETES_SERVICE_HOST`/`_PORT` variables and the files under /var/run/secrets/kubernetes.io/serviceaccount) or
from a kubeconfig (`KUBECONFIG`, else ~/.kube/config): a token, a `tokenFile`, client certificates, basic auth, or
an `exec` credential plugin that prints an `ExecCredential`.

They change under a running process: the kubelet rewrites the token file before the token expires, a revoked
token answers 401, an exec plugin's credential expires. So:

- a token file (in-cluster or a kubeconfig's `tokenFile`) is re-read every `reread_seconds` and a change logs in
  again at once, before any 401;
- an exec credential carries its expiry: the login is redone shortly before it, here and (through
  `ConnectionInfo.expiration`) in kopf;
- a 401 on the operator's own requests logs in again, once per stale login however many requests saw it
  (`refresh(stale)`), and the request is retried once; kopf does the same for its watch through the login handler.

Why not the `kubernetes` package's loaders: see docs/design.md ("Kubernetes credentials").
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf
import yaml

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
EXEC_TIMEOUT = 60.0
# Log in again this long before an exec credential expires (client-go refreshes at expiry; a margin keeps requests
# that are in flight at that moment from failing).
EXPIRY_MARGIN = datetime.timedelta(seconds=10)


class IdentityError(Exception):
    """No usable Kubernetes credentials (the message names what is missing; it never carries a credential)."""


@dataclass(frozen=True)
class Login:
    """One login: what to connect with, and where its token came from (to notice when that changes)."""

    info: kopf.ConnectionInfo
    source: str  # "serviceaccount", "kubeconfig:<path>" — for logs
    token_file: Path | None = None
    token_file_text: str | None = None

    @property
    def expires_at(self) -> datetime.datetime | None:
        return self.info.expiration

    def expired(self, now: datetime.datetime | None = None) -> bool:
        expiry = self.info.expiration
        if expiry is None:
            return False
        now = now or datetime.datetime.now(datetime.UTC)
        return now >= expiry - EXPIRY_MARGIN


def login_in_cluster(environ: dict[str, str] | None = None, folder: Path = SERVICE_ACCOUNT_DIR) -> Login | None:
    """The pod's ServiceAccount, as client-go's in-cluster configuration reads it; None outside a pod."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token_file = folder / "token"
    if not host or not port or not token_file.exists():
        return None
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    text = token_file.read_text(encoding="utf-8")
    if not text.strip():
        raise IdentityError(f"the ServiceAccount token file {token_file} is empty")
    ca = folder / "ca.crt"
    namespace = folder / "namespace"
    info = kopf.ConnectionInfo(
        server=f"https://{host}:{port}",
        ca_path=str(ca) if ca.exists() else None,
        token=text.strip(),
        scheme="Bearer",
        default_namespace=namespace.read_text(encoding="utf-8").strip() if namespace.exists() else None,
    )
    return Login(info=info, source="serviceaccount", token_file=token_file, token_file_text=text)


def in_cluster_namespace(folder: Path = SERVICE_ACCOUNT_DIR) -> str | None:
    try:
        return (folder / "namespace").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def kubeconfig_paths(environ: dict[str, str] | None = None) -> list[Path]:
    env = os.environ if environ is None else environ
    listed = [Path(p).expanduser() for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    return listed or [Path("~/.kube/config").expanduser()]


def _merged(paths: list[Path]) -> tuple[dict[str, Any], dict[str, Path]]:
    """The kubeconfig files merged as kubectl does (the first file to set a name or current-context wins), and
    the folder each named entry came from (relative paths in it are relative to its own file)."""
    merged: dict[str, Any] = {"current-context": None, "contexts": {}, "clusters": {}, "users": {}}
    origin: dict[str, Path] = {}
    for path in paths:
        if not path.exists():
            continue
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise IdentityError(f"{path}: not a kubeconfig")
        merged["current-context"] = merged["current-context"] or loaded.get("current-context")
        for kind in ("contexts", "clusters", "users"):
            for entry in loaded.get(kind) or []:
                name = entry.get("name")
                if name is not None and name not in merged[kind]:
                    merged[kind][name] = entry.get(kind[:-1]) or {}
                    origin[f"{kind}/{name}"] = path.parent
    return merged, origin


def _resolve(folder: Path, value: str | None) -> Path | None:
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def login_with_kubeconfig(
    environ: dict[str, str] | None = None, run: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run
) -> Login | None:
    paths = kubeconfig_paths(environ)
    if not any(p.exists() for p in paths):
        return None
    config, origin = _merged(paths)
    context_name = config["current-context"]
    if not context_name or context_name not in config["contexts"]:
        raise IdentityError(f"kubeconfig {os.pathsep.join(map(str, paths))}: no current context")
    context = config["contexts"][context_name]
    cluster_name, user_name = context.get("cluster"), context.get("user")
    if cluster_name not in config["clusters"]:
        raise IdentityError(f"kubeconfig context {context_name!r}: cluster {cluster_name!r} is not defined")
    cluster = config["clusters"][cluster_name]
    cluster_dir = origin[f"clusters/{cluster_name}"]
    user: dict[str, Any] = config["users"].get(user_name) or {}
    user_dir = origin.get(f"users/{user_name}", cluster_dir)
    if not cluster.get("server"):
        raise IdentityError(f"kubeconfig cluster {cluster_name!r} has no server")

    ca_path = _resolve(cluster_dir, cluster.get("certificate-authority"))
    fields: dict[str, Any] = {
        "server": cluster["server"],
        "ca_path": str(ca_path) if ca_path else None,
        "ca_data": _pem(cluster.get("certificate-authority-data")),
        "insecure": bool(cluster.get("insecure-skip-tls-verify")),
        "default_namespace": context.get("namespace"),
        "username": user.get("username"),
        "password": user.get("password"),
        "token": user.get("token"),
        "scheme": "Bearer" if user.get("token") or user.get("tokenFile") or user.get("exec") else None,
    }
    for key, path_key, data_key in (
        ("certificate", "client-certificate", "client-certificate-data"),
        ("private_key", "client-key", "client-key-data"),
    ):
        resolved = _resolve(user_dir, user.get(path_key))
        fields[f"{key}_path"] = str(resolved) if resolved else None
        fields[f"{key}_data"] = _pem(user.get(data_key))

    token_file, token_text = None, None
    if user.get("tokenFile") and not user.get("token"):
        token_file = _resolve(user_dir, user["tokenFile"])
        assert token_file is not None
        token_text = token_file.read_text(encoding="utf-8")
        fields["token"] = token_text.strip()
    if user.get("exec"):
        fields |= _exec_credential(user["exec"], user_dir, cluster, run)
    info = kopf.ConnectionInfo(**fields)
    source = f"kubeconfig {paths[0]} (context {context_name})"
    return Login(info=info, source=source, token_file=token_file, token_file_text=token_text)


def _pem(data: str | None) -> bytes | None:
    return base64.b64decode(data) if data else None


def _exec_credential(
    spec: dict[str, Any],
    folder: Path,
    cluster: dict[str, Any],
    run: Callable[..., subprocess.CompletedProcess[bytes]],
) -> dict[str, Any]:
    """Run a kubeconfig's exec credential plugin and read the `ExecCredential` it prints."""
    api_version = spec.get("apiVersion") or EXEC_API_VERSIONS[0]
    if api_version not in EXEC_API_VERSIONS:
        raise IdentityError(f"exec credential plugin: apiVersion {api_version!r} is not supported")
    if spec.get("interactiveMode") == "Always":
        raise IdentityError("exec credential plugin: interactiveMode Always needs a terminal; the operator has none")
    command = spec.get("command")
    if not command:
        raise IdentityError("exec credential plugin: no command")
    if "/" in command and not Path(command).is_absolute():
        command = str(folder / command)  # relative to the kubeconfig, as kubectl resolves it
    request: dict[str, Any] = {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    if spec.get("provideClusterInfo"):
        request["spec"]["cluster"] = {"server": cluster.get("server")}
    env = dict(os.environ)
    env.update({item["name"]: item["value"] for item in spec.get("env") or []})
    env["KUBERNETES_EXEC_INFO"] = json.dumps(request)
    try:
        done = run(
            [command, *(spec.get("args") or [])],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=EXEC_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise IdentityError(f"exec credential plugin {command!r} could not run: {type(error).__name__}") from None
    if done.returncode != 0:
        # Its stderr is the plugin's explanation (no credential is printed there by contract); bounded.
        reason = done.stderr.decode(errors="replace").strip()[-300:]
        raise IdentityError(f"exec credential plugin {command!r} exited {done.returncode}: {reason}")
    try:
        answer = json.loads(done.stdout)
        status = answer["status"]
    except (ValueError, KeyError, TypeError):
        raise IdentityError(f"exec credential plugin {command!r} did not print an ExecCredential") from None
    fields: dict[str, Any] = {}
    if status.get("token"):
        fields["token"] = status["token"]
        fields["scheme"] = "Bearer"
    if status.get("clientCertificateData") and status.get("clientKeyData"):
        fields["certificate_data"] = status["clientCertificateData"].encode()
        fields["private_key_data"] = status["clientKeyData"].encode()
        fields["certificate_path"] = fields["private_key_path"] = None
    if not fields:
        raise IdentityError(f"exec credential plugin {command!r} printed neither a token nor a client certificate")
    if status.get("expirationTimestamp"):
        expiry = datetime.datetime.fromisoformat(status["expirationTimestamp"].replace("Z", "+00:00"))
        fields["expiration"] = expiry if expiry.tzinfo else expiry.replace(tzinfo=datetime.UTC)
    return fields


def login() -> Login:
    """In a pod, its ServiceAccount; elsewhere, the kubeconfig."""
    found = login_in_cluster() or login_with_kubeconfig()
    if found is None:
        raise IdentityError(
            "no Kubernetes credentials: not in a pod (KUBERNETES_SERVICE_HOST and the ServiceAccount token file) "
            "and no kubeconfig (KUBECONFIG or ~/.kube/config)"
        )
    return found


class Identity:
    """The process's current login, shared by kopf and the operator's own clients."""

    def __init__(self, login: Callable[[], Login] = login, *, reread_seconds: float = 10.0) -> None:
        self._login = login
        self._current: Login | None = None
        self._lock = threading.Lock()  # kopf runs its login handler in a thread; the operator's refreshes too
        self._refreshing: asyncio.Lock | None = None
        self.reread_seconds = reread_seconds
        self.logins = 0  # how many times credentials were obtained (metrics and tests)

    @property
    def current(self) -> Login | None:
        return self._current

    def login_now(self) -> Login:
        """Log in from scratch (blocking: files, maybe an exec plugin). Thread-safe."""
        with self._lock:
            fresh = self._login()
            changed = self._current is None or fresh.info != self._current.info
            self._current = fresh
            self.logins += 1
        if changed:
            log.info("Kubernetes credentials loaded from %s", fresh.source)
        return fresh

    async def get(self) -> Login:
        """The login to use now: the first one, or a fresh one if it is about to expire."""
        current = self._current
        if current is None or current.expired():
            return await self.refresh(current)
        return current

    async def refresh(self, stale: Login | None) -> Login:
        """Log in again because `stale` failed (401) or changed, unless someone already has since."""
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            current = self._current
            if current is not None and current is not stale and not current.expired():
                return current
            return await asyncio.to_thread(self.login_now)

    def token_file_changed(self) -> bool:
        """Whether the current login's token file now says something else (blocking: reads the file)."""
        current = self._current
        if current is None or current.token_file is None:
            return False
        try:
            return current.token_file.read_text(encoding="utf-8") != current.token_file_text
        except OSError:
            return False  # mid-rotation (the kubelet swaps a symlink): look again next time

    async def follow_token_file(self) -> None:
        """Forever: re-read the token file, and log in again as soon as it changes (before any 401)."""
        while True:
            await asyncio.sleep(self.reread_seconds)
            try:
                if await asyncio.to_thread(self.token_file_changed):
                    log.info("the Kubernetes token file changed; logging in again")
                    await self.refresh(self._current)
            except IdentityError as error:
                log.warning("logging in again after the token file changed failed: %s", error)
