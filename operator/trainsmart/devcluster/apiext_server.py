"""A current Kubernetes CRD server on loopback: apiextensions-apiserver 0.36.4 (the CRD part of
kube-apiserver 1.36) on its own etcd, for checking CRDs and custom resources against a current Kubernetes.

Why a second server: the full local control plane (`controlplane.py`) is Kubernetes 1.20, the newest that
builds from Debian bookworm, and 1.20 lacks what current clusters do with CRDs (CEL validation rules, strict
field validation, ...). Debian sid has the 1.36 CRD server's sources; `build_apiext_offline.sh` builds it
offline, wrapped in a small `main` (`apiext/main.go`) that adds what kubectl needs (discovery, OpenAPI v2).
It serves only CRDs and custom resources: no namespaces, no pods, no RBAC objects.

Binaries, first hit wins: `TRAINSMART_APIEXT_BIN_DIR`; the user cache
`${XDG_CACHE_HOME:-~/.cache}/trainsmart/apiext-v0.36.4` when it carries the current recipe's stamp; else an
offline build into that cache (root only, about 5 minutes on 2 cores; `make apiext` does it up front).

`python -m trainsmart.devcluster.apiext_server provision` only makes sure the binaries exist (for make).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trainsmart.devcluster.binaries import STAMP_FILE, BinariesNotFoundError, cache_root
from trainsmart.devcluster.controlplane import ControlPlaneError, _signal_group, die_with_parent, free_port
from trainsmart.pki import issue_certificate, new_ca

APIEXT_VERSION = "v0.36.4"
# What the server reports on /version: apiextensions-apiserver v0.36.x is published from Kubernetes v1.36.x,
# and the build script stamps the binary with it.
KUBE_VERSION = "v1.36.4"
# A cache entry counts only with this stamp; bump it whenever the build script or the wrapper changes, so
# binaries from an older recipe are rebuilt instead of silently reused.
APIEXT_STAMP = f"apiext-{APIEXT_VERSION}-debian-0.36.4-1-r1"
BIN_DIR_ENV = "TRAINSMART_APIEXT_BIN_DIR"
BUILD_SCRIPT = Path(__file__).with_name("build_apiext_offline.sh")
BINARY_NAMES = ("apiext", "etcd")
ADMIN_USER = "trainsmart-admin"
# Requests this group bypass authorization: the server has no RBAC objects of its own to grant anything.
ADMIN_GROUP = "system:masters"
# The server insists on kubeconfigs for its core-API informers and delegated authn/authz even though
# none of that exists here; this address refuses connections at once, so those lookups fail fast.
UNREACHABLE_SERVER = "https://127.0.0.1:1"
# Admission plugins that need the core API (namespaces) or webhooks/policies we never configure.
DISABLED_ADMISSION = (
    "NamespaceLifecycle",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionWebhook",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionWebhook",
)
# /readyz never passes here (its informer-sync check waits for core-API informers that cannot sync), but
# requests are served: readiness is "the CRD API answers".
READY_PATH = "/apis/apiextensions.k8s.io/v1"

Log = Callable[[str], None]


# -- binaries ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiextBinaries:
    """Paths of the CRD server (our wrapper) and the etcd it stores into, and where they were found."""

    apiext: Path
    etcd: Path
    source: str


def apiext_cache_dir() -> Path:
    """Where the offline build puts the binaries: `${XDG_CACHE_HOME:-~/.cache}/trainsmart/apiext-v0.36.4`."""
    return cache_root() / f"apiext-{APIEXT_VERSION}"


def _binaries_in(directory: Path, source: str) -> ApiextBinaries | None:
    paths = [directory / name for name in BINARY_NAMES]
    if all(p.is_file() and os.access(p, os.X_OK) for p in paths):
        return ApiextBinaries(apiext=paths[0], etcd=paths[1], source=source)
    return None


def _stamp(directory: Path) -> str:
    try:
        return (directory / STAMP_FILE).read_text().strip()
    except OSError:
        return ""


def find_apiext_binaries(env: Mapping[str, str] | None = None) -> ApiextBinaries | None:
    """The binaries without side effects: the explicit directory (trusted as is, no stamp needed), then the
    cache when its stamp is the current recipe's. None when neither has both."""
    env = os.environ if env is None else env
    explicit = env.get(BIN_DIR_ENV)
    if explicit:
        found = _binaries_in(Path(explicit), BIN_DIR_ENV)
        if found is None:
            raise BinariesNotFoundError(
                f"{BIN_DIR_ENV}={explicit} does not hold executable {' and '.join(BINARY_NAMES)}"
            )
        return found
    cached = apiext_cache_dir()
    if _stamp(cached) == APIEXT_STAMP:
        return _binaries_in(cached, "cache")
    return None


def build_argv(dest: Path) -> list[str]:
    """The offline build's command line (the script is idempotent and takes a lock, so running it when a
    parallel run already builds only waits)."""
    return ["bash", str(BUILD_SCRIPT), str(dest), APIEXT_STAMP]


def build_apiext(dest: Path, log: Log, *, euid: int | None = None) -> None:
    """Run the offline build into `dest`, streaming its progress lines to `log`. It fetches Debian packages
    with apt-get, so it needs root; say so plainly instead of failing half-way."""
    if (os.geteuid() if euid is None else euid) != 0:
        raise BinariesNotFoundError(
            f"the Kubernetes 1.36 CRD server is not built yet and building it needs root (apt-get): run "
            f"`make apiext` as root once, or set {BIN_DIR_ENV} to a directory with apiext and etcd"
        )
    log(f"building apiextensions-apiserver {APIEXT_VERSION} from Debian sid into {dest} (~5 min on 2 cores)")
    proc = subprocess.Popen(build_argv(dest), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for raw in proc.stdout:
        line = raw.rstrip()
        tail = [*tail, line][-40:]
        if line.startswith("[apiext-offline"):
            log(line)
    if proc.wait() != 0:
        raise BinariesNotFoundError("offline build of the CRD server failed:\n" + "\n".join(tail))


def ensure_apiext_binaries(log: Log = print, env: Mapping[str, str] | None = None) -> ApiextBinaries:
    """Find the binaries, building them into the cache first when needed."""
    found = find_apiext_binaries(env)
    if found is not None:
        return found
    build_apiext(apiext_cache_dir(), log)
    found = find_apiext_binaries(env)
    if found is None:
        raise BinariesNotFoundError(f"the offline build finished but {apiext_cache_dir()} holds no current binaries")
    return found


# -- certificates and kubeconfig ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CrdServerPKI:
    """The files the server is started with, and the admin's client certificate."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def issue_client_certificate(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, user: str, groups: tuple[str, ...]
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A client certificate as the apiserver reads it: CN is the user name, each O a group. (trainsmart.pki
    issues only serving certificates; this server authenticates by client certificate, since it has no
    token file option.)"""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        + [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def write_crd_server_pki(directory: Path) -> CrdServerPKI:
    """A fresh CA, a serving certificate for loopback and an admin client certificate in `system:masters`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = new_ca("trainsmart-apiext-ca")
    serving, serving_key = issue_certificate(ca_cert, ca_key, "apiext", ["127.0.0.1"], ["localhost"])
    admin, admin_key = issue_client_certificate(ca_cert, ca_key, ADMIN_USER, (ADMIN_GROUP,))
    pki = CrdServerPKI(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "serving.crt",
        serving_key=directory / "serving.key",
        admin_cert=directory / "admin.crt",
        admin_key=directory / "admin.key",
    )
    for path, cert in ((pki.ca_cert, ca_cert), (pki.serving_cert, serving), (pki.admin_cert, admin)):
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    for path, key in ((pki.serving_key, serving_key), (pki.admin_key, admin_key)):
        path.write_bytes(_pem_key(key))
        path.chmod(0o600)
    return pki


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def admin_kubeconfig(server: str, pki: CrdServerPKI) -> dict[str, object]:
    """A self-contained admin kubeconfig (everything embedded), so it still works when copied elsewhere."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "apiext", "cluster": {"server": server, "certificate-authority-data": _b64(pki.ca_cert)}}
        ],
        "users": [
            {
                "name": ADMIN_USER,
                "user": {"client-certificate-data": _b64(pki.admin_cert), "client-key-data": _b64(pki.admin_key)},
            }
        ],
        "contexts": [{"name": "apiext", "context": {"cluster": "apiext", "user": ADMIN_USER}}],
        "current-context": "apiext",
    }


def unreachable_kubeconfig() -> dict[str, object]:
    """What the server gets for its core-API and delegation kubeconfigs (see UNREACHABLE_SERVER)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "none", "cluster": {"server": UNREACHABLE_SERVER, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "none", "user": {}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "current-context": "none",
    }


# -- command lines -----------------------------------------------------------------------------------------


def etcd_argv(etcd: Path, data_dir: Path, client_port: int, peer_port: int) -> list[str]:
    client, peer = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
    return [
        str(etcd),
        "--name=default",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster=default={peer}",
        "--logger=zap",
        "--log-level=warn",
    ]


def apiext_argv(
    apiext: Path, *, etcd_url: str, port: int, workdir: Path, pki: CrdServerPKI, kubeconfig: Path
) -> list[str]:
    """The server's flags (shared/docs/offline-toolchain.md): client certificates against our CA; delegated
    authentication and authorization pointed at nothing (only `system:masters` is ever authorized, which
    needs no lookup); priority-and-fairness off, as it watches core-API objects that do not exist here."""
    return [
        str(apiext),
        f"--etcd-servers={etcd_url}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'certs'}",
        f"--tls-cert-file={pki.serving_cert}",
        f"--tls-private-key-file={pki.serving_key}",
        f"--client-ca-file={pki.ca_cert}",
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--authentication-skip-lookup",
        f"--disable-admission-plugins={','.join(DISABLED_ADMISSION)}",
        "--enable-priority-and-fairness=false",
    ]


# -- the server --------------------------------------------------------------------------------------------


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class CrdServer:
    """etcd + the 1.36 CRD server on loopback with free ports. Use as a context manager, or call `start()`
    and `stop()`.

    After `start()`: `server` is the https URL, `admin_kubeconfig` a kubeconfig for a `system:masters`
    client certificate, `version` what GET /version said (`gitVersion` v1.36.4, `minor` "36"). Logs stay in
    `workdir/logs/` (etcd.log, apiext.log); a workdir this class created itself is removed by `stop()`.
    """

    workdir: Path | None = None
    binaries: ApiextBinaries | None = None
    log: Log = lambda _msg: None

    server: str = field(init=False, default="")
    etcd_url: str = field(init=False, default="")
    version: dict[str, str] = field(init=False, default_factory=dict)
    pki: CrdServerPKI | None = field(init=False, default=None)
    start_seconds: float = field(init=False, default=0.0)
    _procs: list[_Proc] = field(init=False, default_factory=list)
    _owns_workdir: bool = field(init=False, default=False)

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start etcd and the server and wait until the CRD API answers. A start that loses a port race
        (the ports are picked free, then bound by the children) is retried with fresh ports."""
        began = time.monotonic()
        if self.binaries is None:
            self.binaries = ensure_apiext_binaries(self.log)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="trainsmart-apiext-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.pki = write_crd_server_pki(self.workdir / "pki")
        dummy = self.workdir / "unreachable.kubeconfig"
        dummy.write_text(yaml.safe_dump(unreachable_kubeconfig()))
        last: ControlPlaneError | None = None
        for _ in range(attempts):
            try:
                self._start_once(timeout, dummy)
            except ControlPlaneError as exc:
                last = exc
                self._stop_processes()
                continue
            self.start_seconds = time.monotonic() - began
            self.log(f"CRD server {self.version.get('gitVersion')} at {self.server} in {self.start_seconds:.1f} s")
            return
        self.stop()
        assert last is not None
        raise last

    def stop(self, timeout: float = 4.0) -> None:
        """SIGTERM the server's and etcd's process groups (server first), SIGKILL at the deadline."""
        self._stop_processes(timeout)
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> CrdServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def admin_kubeconfig(self) -> Path:
        assert self.workdir is not None, "CRD server not started"
        return self.workdir / "admin.kubeconfig"

    def log_path(self, name: str) -> Path:
        """`etcd` or `apiext`."""
        assert self.workdir is not None, "CRD server not started"
        return self.workdir / "logs" / f"{name}.log"

    def get(self, path: str, timeout: float = 5.0) -> object:
        """GET `path` as the admin and decode the JSON answer (for readiness and quick checks)."""
        assert self.pki is not None, "CRD server not started"
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        request = urllib.request.Request(self.server + path, headers={"Accept": "application/json"})  # noqa: S310
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:  # noqa: S310
            return json.loads(response.read())

    # -- internals ---------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        log_path = self.log_path(name)
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # only calls prctl
            )
        self._procs.append(_Proc(name, popen, log_path))

    def _start_once(self, timeout: float, dummy_kubeconfig: Path) -> None:
        assert self.binaries is not None and self.workdir is not None and self.pki is not None
        deadline = time.monotonic() + timeout
        etcd_port, peer_port, port = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.server = f"https://127.0.0.1:{port}"
        data_dir = self.workdir / "etcd"
        shutil.rmtree(data_dir, ignore_errors=True)
        self._spawn("etcd", etcd_argv(self.binaries.etcd, data_dir, etcd_port, peer_port))
        # The server retries its etcd connection, so both start at once.
        argv = apiext_argv(
            self.binaries.apiext,
            etcd_url=self.etcd_url,
            port=port,
            workdir=self.workdir,
            pki=self.pki,
            kubeconfig=dummy_kubeconfig,
        )
        self._spawn("apiext", argv)
        self._wait_ready(deadline)
        version = self.get("/version")
        assert isinstance(version, dict)
        self.version = {str(k): str(v) for k, v in version.items()}
        self.admin_kubeconfig.write_text(yaml.safe_dump(admin_kubeconfig(self.server, self.pki)))
        self.admin_kubeconfig.chmod(0o600)

    def _check_alive(self) -> None:
        for proc in self._procs:
            code = proc.popen.poll()
            if code is not None:
                tail = proc.log_path.read_text(errors="replace").splitlines()[-25:]
                raise ControlPlaneError(f"{proc.name} exited with {code}:\n" + "\n".join(tail))

    def _wait_ready(self, deadline: float) -> None:
        while True:
            self._check_alive()
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
                self.get(READY_PATH, timeout=2)
                return
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"timed out waiting for {READY_PATH} on {self.server}")
            time.sleep(0.1)

    def _stop_processes(self, timeout: float = 4.0) -> None:
        share = timeout / 2
        for name in ("apiext", "etcd"):
            for proc in (p for p in self._procs if p.name == name):
                _signal_group(proc.popen, signal.SIGTERM)
                try:
                    proc.popen.wait(share)
                except subprocess.TimeoutExpired:
                    _signal_group(proc.popen, signal.SIGKILL)
                    proc.popen.wait()
        self._procs.clear()


# -- entry point -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """`provision`: make sure the binaries exist (build them if needed) and print their directory."""
    parser = argparse.ArgumentParser(prog="python -m trainsmart.devcluster.apiext_server", description=__doc__)
    parser.add_argument("command", choices=["provision"])
    parser.parse_args(argv)
    try:
        found = ensure_apiext_binaries(lambda msg: print(msg, file=sys.stderr, flush=True))
    except BinariesNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"apiextensions-apiserver {APIEXT_VERSION} ({found.source}): {found.apiext.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
