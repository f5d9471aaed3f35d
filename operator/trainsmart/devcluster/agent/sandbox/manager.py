"""How a pod becomes local processes with their own network identity, hosts file and volumes.

`SandboxManager` sets up the shared pod network once (a Linux bridge whose address is the gateway the
pods reach the host on) and creates one sandbox per pod:

* network: a network namespace and a UTS namespace (hostname = the pod's hostname, which is what
  torch's gloo resolves to pick its interface), pinned as files under `<state>/sandbox/ns/`; a veth pair
  into the bridge; an address from a round-robin IPAM persisted in `<state>/sandbox/state.json`;
* each container: a mount namespace pinned beside them and prepared by a short `sh` script (see
  `mount_plan`); the process itself is then started by `nsenter` into the three namespaces and, for
  `run_as_user`/`run_as_group`, `setpriv` (with the pod's `fsGroup`/`supplementalGroups`). So the argv
  runs with exactly the given env: no shell ever sits between the agent and the container's process.

Why pins rather than `ip netns`: nothing is added outside the agent's state dir (no shared
`/run/netns` mount whose copies would keep deleted namespaces alive), and a crashed agent's leftovers
are all found in one directory: `cleanup_all()` (and `start()`) unmount and remove every pin there,
every `<prefix>v*` veth on our bridge, and kill what recorded or namespaced processes remain.
Debugging a pod: `nsenter --net=<state>/sandbox/ns/<key>.net ss -ltn`. One manager per bridge on the
machine (a lock in /run/lock; the lock files stay, empty): `runtime_impl` picks the first free slot.

Hosts files: `set_cluster_view` rewrites them at once (the agent calls it coalesced); a sandbox created or
closed only asks the manager's `hosts-refresh` thread for a rewrite, so a burst of pods costs a few
refreshes, not one per pod under the lock every create and close needs (issue 13: with 300 pods that was
most of the agent's CPU, and what kept finished pods Running).

Host requirements and limits: root, iproute2 and util-linux (`unshare`, `nsenter`, `setpriv`,
`pivot_root`, `mount` with `-T`). Pods reach each other and the host, not the outside world (no NAT).
On hosts whose firewall drops bridged traffic (Docker sets `FORWARD DROP` with
`bridge-nf-call-iptables=1`), allow it: `iptables -I FORWARD -i tsbr0 -o tsbr0 -j ACCEPT`.

Without root, or where namespaces cannot be created, the manager falls back to host networking (pod IP
127.0.0.1, a warning at start): pods then share the host's ports (two pods cannot both bind 29500),
`/etc/hosts` is not replaced (cluster names do not resolve) and volumes are only visible at their host
paths, so mounts at other container paths make the launch fail with a clear error.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

from trainsmart.devcluster.agent.dns import (
    DEFAULT_DOMAIN,
    PodRecord,
    ServiceRecord,
    build_hosts_text,
    named_pods,
    pod_record,
    service_record,
)
from trainsmart.devcluster.agent.pod_runtime_contract import PodSandbox
from trainsmart.devcluster.agent.podenv import as_api_dict
from trainsmart.devcluster.agent.sandbox import mount_plan as sm
from trainsmart.devcluster.agent.sandbox import pod_network as sn
from trainsmart.devcluster.agent.sandbox.pod_sandbox import (
    HostSandbox,
    NetnsSandbox,
    SandboxError,
    remove_tree,
    run_tool,
)
from trainsmart.devcluster.agent.sandbox.processes import kill_pids, kill_recorded, pids_in_namespace

log = logging.getLogger(__name__)

__all__ = ["BridgeBusyError", "HostSandbox", "NetnsSandbox", "SandboxError", "SandboxManager"]

Isolation = Literal["auto", "netns", "host"]
BRIDGE_LOCK_DIR = "/run/lock"
# Creates and closes in a burst ask for hosts-file refreshes; at most this many per second are made.
HOSTS_REFRESH_INTERVAL = 0.1


class BridgeBusyError(SandboxError):
    """The bridge (or its CIDR) is taken by another agent or network; try another one."""


class SandboxManager:
    """Creates pod sandboxes on one shared bridge; owns everything under `<state_dir>/sandbox`.

    `prefix` and `bridge` (and `pod_cidr`) keep two managers on one machine apart (the test suite
    beside `trainsmart dev up`); one state dir serves one manager at a time (a lock file says so).
    """

    def __init__(
        self,
        state_dir: Path,
        *,
        pod_cidr: str = "10.244.0.0/16",
        bridge: str = "tsbr0",
        prefix: str = "ts",
        isolation: Isolation = "auto",
        cluster_domain: str = DEFAULT_DOMAIN,
    ) -> None:
        sn.validate_prefix(prefix)
        if len(bridge) > sn.IFNAMSIZ:
            raise ValueError(f"bridge name {bridge!r} is longer than {sn.IFNAMSIZ} characters")
        self.root = Path(state_dir).resolve() / "sandbox"
        self.network = sn.PodNetwork.parse(pod_cidr)
        self.bridge, self.prefix, self.domain = bridge, prefix, cluster_domain
        self.tools = sm.Tools()
        self.isolated = False
        self._isolation: Isolation = isolation
        self._lock = threading.RLock()
        self._sandboxes: dict[str, NetnsSandbox | HostSandbox] = {}
        self._state: dict[str, Any] = {"pods": {}, "ipam": {"last": None}}
        self._view: tuple[list[PodRecord], list[ServiceRecord]] = ([], [])
        self._lockfile: int | None = None
        self._bridge_lock: int | None = None
        self.extra_hosts: dict[str, tuple[str, ...]] = {}
        """Address -> names added to every pod's hosts file (names the agent itself serves)."""
        # Hosts-file writes (and `stop_dns`) take this lock, not `_lock`: a refresh of every pod's file
        # must not hold up creates, launches and closes.
        self._hosts_lock = threading.Lock()
        self._hosts_wanted = threading.Event()
        self._refresher: threading.Thread | None = None
        self._refresher_stop = False
        self._refresher_lock = threading.Lock()
        self._state_version = self._state_written = 0
        self._state_file_lock = threading.Lock()

    @property
    def gateway_ip(self) -> str:
        """Where pods reach the host (the bridge's address); 127.0.0.1 in host-network mode."""
        return str(self.network.gateway) if self.isolated else "127.0.0.1"

    @property
    def ns_dir(self) -> Path:
        return self.root / "ns"

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the state dir, clean up after a crashed predecessor, set up the bridge. Idempotent."""
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            if self._lockfile is None:
                fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    os.close(fd)
                    raise SandboxError(f"another node agent is using {self.root}") from exc
                self._lockfile = fd
            self._load_state()
            try:
                if self._isolation != "host" and os.geteuid() == 0:
                    self._lock_bridge()
                self._cleanup_leftovers()
                self.isolated = self._isolation != "host" and self._setup_isolation()
            except BridgeBusyError:
                self._release_locks()
                raise
            if not self.isolated:
                log.warning(
                    "node agent sandbox: HOST NETWORKING (pod IP 127.0.0.1): pods share the host's ports "
                    "and /etc/hosts, cluster DNS names do not resolve, volumes only appear at their host "
                    "paths. Run the agent as root for per-pod network namespaces."
                )
            self._save_state()

    def _lock_bridge(self) -> None:
        """One manager per bridge on the machine, whatever its state dir: a second one would hand out
        the same addresses and remove the first one's veths as leftovers."""
        if self._bridge_lock is not None:
            return
        Path(BRIDGE_LOCK_DIR).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(BRIDGE_LOCK_DIR) / f"trainsmart-{self.bridge}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            self._release_locks()
            raise BridgeBusyError(f"bridge {self.bridge} is used by another node agent") from exc
        self._bridge_lock = fd

    def _release_locks(self) -> None:
        for fd in (self._lockfile, self._bridge_lock):
            if fd is not None:
                os.close(fd)
        self._lockfile = self._bridge_lock = None

    def _setup_isolation(self) -> bool:
        if os.geteuid() != 0:
            if self._isolation == "netns":
                raise SandboxError("per-pod network namespaces need root")
            return False
        try:
            self.tools = sm.Tools.find()
            sn.check_batch_safe([self.ns_dir])
            self.ns_dir.mkdir(exist_ok=True)
            added = sm.make_private_mount(self.ns_dir)
            self._state["ns_mounted"] = added or bool(self._state.get("ns_mounted"))
            probe = self.ns_dir / "probe.net"
            probe.touch()
            try:
                run_tool([self.tools.unshare, f"--net={probe}", "true"], "creating a network namespace")
            finally:
                sm.sys_umount(str(probe))
                probe.unlink(missing_ok=True)
            clash = sn.overlapping_routes(self.network, Path("/proc/net/route").read_text(), self.bridge)
            if clash:
                raise BridgeBusyError(f"pod CIDR {self.network.cidr} overlaps routes via {', '.join(clash)}")
            exists = sn.link_exists(self.bridge)
            if not exists:
                self._state["bridge_created"] = True
                self._save_state()
            sn.run_ip_batch(sn.bridge_up_commands(self.bridge, self.network, exists=exists), ip=self.tools.ip)
            return True
        except BridgeBusyError:
            raise
        except (OSError, sn.NetworkSetupError) as exc:
            if self._isolation == "netns":
                raise SandboxError(f"cannot set up pod networking: {exc}") from exc
            log.warning("node agent sandbox: network namespaces unavailable (%s)", exc)
            return False

    def cleanup_all(self) -> None:
        """Kill and remove every sandbox, then the bridge (if ours) and the pin mount. Idempotent."""
        self._stop_refresher()
        with self._lock:
            for sandbox in list(self._sandboxes.values()):
                sandbox.kill_all()
                sandbox.close()
            self._load_state()
            self._cleanup_leftovers()
            if self._state.pop("bridge_created", False) and sn.link_exists(self.bridge):
                sn.run_ip_batch([f"link del {self.bridge}"], ip=self.tools.ip, force=True)
            if self._state.pop("ns_mounted", False):
                sm.sys_umount(str(self.ns_dir))
            self._state["ipam"] = {"last": None}
            if self.root.exists():
                self._save_state()
            self._release_locks()

    def __enter__(self) -> SandboxManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup_all()

    def _cleanup_leftovers(self) -> None:
        """Remove what a previous run recorded or left in our directories (never a live sandbox)."""
        live = set(self._sandboxes)
        for key, rec in list(self._state["pods"].items()):
            if key in live:
                continue
            kill_recorded(tuple(p) for p in rec.get("pids", []))
            kill_pids(pids_in_namespace(self.ns_dir / f"{key}.net", "net"))
            if rec.get("veth") and sn.link_exists(rec["veth"]):
                sn.run_ip_batch([f"link del {rec['veth']}"], ip=self.tools.ip, force=True)
            del self._state["pods"][key]
        if self.ns_dir.is_dir():
            for pin in sorted(self.ns_dir.iterdir()):
                if pin.name.split(".")[0] not in live:
                    sm.sys_umount(str(pin))
                    pin.unlink(missing_ok=True)
        brif = Path(f"/sys/class/net/{self.bridge}/brif")
        if brif.is_dir():
            owned = {s.names.veth for s in self._sandboxes.values() if isinstance(s, NetnsSandbox)}
            for link in brif.iterdir():
                if link.name.startswith(f"{self.prefix}v") and link.name not in owned:
                    sn.run_ip_batch([f"link del {link.name}"], ip=self.tools.ip, force=True)
        pods_dir = self.root / "pods"
        if pods_dir.is_dir():
            for d in pods_dir.iterdir():
                if d.name not in live:
                    remove_tree(d)

    # ---- state ------------------------------------------------------------------------------------

    def _load_state(self) -> None:
        path = self.root / "state.json"
        if path.exists():
            loaded = json.loads(path.read_text())
            loaded.setdefault("pods", {})
            loaded.setdefault("ipam", {"last": None})
            loaded["pods"].update({k: v for k, v in self._state["pods"].items() if k in self._sandboxes})
            self._state = loaded

    def _save_state(self) -> None:
        """Atomically (the state file is never bind-mounted, so replacing it is fine)."""
        self._write_state(self._snapshot_state())

    def _snapshot_state(self) -> tuple[int, str]:
        """The state as it is now (under `_lock`), numbered, for `_write_state` after the lock is let go:
        at every create, launch and close, file I/O under `_lock` queued a burst of pods behind it (issue
        13). Compact: with an indent `json` encodes in pure Python."""
        self._state_version += 1
        return self._state_version, json.dumps(self._state, sort_keys=True, separators=(",", ":"))

    def _write_state(self, snapshot: tuple[int, str]) -> None:
        """Write a snapshot unless a newer one is on disk already."""
        version, text = snapshot
        with self._state_file_lock:
            if version <= self._state_written:
                return
            path = self.root / "state.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
            self._state_written = version

    def record_pid(self, key: str, pid: int, started: int | None) -> None:
        """Remember a container's (pid, start time), so a crashed agent's processes can be killed."""
        with self._lock:
            rec = self._state["pods"].get(key)
            if rec is None or started is None:
                return
            rec.setdefault("pids", []).append([pid, started])
            snapshot = self._snapshot_state()
        self._write_state(snapshot)

    # ---- sandboxes --------------------------------------------------------------------------------

    def create(self, pod: Any) -> NetnsSandbox | HostSandbox:
        """The sandbox of `pod` (API dict or client model); the existing one for a known UID.

        Raises `SandboxError` when the pod's network cannot be set up (nothing is left behind then).
        """
        body = as_api_dict(pod)
        record = pod_record(body)
        if record is None or not record.uid:
            raise SandboxError("the pod has no UID or has already finished")
        names = sn.pod_net_names(self.prefix, record.uid)
        security = (body.get("spec") or {}).get("securityContext") or {}
        groups = [security.get("fsGroup"), *(security.get("supplementalGroups") or [])]
        with self._lock:
            if self._lockfile is None:
                raise SandboxError("SandboxManager.start() was not called")
            if names.key in self._sandboxes:
                return self._sandboxes[names.key]
            self._state["pods"][names.key] = {"uid": record.uid, "ip": None, "veth": None, "pids": []}
            if not self.isolated:
                self._save_state()
                host = HostSandbox(self, record, names.key)
                self._sandboxes[names.key] = host
                return host
            used = [r["ip"] for r in self._state["pods"].values() if r.get("ip")]
            ip = sn.allocate_ip(self.network, used, self._state["ipam"].get("last"))
            self._state["ipam"]["last"] = str(ip)
            self._state["pods"][names.key].update(ip=str(ip), veth=names.veth)
            snapshot = self._snapshot_state()
            sandbox = NetnsSandbox(self, record, names, str(ip), tuple(int(g) for g in groups if g is not None))
            self._sandboxes[names.key] = sandbox
        self._write_state(snapshot)  # before the veth exists, so a crashed agent's successor finds it
        try:
            sandbox.setup()
        except Exception:
            sandbox.close()
            raise
        self._request_refresh()  # its peers learn its address; its own file is complete already
        return sandbox

    def get(self, pod_uid: str) -> NetnsSandbox | HostSandbox | None:
        return self._sandboxes.get(sn.pod_key(pod_uid))

    def sandboxes(self) -> list[NetnsSandbox | HostSandbox]:
        return list(self._sandboxes.values())

    def forget(self, key: str) -> None:
        """Called by a sandbox's close(): drop it, release its address, update the others' DNS."""
        snapshot = None
        with self._lock:
            self._sandboxes.pop(key, None)
            if self._state["pods"].pop(key, None) is not None:
                snapshot = self._snapshot_state()
        if snapshot is not None:
            self._write_state(snapshot)
        self._request_refresh()

    # ---- DNS --------------------------------------------------------------------------------------

    def set_cluster_view(self, pods: Iterable[Any], services: Iterable[Any]) -> None:
        """Give the latest pods and Services (API dicts or client models) and rewrite hosts files.

        Call it whenever pods or Services change; pods of this manager are known with their address
        even before their status says so, so a new pod's name resolves without waiting for the API.
        """
        pod_records = [r for r in (pod_record(p) for p in pods) if r is not None]
        self._view = (pod_records, [service_record(s) for s in services])
        self.refresh_hosts()

    def hosts_text(self, owner: PodRecord) -> str:
        return build_hosts_text(owner, self._named_pods(), self._view[1], self.domain, self.extra_hosts)

    def _named_pods(self) -> list[PodRecord]:
        """The view's pods, with the address of ours whose status does not say it yet, less those no
        hosts file can name (no address, or neither a subdomain nor a Service selecting them)."""
        pods, services = self._view
        local = {s.record.uid: s.ip for s in list(self._sandboxes.values()) if isinstance(s, NetnsSandbox)}
        merged = [replace(p, ip=local[p.uid]) if not p.ip and p.uid in local else p for p in pods]
        return named_pods(merged, services)

    def refresh_hosts(self) -> None:
        """Rewrite every hosts file whose text changed (the view's pods are filtered once, not per file).
        One refresh at a time, so an older text never overwrites a newer one."""
        with self._hosts_lock:
            pods, services = self._named_pods(), self._view[1]
            for sandbox in list(self._sandboxes.values()):
                if isinstance(sandbox, NetnsSandbox) and sandbox.hosts is not None:
                    try:
                        text = build_hosts_text(sandbox.owner, pods, services, self.domain, self.extra_hosts)
                        sandbox.hosts.write(text)
                    except OSError as exc:  # one broken file must not keep the others stale
                        log.warning("pod %s: cannot update its hosts file: %s", sandbox.record.name, exc)

    def _request_refresh(self) -> None:
        """A refresh soon, on the manager's thread; requests that come while one runs make one more.
        Not under `_lock`: every create and close asks, and must not queue for it."""
        if self._refresher is None:
            with self._refresher_lock:
                if self._refresher_stop:
                    return
                if self._refresher is None:
                    self._refresher = threading.Thread(target=self._refresh_loop, name="hosts-refresh", daemon=True)
                    self._refresher.start()
        self._hosts_wanted.set()

    def _refresh_loop(self) -> None:
        while True:
            self._hosts_wanted.wait()
            if self._refresher_stop:
                return
            self._hosts_wanted.clear()
            try:
                self.refresh_hosts()
            except Exception:
                log.exception("refreshing the pods' hosts files failed")
            time.sleep(HOSTS_REFRESH_INTERVAL)  # what is requested meanwhile makes one refresh after it

    def _stop_refresher(self) -> None:
        with self._refresher_lock:
            self._refresher_stop = True
            thread, self._refresher = self._refresher, None
        self._hosts_wanted.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._refresher_stop = False

    def stop_dns(self, key: str) -> None:
        """A closing sandbox's hosts file is no longer rewritten (under the lock refreshes hold)."""
        with self._hosts_lock:
            sandbox = self._sandboxes.get(key)
            if isinstance(sandbox, NetnsSandbox):
                sandbox.hosts = None


def _check_protocol(netns: NetnsSandbox, host: HostSandbox) -> tuple[PodSandbox, PodSandbox]:
    """Never called: makes mypy check both sandboxes against the contract in `pod_runtime_contract.py`."""
    return netns, host
