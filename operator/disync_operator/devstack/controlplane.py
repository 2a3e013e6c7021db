"""A real, throw-away Kubernetes control plane (etcd + kube-apiserver) on loopback.

Used by the test suite, `disync-operator dev` and the benchmarks. The binaries come from
`hack/build-controlplane.sh` (built from pinned Go modules into a cache outside the repository).

What it gives a caller:
- etcd and kube-apiserver on free loopback ports, in a temporary directory removed on stop;
- a generated CA, serving certificate and service-account key; `--authorization-mode=RBAC`;
- an admin kubeconfig (client certificate in `system:masters`) at `<workdir>/admin.kubeconfig`;
- extra identities: static tokens registered at start (`token_identities`) and client certificates minted at any
  time (`mint_identity`), e.g. for `system:serviceaccount:<ns>:<name>` to prove RBAC manifests;
- clean shutdown: children get SIGTERM then SIGKILL, and die with the parent even if it is killed (PDEATHSIG).
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-controlplane.sh"


class ControlPlaneError(RuntimeError):
    pass


def build_binaries(*, quiet: bool = False) -> Path:
    """Build (or reuse from cache) the control-plane binaries and return their directory."""
    if env_dir := os.environ.get("DISYNC_CONTROLPLANE_BIN"):
        return Path(env_dir)
    if not BUILD_SCRIPT.exists():
        raise ControlPlaneError(f"{BUILD_SCRIPT} not found: the dev stack runs from a checkout of the repository")
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL if quiet else None,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"control-plane build failed (exit {result.returncode}); run {BUILD_SCRIPT} to see why")
    return Path(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Linux prctl(PR_SET_PDEATHSIG): if the test runner is SIGKILLed, etcd and the apiserver go too. SIGKILL, not
    # SIGTERM: an apiserver whose etcd is also going away can hang in graceful shutdown, and the data is throw-away.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass(frozen=True)
class Identity:
    """A user the API server authenticates; `kubeconfig` is ready for kubectl/kopf/kubernetes clients."""

    user: str
    groups: tuple[str, ...]
    kubeconfig: Path
    token: str | None = None


def service_account_user(namespace: str, name: str) -> tuple[str, tuple[str, ...]]:
    """The user name and groups the API server gives a ServiceAccount's token."""
    return (
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"),
    )


class _PKI:
    """A tiny CA: the serving certificate, client certificates, and the service-account signing key."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "disync-test-ca")])
        self._ca = (
            self._builder(name, name, self._ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_cert = self._write_cert("ca.crt", self._ca)
        sans: list[x509.GeneralName] = [
            x509.DNSName(d) for d in ("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc")
        ]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "10.0.0.1")]
        self.serving_cert, self.serving_key = self.issue("kube-apiserver", (), server=True, sans=sans)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        self.sa_key = self._write_key("sa.key", sa_key)
        # The apiserver verifies tokens with the public half; it does not derive it from a PKCS#8 private key.
        self.sa_pub = self.dir / "sa.pub"
        self.sa_pub.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
    ) -> x509.CertificateBuilder:
        now = dt.datetime.now(dt.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=7))
        )

    def _write_cert(self, name: str, cert: x509.Certificate) -> Path:
        path = self.dir / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def _write_key(self, name: str, key: ec.EllipticCurvePrivateKey) -> Path:
        path = self.dir / name
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
        return path

    def issue(
        self,
        common_name: str,
        organizations: Sequence[str],
        *,
        server: bool = False,
        sans: Sequence[x509.GeneralName] = (),
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            self._builder(x509.Name(attrs), self._ca.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        stem = f"{'server' if server else 'client'}-{secrets.token_hex(4)}"
        return self._write_cert(f"{stem}.crt", cert), self._write_key(f"{stem}.key", key)


@dataclass
class ControlPlane:
    """etcd + kube-apiserver on loopback. Use as a context manager, or call start()/stop()."""

    bin_dir: Path
    token_identities: Sequence[tuple[str, Sequence[str]]] = ()
    work_dir: Path | None = None
    log_to: Path | None = None
    server: str = field(init=False, default="")
    admin: Identity = field(init=False)
    tokens: dict[str, Identity] = field(init=False, default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(init=False, default_factory=dict)
    _owns_dir: bool = field(init=False, default=False)

    @property
    def kubectl_path(self) -> Path:
        return self.bin_dir / "kubectl"

    @property
    def kubeconfig(self) -> Path:
        return self.admin.kubeconfig

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        if self.work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="disync-controlplane-"))
            self._owns_dir = True
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._pki = _PKI(self.work_dir / "pki")
        self._etcd_client_port = free_port()
        self._api_port = free_port()
        self.server = f"https://127.0.0.1:{self._api_port}"
        self._write_token_file()
        cert, key = self._pki.issue("admin", ("system:masters",))
        self.admin = Identity("admin", ("system:masters",), self._write_kubeconfig("admin", cert=cert, key=key))
        try:
            self._start_etcd()
            self.start_apiserver(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for name in ("kube-apiserver", "etcd"):
            self._terminate(name)
        if self._owns_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def start_apiserver(self, timeout: float = 90.0) -> None:
        """Start (or restart after stop_apiserver) the API server on the same port and etcd."""
        assert self.work_dir is not None
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self._etcd_client_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self._api_port}",
                f"--cert-dir={self.work_dir / 'apiserver-certs'}",
                f"--tls-cert-file={self._pki.serving_cert}",
                f"--tls-private-key-file={self._pki.serving_key}",
                f"--client-ca-file={self._pki.ca_cert}",
                f"--token-auth-file={self.work_dir / 'tokens.csv'}",
                f"--service-account-key-file={self._pki.sa_pub}",
                f"--service-account-signing-key-file={self._pki.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.0.0.0/24",
                # No controller-manager runs here, so nothing would create ServiceAccount tokens or endpoints.
                "--disable-admission-plugins=ServiceAccount",
                "--endpoint-reconciler-type=none",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._wait_ready(timeout)

    def stop_apiserver(self) -> None:
        self._terminate("kube-apiserver")

    # -- identities ------------------------------------------------------------------------------------------

    def mint_identity(self, user: str, groups: Sequence[str] = ()) -> Identity:
        """A client-certificate identity, minted without restarting anything (RBAC matches the user name)."""
        cert, key = self._pki.issue(user, tuple(groups))
        safe = "".join(c if c.isalnum() else "-" for c in user)
        return Identity(user, tuple(groups), self._write_kubeconfig(safe, cert=cert, key=key))

    def service_account_identity(self, namespace: str, name: str) -> Identity:
        user, groups = service_account_user(namespace, name)
        if user in self.tokens:
            return self.tokens[user]
        return self.mint_identity(user, groups)

    # -- internals -------------------------------------------------------------------------------------------

    def _write_token_file(self) -> None:
        assert self.work_dir is not None
        lines = []
        for user, groups in self.token_identities:
            token = secrets.token_hex(24)
            uid = secrets.token_hex(8)
            lines.append(f'{token},{user},{uid},"{",".join(groups)}"')
            self.tokens[user] = Identity(user, tuple(groups), Path(), token)
        (self.work_dir / "tokens.csv").write_text("\n".join(lines) + "\n")
        for user, ident in list(self.tokens.items()):
            safe = "".join(c if c.isalnum() else "-" for c in user)
            self.tokens[user] = Identity(
                user, ident.groups, self._write_kubeconfig(f"token-{safe}", token=ident.token), ident.token
            )

    def _write_kubeconfig(
        self, name: str, *, cert: Path | None = None, key: Path | None = None, token: str | None = None
    ) -> Path:
        assert self.work_dir is not None
        user: dict[str, str] = {"token": token} if token else {"client-certificate": str(cert), "client-key": str(key)}
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "disync-dev",
                    "cluster": {"server": self.server, "certificate-authority": str(self._pki.ca_cert)},
                }
            ],
            "users": [{"name": name, "user": user}],
            "contexts": [
                {"name": "disync-dev", "context": {"cluster": "disync-dev", "user": name, "namespace": "default"}}
            ],
            "current-context": "disync-dev",
        }
        path = self.work_dir / f"{name}.kubeconfig"
        path.write_text(json.dumps(config, indent=2))  # JSON is valid YAML: every client reads it
        path.chmod(0o600)
        return path

    def _start_etcd(self) -> None:
        assert self.work_dir is not None
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                f"--data-dir={self.work_dir / 'etcd-data'}",
                f"--listen-client-urls=http://127.0.0.1:{self._etcd_client_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self._etcd_client_port}",
                f"--listen-peer-urls=http://127.0.0.1:{free_port()}",
                "--log-level=warn",
                "--quota-backend-bytes=8589934592",
                # Test data is throw-away: skip fsync so a 2-core CI box is not bound by disk flushes.
                "--unsafe-no-fsync",
            ],
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        assert self.work_dir is not None
        log_path = (self.log_to or self.work_dir) / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            self._procs[name] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
            )

    def _terminate(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def log_tail(self, name: str, lines: int = 30) -> str:
        assert self.work_dir is not None
        path = (self.log_to or self.work_dir) / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context(cafile=str(self._pki.ca_cert))
        admin_cfg = json.loads(self.admin.kubeconfig.read_text())["users"][0]["user"]
        context.load_cert_chain(admin_cfg["client-certificate"], admin_cfg["client-key"])
        deadline = time.monotonic() + timeout
        last_error = "not started"
        # Ready means /readyz is OK and the default namespace exists (bootstrap controllers have run).
        for path in ("/readyz", "/api/v1/namespaces/default"):
            while True:
                for name, proc in self._procs.items():
                    if proc.poll() is not None:
                        raise ControlPlaneError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
                try:
                    with urllib.request.urlopen(self.server + path, context=context, timeout=5) as response:
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError) as error:
                    last_error = str(error)
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"kube-apiserver not ready after {timeout}s ({last_error}):\n{self.log_tail('kube-apiserver')}"
                    )
                time.sleep(0.2)


@contextlib.contextmanager
def running_control_plane(
    token_identities: Sequence[tuple[str, Sequence[str]]] = (), work_dir: Path | None = None
) -> Iterator[ControlPlane]:
    plane = ControlPlane(build_binaries(), token_identities=token_identities, work_dir=work_dir)
    with plane:
        yield plane
