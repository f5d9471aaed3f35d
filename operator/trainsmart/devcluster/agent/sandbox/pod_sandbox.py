"""One pod's sandbox (the `PodSandbox` of `pod_runtime_contract.py`): namespaces in, processes out.

`NetnsSandbox` is the real one: network + UTS namespaces per pod, a mount namespace per container run,
all pinned as files in the manager's `ns/` directory (see `manager.py` for why pins). The process is
started by `nsenter` straight into those namespaces (and `setpriv` for run-as), so no shell stands
between the agent and the container: the argv gets exactly the env it was given, and its pid is the
container's main pid. `HostSandbox` is the no-root fallback.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import pwd
import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from trainsmart.devcluster.agent.dns import HostsFile, PodRecord
from trainsmart.devcluster.agent.pod_runtime_contract import ContainerLaunch, Mount
from trainsmart.devcluster.agent.sandbox import mount_plan as sm
from trainsmart.devcluster.agent.sandbox import pod_network as sn
from trainsmart.devcluster.agent.sandbox.processes import LocalProcess, kill_pids, pids_in_namespace

log = logging.getLogger(__name__)

_CONTAINER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


class SandboxError(OSError):
    """A sandbox could not be set up or a container could not be started; the message says why.

    An `OSError`, so the lifecycle reports a failed start as a runtime would (StartError, exit 128).
    """


class SandboxHost(Protocol):
    """What a pod sandbox needs from its manager."""

    root: Path
    bridge: str
    network: sn.PodNetwork
    tools: sm.Tools

    @property
    def ns_dir(self) -> Path: ...

    def hosts_text(self, owner: PodRecord) -> str: ...

    def record_pid(self, key: str, pid: int, started: int | None) -> None: ...

    def forget(self, key: str) -> None: ...

    def stop_dns(self, key: str) -> None: ...


def run_tool(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=CLEAN_ENV, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"{what} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()}")


def remove_tree(path: Path) -> None:
    """rmtree, but never through a mount point (a bind mount would take the host's data with it)."""
    points = sm.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    if any(sm.is_under(p, str(path)) for p in points):
        raise SandboxError(f"refusing to remove {path}: something is still mounted below it")
    shutil.rmtree(path, ignore_errors=True)


def default_ids(uid: int | None, gid: int | None) -> tuple[int | None, int | None]:
    """The runtime's defaults: no runAsGroup -> the user's primary group if known, else 0."""
    if uid is not None and gid is None:
        try:
            gid = pwd.getpwuid(uid).pw_gid
        except KeyError:
            gid = 0
    return uid, gid


def _spawn(
    argv: list[str],
    launch: ContainerLaunch,
    *,
    cwd: str | None = None,
    user: int | None = None,
    group: int | None = None,
) -> LocalProcess:
    """Start `argv` with exactly the launch's env, output appended to the container's log, as the leader
    of a new session (so the whole group can be signalled)."""
    path = launch.log_path
    path.parent.mkdir(parents=True, exist_ok=True)
    logfd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        popen = subprocess.Popen(
            argv,
            env=dict(launch.env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=logfd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            user=user,
            group=group,
        )
    finally:
        os.close(logfd)
    return LocalProcess(popen)


class NetnsSandbox:
    """A pod with its own network, UTS and (per container) mount namespaces."""

    def __init__(
        self, host: SandboxHost, record: PodRecord, names: sn.PodNetNames, ip: str, groups: tuple[int, ...]
    ) -> None:
        self.host, self.record, self.names, self._ip, self.groups = host, record, names, ip, groups
        self.dir = host.root / "pods" / names.key
        self.net_pin = host.ns_dir / f"{names.key}.net"
        self.uts_pin = host.ns_dir / f"{names.key}.uts"
        self.hosts: HostsFile | None = None
        self.owner = replace(record, ip=ip)
        self._procs: dict[str, LocalProcess] = {}
        self._closed = False

    @property
    def ip(self) -> str:
        return self._ip

    @property
    def hosts_path(self) -> Path:
        return self.dir / "hosts"

    def setup(self) -> None:
        """Namespaces (hostname set inside), veth into the bridge, address and route, hosts file."""
        t = self.host.tools
        self.dir.mkdir(parents=True, exist_ok=True)
        self.net_pin.touch()
        self.uts_pin.touch()
        hostname = self.record.hostname[:63]
        run_tool(
            [t.unshare, f"--net={self.net_pin}", f"--uts={self.uts_pin}", t.hostname, hostname],
            "creating the pod's namespaces",
        )
        try:
            sn.run_ip_batch(sn.host_side_commands(self.names, self.host.bridge, self.net_pin), ip=t.ip)
            inside = sn.pod_side_commands(ipaddress.IPv4Address(self._ip), self.host.network)
            sn.run_ip_batch(inside, ip=t.ip, nsenter_net=self.net_pin, nsenter=t.nsenter)
        except sn.NetworkSetupError as exc:
            raise SandboxError(str(exc)) from exc
        hosts = HostsFile(self.hosts_path)
        hosts.create(self.host.hosts_text(self.owner))
        self.hosts = hosts  # only now may concurrent refreshes write to it

    def launch(self, launch: ContainerLaunch) -> LocalProcess:
        if self._closed:
            raise SandboxError("the pod's sandbox is closed")
        name = launch.container_name
        if not _CONTAINER_NAME.match(name):
            raise SandboxError(f"invalid container name {name!r}")
        mnt_pin = self._prepare_filesystem(launch)
        t = self.host.tools
        argv = [t.nsenter, f"--net={self.net_pin}", f"--uts={self.uts_pin}", f"--mount={mnt_pin}"]
        argv += [f"--wdns={launch.working_dir or '/'}", "--"]
        uid, gid = default_ids(launch.run_as_user, launch.run_as_group)
        if uid is not None or gid is not None:
            argv += [t.setpriv]
            argv += [f"--reuid={uid}"] if uid is not None else []
            argv += [f"--regid={gid}"] if gid is not None else []
            groups = sorted(set(self.groups))
            argv += [f"--groups={','.join(map(str, groups))}"] if groups else ["--clear-groups"]
            argv += ["--"]
        argv += launch.argv
        proc = _spawn(argv, launch)
        self._procs[name] = proc
        self.host.record_pid(self.names.key, proc.pid, proc.started_at)
        return proc

    def _prepare_filesystem(self, launch: ContainerLaunch) -> Path:
        """A fresh, pinned mount namespace for this run of the container (see `mount_plan.py`)."""
        cdir = self.dir / "containers" / launch.container_name
        root = cdir / "root"
        root.mkdir(parents=True, exist_ok=True)
        mnt_pin = self.host.ns_dir / f"{self.names.key}.{launch.container_name}.mnt"
        sm.sys_umount(str(mnt_pin))  # the namespace of a previous run of this container
        mounts = list(launch.mounts)
        if not any(sm.normalize_container_path(x.container_path) == "/etc/hosts" for x in mounts):
            mounts.append(Mount(host_path=self.hosts_path, container_path="/etc/hosts"))
        message = launch.termination_message
        # A volume mounted at that very path wins, as it would over the kubelet's bind.
        if message is not None and not any(x.container_path == message.container_path for x in mounts):
            mounts.append(message)
        try:
            plan = sm.plan_setup(
                str(root),
                mounts,
                [str(self.host.ns_dir)],
                sm.host_fs_view(),
                ensure_dirs=[launch.working_dir or "/"],
                keep_visible=sm.runtime_paths(),
            )
        except sm.MountPlanError as exc:
            raise SandboxError(str(exc)) from exc
        for d in plan.host_dirs:
            d.mkdir(parents=True, exist_ok=True)
        for f in plan.host_files:
            f.parent.mkdir(parents=True, exist_ok=True)
            f.touch()
        script, files = sm.render_script(plan, cdir, self.host.tools)
        for fname, text in files.items():
            (cdir / fname).write_text(text)
        mnt_pin.touch()
        t = self.host.tools
        run_tool(
            [t.unshare, f"--mount={mnt_pin}", "--propagation", "private", t.sh, "-c", script],
            f"preparing the filesystem of container {launch.container_name}",
        )
        return mnt_pin

    def kill_all(self) -> None:
        """SIGKILL every container (and anything else inside the pod's network namespace)."""
        for proc in self._procs.values():
            proc.terminate(0)
        kill_pids(pids_in_namespace(self.net_pin, "net"))

    def close(self) -> None:
        """Kill stragglers, delete the veth, unpin every namespace, remove the pod's directory."""
        if self._closed:
            return
        self._closed = True
        self.host.stop_dns(self.names.key)  # no hosts-file rewrite may race with the removal below
        stray = pids_in_namespace(self.net_pin, "net")
        if stray:
            log.warning("pod %s/%s: killing %d leftover processes", self.record.namespace, self.record.name, len(stray))
            kill_pids(stray)
        if sn.link_exists(self.names.veth):
            sn.run_ip_batch([f"link del {self.names.veth}"], ip=self.host.tools.ip, force=True)
        for pin in self.host.ns_dir.glob(f"{self.names.key}.*"):
            sm.sys_umount(str(pin))
            pin.unlink(missing_ok=True)
        remove_tree(self.dir)
        self.host.forget(self.names.key)


class HostSandbox:
    """Host-network fallback (no root): no namespaces; the process runs directly with the given env.
    The termination message file is not placed (that needs a mount namespace), so messages stay empty."""

    def __init__(self, host: SandboxHost, record: PodRecord, key: str) -> None:
        self.host, self.record, self.key = host, record, key
        self._procs: list[LocalProcess] = []

    @property
    def ip(self) -> str:
        return "127.0.0.1"

    def launch(self, launch: ContainerLaunch) -> LocalProcess:
        for mount in launch.mounts:
            if os.path.realpath(mount.host_path) != os.path.realpath(mount.container_path):
                raise SandboxError(
                    f"cannot mount {mount.host_path} at {mount.container_path} without root "
                    "(mount namespaces); run the node agent as root"
                )
        uid, gid = default_ids(launch.run_as_user, launch.run_as_group)
        proc = _spawn(
            launch.argv,
            launch,
            cwd=launch.working_dir,
            user=uid if uid is not None and uid != os.geteuid() else None,
            group=gid if gid is not None and gid != os.getegid() else None,
        )
        self._procs.append(proc)
        self.host.record_pid(self.key, proc.pid, proc.started_at)
        return proc

    def kill_all(self) -> None:
        for proc in self._procs:
            proc.terminate(0)

    def close(self) -> None:
        self.host.forget(self.key)
