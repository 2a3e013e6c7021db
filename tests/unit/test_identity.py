"""Kubernetes credentials: the kubeconfig and in-cluster logins (cross-checked against the `kubernetes` package's
own loader), token-file rotation, exec credential plugins, and the client's 401 -> fresh login -> one retry."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import stat
import sys
from pathlib import Path
from typing import Any

import httpx
import kopf
import pytest
import yaml

from disync_operator.controller.identity import Identity, IdentityError, Login, login_in_cluster, login_with_kubeconfig
from disync_operator.controller.runtime.kube import KubeClient, KubeError

SERVER = "https://10.0.0.1:6443"
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def write_kubeconfig(folder: Path, user: dict[str, Any], **cluster: Any) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}}],
        "clusters": [{"name": "c", "cluster": {"server": SERVER, **cluster}}],
        "users": [{"name": "u", "user": user}],
    }
    path = folder / "config"
    path.write_text(yaml.safe_dump(config))
    return path


def exec_plugin(folder: Path, status: dict[str, Any], *, exit_code: int = 0, stderr: str = "") -> Path:
    """A credential plugin as kubectl runs them: it prints an ExecCredential; each run is counted in a file."""
    script = folder / "plugin.py"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        f"count = {str(folder / 'runs')!r}\n"
        "runs = int(open(count).read()) if os.path.exists(count) else 0\n"
        "open(count, 'w').write(str(runs + 1))\n"
        "request = json.loads(os.environ['KUBERNETES_EXEC_INFO'])\n"
        "assert request['kind'] == 'ExecCredential' and request['spec']['interactive'] is False\n"
        f"sys.stderr.write({stderr!r})\n"
        f"print(json.dumps({{'apiVersion': request['apiVersion'], 'kind': 'ExecCredential', 'status': {status!r}}}))\n"
        f"sys.exit({exit_code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def runs(folder: Path) -> int:
    return int((folder / "runs").read_text()) if (folder / "runs").exists() else 0


def reference(path: Path) -> Any:
    """The `kubernetes` package's reading of the same kubeconfig (the reference we must agree with)."""
    from kubernetes import client, config  # type: ignore[import-untyped]

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    return configuration


def bearer(configuration: Any) -> str | None:
    value: str | None = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    return value


def test_a_token_file_is_read_and_agrees_with_the_kubernetes_package(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("token-one\n")
    ca = base64.b64encode(CA_PEM.encode()).decode()
    path = write_kubeconfig(tmp_path, {"tokenFile": "token"}, **{"certificate-authority-data": ca})
    login = login_with_kubeconfig({"KUBECONFIG": str(path)})
    assert login is not None
    assert (login.info.server, login.info.token, login.info.scheme) == (SERVER, "token-one", "Bearer")
    assert login.info.default_namespace == "team-a"
    assert login.token_file == tmp_path / "token"
    ref = reference(path)
    assert ref.host == login.info.server
    # (The package keeps the file's trailing newline; client-go trims it, as we do.)
    assert (bearer(ref) or "").strip() == f"Bearer {login.info.token}"
    assert Path(ref.ssl_ca_cert).read_bytes() == login.info.ca_data


def test_an_exec_plugin_gives_the_token_and_its_expiry(tmp_path: Path) -> None:
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).replace(microsecond=0)
    stamp = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
    plugin = exec_plugin(tmp_path, {"token": "from-exec", "expirationTimestamp": stamp})
    api = "client.authentication.k8s.io/v1"
    user = {"exec": {"apiVersion": api, "command": str(plugin), "interactiveMode": "Never"}}
    path = write_kubeconfig(tmp_path, user, **{"insecure-skip-tls-verify": True})
    login = login_with_kubeconfig({"KUBECONFIG": str(path)})
    assert login is not None
    assert (login.info.token, login.info.expiration, login.info.insecure) == ("from-exec", expiry, True)
    assert not login.expired()
    ref = reference(path)
    assert bearer(ref) == "Bearer from-exec"
    assert ref.verify_ssl is False


def test_an_expired_exec_credential_is_fetched_again(tmp_path: Path) -> None:
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    plugin = exec_plugin(tmp_path, {"token": "short-lived", "expirationTimestamp": past})
    path = write_kubeconfig(tmp_path, {"exec": {"command": str(plugin)}})
    identity = Identity(lambda: login_with_kubeconfig({"KUBECONFIG": str(path)}) or pytest.fail("no login"))

    async def twice() -> None:
        await identity.get()
        await identity.get()

    asyncio.run(twice())
    assert runs(tmp_path) == 2  # expired on arrival: each use logs in again


def test_a_failing_exec_plugin_is_a_clear_error_without_its_output(tmp_path: Path) -> None:
    plugin = exec_plugin(tmp_path, {"token": "never-shown"}, exit_code=3, stderr="please run 'cloud login'")
    path = write_kubeconfig(tmp_path, {"exec": {"command": str(plugin)}})
    with pytest.raises(IdentityError) as raised:
        login_with_kubeconfig({"KUBECONFIG": str(path)})
    assert "exited 3" in str(raised.value)
    assert "please run 'cloud login'" in str(raised.value)
    assert "never-shown" not in str(raised.value)


def test_an_interactive_only_plugin_is_refused(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path, {"exec": {"command": "x", "interactiveMode": "Always"}})
    with pytest.raises(IdentityError, match="needs a terminal"):
        login_with_kubeconfig({"KUBECONFIG": str(path)})


def test_in_cluster_reads_the_service_account_as_client_go_does(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_text(CA_PEM)
    (tmp_path / "namespace").write_text("disync-system")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    login = login_in_cluster(env, folder=tmp_path)
    assert login is not None
    assert login.info.server == "https://[fd00::1]:443"
    assert (login.info.token, login.info.ca_path, login.info.default_namespace) == (
        "sa-token",
        str(tmp_path / "ca.crt"),
        "disync-system",
    )
    assert login_in_cluster({}, folder=tmp_path) is None  # not in a pod: the kubeconfig is next


def test_a_rotated_token_file_is_noticed_and_logged_in_again(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("old")
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    identity = Identity(lambda: login_in_cluster(env, folder=tmp_path) or pytest.fail("no login"), reread_seconds=0.01)

    async def rotate() -> str | None:
        await identity.get()
        follow = asyncio.create_task(identity.follow_token_file())
        (tmp_path / "token").write_text("new")
        try:
            for _ in range(500):  # up to 5 s
                if identity.current is not None and identity.current.info.token == "new":
                    break
                await asyncio.sleep(0.01)
        finally:
            follow.cancel()
        return identity.current.info.token if identity.current else None

    assert asyncio.run(rotate()) == "new"
    assert identity.logins == 2


class Server:
    """An API server that accepts one token at a time (what the kube-apiserver does once the old one is revoked)."""

    def __init__(self, valid: str) -> None:
        self.valid = valid
        self.seen: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.seen.append(token)
        if token != self.valid:
            return httpx.Response(401, json={"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized"})
        return httpx.Response(200, json={"kind": "Secret", "metadata": {"name": "s"}})


def counting_login(tokens: list[str]) -> tuple[Identity, list[int]]:
    count = [0]

    def login() -> Login:
        token = tokens[min(count[0], len(tokens) - 1)]
        count[0] += 1
        return Login(info=kopf.ConnectionInfo(server="https://k8s.test", token=token), source="test")

    return Identity(login), count


def test_a_401_logs_in_once_for_all_requests_and_retries_each_once() -> None:
    server = Server(valid="new")
    identity, logins = counting_login(["old", "new"])
    client = KubeClient(identity, transport=httpx.MockTransport(server.handle))

    async def burst() -> list[dict[str, Any]]:
        try:
            return await asyncio.gather(*(client.get_secret("ns", "s") for _ in range(8)))
        finally:
            await client.aclose()

    answers = asyncio.run(burst())
    assert all(a["kind"] == "Secret" for a in answers)
    assert logins[0] == 2  # the first login, and one more for all eight 401s
    assert server.seen.count("new") == 8


def test_a_token_still_refused_after_a_fresh_login_is_an_error_not_a_loop() -> None:
    server = Server(valid="something-else")
    identity, logins = counting_login(["old"])
    client = KubeClient(identity, transport=httpx.MockTransport(server.handle))

    async def one() -> None:
        try:
            await client.get_secret("ns", "s")
        finally:
            await client.aclose()

    with pytest.raises(KubeError) as raised:
        asyncio.run(one())
    assert raised.value.status == 401
    assert len(server.seen) == 2  # one retry
    assert logins[0] == 2  # after one fresh login


def test_client_keys_are_not_left_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inline client keys are written only while the TLS context loads them (kopf's as_ssl_context)."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    from disync_operator.devstack.controlplane import _PKI  # a throw-away CA with a client certificate

    cert, key = _PKI(tmp_path / "pki").issue("tester", ())
    info = kopf.ConnectionInfo(
        server="https://k8s.test", certificate_data=cert.read_bytes(), private_key_data=key.read_bytes()
    )
    identity = Identity(lambda: Login(info=info, source="test"))
    client = KubeClient(identity, transport=httpx.MockTransport(lambda r: httpx.Response(200, json={})))

    async def one() -> None:
        try:
            await client.get_secret("ns", "s")
        finally:
            await client.aclose()

    before = set(tmp_path.iterdir())
    asyncio.run(one())
    assert set(tmp_path.iterdir()) == before
