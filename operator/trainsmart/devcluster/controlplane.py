"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-scheduler and
kube-controller-manager as child processes, with free ports, a temp dir, RBAC on and token users.

This is what the integration tests and `trainsmart dev` run against: the real apiserver is the only honest
judge of schemas, RBAC, admission and watch semantics, and the real scheduler and controller-manager give
GPU-aware placement and garbage collection. Every process is started in its own session with a parent-death
signal, so a crashed test run leaves nothing behind; `stop()` ends them all within a few seconds.
"""

from __future__ import annotations

import contextlib
import ctypes
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import yaml

from trainsmart.devcluster.binaries import BinarySet, ensure_binaries
from trainsmart.pki import ControlPlanePKI, write_control_plane_pki

ADMIN_USER = "trainsmart-admin"
# Restricted users hold no RBAC permissions until a test grants them some: this is how RBAC is tested
# for real (a 403 from the real authorizer, not a mocked one).
RESTRICTED_USERS = ("alice", "bob")
RESTRICTED_GROUP = "trainsmart:developers"
SERVICE_CIDR = "10.0.0.0/24"
# Node loss, detected and acted on within ~40 s instead of ~6 min (docs/devcluster.md, "Node loss"): the
# node-lifecycle controller looks every NODE_MONITOR_PERIOD_S, marks a node NotReady (Unknown) once its
# Lease and status have not moved for NODE_MONITOR_GRACE_S (the agent renews every 2 s: ten missed renewals,
# so a loaded machine does not make nodes flap) and taints it; the taint manager deletes its pods when the
# default toleration the apiserver adds (DefaultTolerationSeconds) runs out.
NODE_MONITOR_PERIOD_S = 2
NODE_MONITOR_GRACE_S = 20
NODE_TOLERATION_S = 15
_PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """A control-plane process failed to start or become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now. Racy by nature; callers retry a start that loses the race."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """preexec hook: SIGKILL the child when the process that started it dies, so nothing is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class _Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path


@dataclass(frozen=True)
class User:
    name: str
    token: str
    groups: tuple[str, ...]


def _kubeconfig(server: str, ca_file: Path, user: User) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "trainsmart-dev", "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user.name, "user": {"token": user.token}}],
        "contexts": [{"name": user.name, "context": {"cluster": "trainsmart-dev", "user": user.name}}],
        "current-context": user.name,
    }


@dataclass
class ControlPlane:
    """A local control plane. Use as a context manager, or call `start()` and `stop()`.

    `bind_address` is where the apiserver listens (loopback by default; the node agent's bridge address or
    0.0.0.0 when pods must reach it). `extra_sans` are added to its serving certificate.
    """

    workdir: Path | None = None
    binaries: BinarySet | None = None
    scheduler: bool = True
    controller_manager: bool = True
    bind_address: str = "127.0.0.1"
    extra_sans: tuple[str, ...] = ()
    log: Callable[[str], None] = lambda _msg: None

    server: str = field(init=False, default="")
    etcd_url: str = field(init=False, default="")
    pki: ControlPlanePKI | None = field(init=False, default=None)
    users: dict[str, User] = field(init=False, default_factory=dict)
    _procs: list[_Proc] = field(init=False, default_factory=list)
    _owns_workdir: bool = field(init=False, default=False)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self, timeout: float = 60.0, attempts: int = 3) -> None:
        """Start everything and wait until the apiserver is ready and the `default` namespace exists.
        A start that loses a port race is retried with fresh ports."""
        if self.binaries is None:
            self.binaries = ensure_binaries(self.log)
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="trainsmart-cp-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "logs").mkdir(exist_ok=True)
        self.pki = write_control_plane_pki(self.workdir / "pki", extra_ips=self._extra_ips())
        self._write_users()
        last: ControlPlaneError | None = None
        for _ in range(attempts):
            try:
                self._start_once(timeout)
                return
            except ControlPlaneError as exc:
                last = exc
                self._stop_processes()
        self.stop()
        assert last is not None
        raise last

    def stop(self, timeout: float = 3.0) -> None:
        """Stop every process (SIGTERM, SIGKILL at the deadline) and remove a workdir we created."""
        self._stop_processes(timeout)
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need -----------------------------------------------------------------------------

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig(ADMIN_USER)

    @property
    def ca_file(self) -> Path:
        assert self.pki is not None, "control plane not started"
        return self.pki.ca_cert

    def kubeconfig(self, user: str) -> Path:
        """Path of a kubeconfig authenticating as `user` (the admin or one of RESTRICTED_USERS)."""
        assert self.workdir is not None, "control plane not started"
        return self.workdir / f"kubeconfig-{user}.yaml"

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._procs if p.popen.poll() is None]

    def log_path(self, name: str) -> Path:
        assert self.workdir is not None
        return self.workdir / "logs" / f"{name}.log"

    # -- internals -------------------------------------------------------------------------------------

    def _extra_ips(self) -> list[str]:
        ips = [s for s in self.extra_sans if s.replace(".", "").isdigit()]
        if self.bind_address not in ("127.0.0.1", "0.0.0.0"):  # noqa: S104 - comparison, not a bind
            ips.append(self.bind_address)
        return ips

    def _write_users(self) -> None:
        assert self.workdir is not None
        self.users = {ADMIN_USER: User(ADMIN_USER, secrets.token_hex(24), ("system:masters",))}
        for name in RESTRICTED_USERS:
            self.users[name] = User(name, secrets.token_hex(24), (RESTRICTED_GROUP,))
        lines = [f'{u.token},{u.name},uid-{u.name},"{",".join(u.groups)}"' for u in self.users.values()]
        token_file = self.workdir / "tokens.csv"
        token_file.write_text("\n".join(lines) + "\n")
        token_file.chmod(0o600)

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

    def _start_once(self, timeout: float) -> None:
        assert self.binaries is not None and self.workdir is not None and self.pki is not None
        deadline = time.monotonic() + timeout
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{etcd_port}"
        host = "127.0.0.1" if self.bind_address in ("127.0.0.1", "0.0.0.0") else self.bind_address  # noqa: S104
        self.server = f"https://{host}:{api_port}"
        data_dir = self.workdir / "etcd"
        shutil.rmtree(data_dir, ignore_errors=True)
        peer = f"http://127.0.0.1:{peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                "--name=default",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--logger=zap",
                "--log-level=warn",
            ],
        )
        # The apiserver retries its etcd connection, so both start at once: that saves etcd's startup time.
        self._spawn("kube-apiserver", self._apiserver_argv(api_port))
        self._wait_ready(deadline)
        for user in self.users.values():
            path = self.kubeconfig(user.name)
            path.write_text(yaml.safe_dump(_kubeconfig(self.server, self.pki.ca_cert, user)))
            path.chmod(0o600)
        if self.scheduler and self.binaries.kube_scheduler:
            self._spawn("kube-scheduler", self._component_argv(self.binaries.kube_scheduler))
        if self.controller_manager and self.binaries.kube_controller_manager:
            argv = [
                *self._component_argv(self.binaries.kube_controller_manager),
                f"--service-account-private-key-file={self.pki.sa_private_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                "--controllers=*",
                *node_lifecycle_flags(self.binaries.version),
            ]
            self._spawn("kube-controller-manager", argv)
        time.sleep(0.05)
        self._check_alive()

    def _apiserver_argv(self, port: int) -> list[str]:
        assert self.binaries is not None and self.workdir is not None and self.pki is not None
        argv = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={self.bind_address}",
            f"--secure-port={port}",
            f"--cert-dir={self.workdir / 'certs'}",
            f"--tls-cert-file={self.pki.serving_cert}",
            f"--tls-private-key-file={self.pki.serving_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--allow-privileged=true",
            "--authorization-mode=RBAC",
            f"--token-auth-file={self.workdir / 'tokens.csv'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={self.pki.sa_public_key}",
            f"--service-account-signing-key-file={self.pki.sa_private_key}",
            # The node agent, not this admission plugin, provides service-account tokens to the pods it runs.
            "--disable-admission-plugins=ServiceAccount",
            *apiserver_eviction_flags(),
        ]
        if self.binaries.version < (1, 24):
            argv.append("--insecure-port=0")
        if self.bind_address in ("127.0.0.1", "0.0.0.0"):  # noqa: S104
            argv.append("--advertise-address=127.0.0.1")
        return argv

    def _component_argv(self, binary: Path) -> list[str]:
        assert self.binaries is not None
        kc = str(self.admin_kubeconfig)
        argv = [
            str(binary),
            f"--kubeconfig={kc}",
            f"--authentication-kubeconfig={kc}",
            f"--authorization-kubeconfig={kc}",
            "--secure-port=0",
            "--leader-elect=false",
        ]
        if self.binaries.version < (1, 23):
            argv.append("--port=0")
        return argv

    def _check_alive(self) -> None:
        for proc in self._procs:
            code = proc.popen.poll()
            if code is not None:
                tail = proc.log_path.read_text(errors="replace").splitlines()[-25:]
                raise ControlPlaneError(f"{proc.name} exited with {code}:\n" + "\n".join(tail))

    def _wait_ready(self, deadline: float) -> None:
        """Ready means /readyz is ok *and* the `default` namespace exists: it appears a moment after
        readyz, and creating anything namespaced before then fails."""
        assert self.pki is not None
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        token = self.users[ADMIN_USER].token
        for path in ("/readyz", "/api/v1/namespaces/default"):
            request = urllib.request.Request(  # noqa: S310 - https URL we built
                self.server + path, headers={"Authorization": f"Bearer {token}"}
            )
            while True:
                self._check_alive()
                try:
                    with urllib.request.urlopen(request, context=context, timeout=2) as response:  # noqa: S310
                        if response.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"timed out waiting for {path} on {self.server}")
                time.sleep(0.05)

    def _stop_processes(self, timeout: float = 3.0) -> None:
        # Clients first (they would log connection errors while the apiserver goes), then the apiserver,
        # then etcd; each group gets SIGTERM and SIGKILL at its share of the deadline.
        order = [("kube-scheduler", "kube-controller-manager"), ("kube-apiserver",), ("etcd",)]
        share = timeout / len(order)
        for names in order:
            group = [p for p in self._procs if p.name in names]
            for proc in group:
                _signal_group(proc.popen, signal.SIGTERM)
            end = time.monotonic() + share
            for proc in group:
                try:
                    proc.popen.wait(max(0.0, end - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _signal_group(proc.popen, signal.SIGKILL)
                    proc.popen.wait()
        self._procs.clear()

    def describe(self) -> dict[str, object]:
        """What `trainsmart dev status` and tools need to know, as plain data."""
        return {
            "server": self.server,
            "etcd": self.etcd_url,
            "kubeconfig": str(self.admin_kubeconfig),
            "pids": {p.name: p.popen.pid for p in self._procs},
            "workdir": str(self.workdir),
        }


def node_lifecycle_flags(version: tuple[int, ...]) -> list[str]:
    """kube-controller-manager flags for fast node-loss detection (see NODE_MONITOR_GRACE_S).

    `--unhealthy-zone-threshold=1`: nodes come and go with test agents, and a stopped agent's nodes stay
    NotReady; by default a zone with more than 2 NotReady nodes and 55 % of them NotReady counts as partly
    disrupted, where a small cluster stops evicting altogether. At 1 only a zone that is wholly NotReady
    stops evictions (the controller then blames its own connectivity, as upstream). `--node-eviction-rate`
    lets two nodes lost together be tainted together, not 10 s apart."""
    flags = [
        f"--node-monitor-period={NODE_MONITOR_PERIOD_S}s",
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE_S}s",
        "--node-eviction-rate=1",
        "--unhealthy-zone-threshold=1",
    ]
    if version < (1, 27):  # only used without taint-based eviction, and gone in 1.27; kept consistent
        flags.append(f"--pod-eviction-timeout={NODE_TOLERATION_S}s")
    return flags


def apiserver_eviction_flags() -> list[str]:
    """kube-apiserver flags: the tolerationSeconds DefaultTolerationSeconds gives every pod for the
    `node.kubernetes.io/not-ready` and `unreachable` NoExecute taints (300 s upstream)."""
    return [
        f"--default-not-ready-toleration-seconds={NODE_TOLERATION_S}",
        f"--default-unreachable-toleration-seconds={NODE_TOLERATION_S}",
    ]


def _signal_group(popen: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, sig)


@contextlib.contextmanager
def running_control_plane(**kwargs: object) -> Iterator[ControlPlane]:
    """`with running_control_plane() as cp:` — started, and always stopped."""
    cp = ControlPlane(**kwargs)  # type: ignore[arg-type]
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


__all__ = [
    "ADMIN_USER",
    "RESTRICTED_USERS",
    "ControlPlane",
    "ControlPlaneError",
    "apiserver_eviction_flags",
    "free_port",
    "node_lifecycle_flags",
]
