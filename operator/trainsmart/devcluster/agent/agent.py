"""`NodeAgent`: the wiring of the node agent, usable in-process (`start()` / `stop()`) or through
`python -m trainsmart.devcluster.agent`.

One thread lists and watches the pods bound to our nodes and hands each to its `PodWorker`; another does
the same for Services, which only feed the sandbox's cluster DNS (hosts files). Lists are repeated every
`resync_interval` seconds (each watch is opened with that timeout), so the agent is level-based: a missed
event, an expired watch (410 Gone) or a dropped connection costs at most one interval. A third thread keeps
the nodes Ready; a fourth takes nodes down and up on request (`node_control.py`: a node that is down
sends no heartbeat, its pods' processes are SIGKILLed and nothing more is written for them). What must
survive the agent itself lives in the state directory: a lock (one agent per state dir), the pids of
running containers (so the next instance kills what a crashed one left instead of running a pod twice)
and the container logs (`agent_log_path`).

Beyond a kubelet's job, the agent is also the local cluster's dynamic volume provisioner (`provisioner.py`,
on unless `provision_volumes=False`): nothing else there turns a PersistentVolumeClaim into a volume, and
a pod whose claim stays unbound is never scheduled. It registers the default `trainsmart-local`
StorageClass and backs each claim with the same per-claim directory the sandbox mounts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from kubernetes import client

from trainsmart.devcluster.agent import node_control
from trainsmart.devcluster.agent.gpus import GpuAllocator
from trainsmart.devcluster.agent.kubeio import (
    FileJournal,
    KubePodApi,
    ListWatch,
    agent_log_path,
    api_client_from_kubeconfig,
    pod_log_paths,
)
from trainsmart.devcluster.agent.nodes import HEARTBEAT_INTERVAL, NodeConfig, NodeRegistrar
from trainsmart.devcluster.agent.pod_runtime_contract import PodRuntime
from trainsmart.devcluster.agent.pod_worker import PodWorker, WorkerSettings
from trainsmart.devcluster.agent.provisioner import VolumeProvisioner

log = logging.getLogger(__name__)

# At most this many hosts-file refreshes per second from pod and Service events: a burst of pods moves
# every few milliseconds, and each refresh looks at all of them (issue 13).
DNS_REFRESH_INTERVAL = 0.1

__all__ = [
    "AgentConfig",
    "NodeAgent",
    "agent_log_path",
    "api_client_from_kubeconfig",
    "build_default_runtime",
    "pod_log_paths",
]


@dataclass(frozen=True)
class AgentConfig:
    state_dir: Path
    nodes: Sequence[NodeConfig]
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    resync_interval: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    shutdown_grace: float = 5.0
    # How long a pod's admission waits for GPUs still held by pods being torn down.
    gpu_admission_wait: float = 5.0
    # Act as the cluster's volume provisioner (claims -> PVs), see the module docstring.
    provision_volumes: bool = True
    # PATH for pods: the agent's own venv first, so `python` in a pod command is the project's.
    pod_path: str = field(
        default_factory=lambda: os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )


class NodeAgent:
    """Registers the configured nodes and runs the pods bound to them until `stop()`. Starts and closes
    the runtime it is given."""

    def __init__(self, api: client.ApiClient, config: AgentConfig, runtime: PodRuntime) -> None:
        self._api, self._config, self._runtime = api, config, runtime
        self._node_names = frozenset(n.name for n in config.nodes)
        self._gpus = GpuAllocator({n.name: n.gpus for n in config.nodes})
        self._pod_api = KubePodApi(api)
        self._journal = FileJournal(config.state_dir)
        self._registrar: NodeRegistrar | None = None
        self._settings: WorkerSettings | None = None
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        # The cluster as DNS sees it: every bound pod and every Service, pushed to the runtime coalesced.
        self._pods: dict[str, dict[str, Any]] = {}
        self._services: dict[str, dict[str, Any]] = {}
        self._dns_dirty = threading.Event()
        self._stopping = threading.Event()
        self._dns_thread: threading.Thread | None = None
        self._down: frozenset[str] = frozenset()  # nodes taken down (see node_control.py)
        self._crashed: list[PodWorker] = []  # workers of down nodes, until they have killed their pods
        self._control_thread: threading.Thread | None = None
        core = client.CoreV1Api(api)
        self._pod_watch = ListWatch(
            "pods",
            core.list_pod_for_all_namespaces,
            self._pods_listed,
            self._pod_event,
            config.resync_interval,
            field_selector="spec.nodeName!=",  # bound pods; ours are picked by node name in _dispatch
        )
        self._service_watch = ListWatch(
            "services",
            core.list_service_for_all_namespaces,
            self._services_listed,
            self._service_event,
            config.resync_interval,
        )
        self._provisioner = (
            VolumeProvisioner(api, config.state_dir, config.resync_interval) if config.provision_volumes else None
        )
        self._lock_file: IO[str] | None = None

    @property
    def node_names(self) -> frozenset[str]:
        return self._node_names

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        """Returns once the nodes are registered and Ready and the pods already bound to them are handed
        to workers. A start that fails half-way undoes itself (processes, sandboxes) and re-raises."""
        state = self._config.state_dir
        lock_file = (state / "agent.lock").open("w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock_file.close()
            raise RuntimeError(f"another node agent is using the state dir {state}") from exc
        self._lock_file = lock_file
        try:
            self._start_locked(state)
        except BaseException:
            self.stop()
            raise

    def _start_locked(self, state: Path) -> None:
        killed = self._journal.kill_leftovers()
        if killed:
            log.warning("killed %d container processes left by a previous agent instance", killed)
        self._runtime.start()
        # Nodes are addressed where their pods reach the host (the sandbox's bridge), unless configured.
        nodes = [n if n.address else replace(n, address=self._runtime.host_ip) for n in self._config.nodes]
        self._settings = WorkerSettings(
            state_dir=state,
            host_ips={n.name: n.address or "127.0.0.1" for n in nodes},
            pod_path=self._config.pod_path,
            backoff_initial=self._config.backoff_initial,
            backoff_max=self._config.backoff_max,
            shutdown_grace=self._config.shutdown_grace,
            gpu_admission_wait=self._config.gpu_admission_wait,
        )
        self._registrar = NodeRegistrar(self._api, nodes, interval=self._config.heartbeat_interval)
        self._registrar.register()
        self._registrar.start()
        if self._provisioner is not None:
            self._provisioner.start()
        self._stopping.clear()
        self._dns_thread = threading.Thread(target=self._dns_loop, name="cluster-dns", daemon=True)
        self._dns_thread.start()
        self._control_thread = threading.Thread(target=self._control_loop, name="node-control", daemon=True)
        self._control_thread.start()
        self._service_watch.start()
        self._pod_watch.start()

    def stop(self, delete_nodes: bool = False) -> None:
        """Stop watching, stop every pod's processes (a short grace each), close the runtime. Pod objects
        keep their last status, as with a kubelet that goes away. `delete_nodes` is for throw-away agents
        whose nodes must not attract pods afterwards. Provisioned volumes stay (they outlive the agent)."""
        if self._provisioner is not None:
            self._provisioner.stop()
        self._pod_watch.stop()
        self._service_watch.stop()
        self._stopping.set()
        self._dns_dirty.set()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stop()
        for worker in workers:
            worker.join(timeout=self._config.shutdown_grace + 5)
        if self._dns_thread is not None:
            self._dns_thread.join(timeout=5)
        if self._control_thread is not None:
            self._control_thread.join(timeout=5)
        if self._registrar is not None:
            self._registrar.stop()
            if delete_nodes:
                self._registrar.delete_nodes()
        self._pod_api.close()
        self._runtime.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- pods ------------------------------------------------------------------------------------------

    def _pods_listed(self, pods: list[dict[str, Any]]) -> None:
        """Level-based: every listed pod to its worker; workers whose pod is absent learn it is gone (a
        DELETED event we missed), before new pods are dispatched, so that a new pod bound to a gone pod's
        GPUs waits for them instead of failing admission; finished workers are forgotten."""
        with self._lock:
            _replace_all(self._pods, pods)
            missing = [w for uid, w in self._workers.items() if uid not in self._pods]
        self._dns_dirty.set()
        for worker in missing:
            worker.deleted()
        for pod in pods:
            self._dispatch(pod, deleted=False)
        with self._lock:
            for uid in [uid for uid, w in self._workers.items() if w.finalized]:
                del self._workers[uid]

    def _pod_event(self, kind: str, pod: dict[str, Any]) -> None:
        self._remember(self._pods, kind, pod)
        self._dispatch(pod, deleted=kind == "DELETED")

    def _dispatch(self, pod: dict[str, Any], deleted: bool) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self._node_names:
            return
        uid = pod["metadata"]["uid"]
        with self._lock:
            if node in self._down:
                return  # a dead machine sees nothing
            worker = self._workers.get(uid)
            if worker is None:
                if deleted:
                    return
                assert self._settings is not None
                worker = PodWorker(
                    pod,
                    api=self._pod_api,
                    runtime=self._runtime,
                    gpus=self._gpus,
                    journal=self._journal,
                    settings=self._settings,
                )
                self._workers[uid] = worker
        if deleted:
            worker.deleted()
        else:
            worker.update(pod)

    # -- nodes going down and up ---------------------------------------------------------------------

    def _control_loop(self) -> None:
        while not self._stopping.wait(node_control.POLL_SECONDS):
            wanted = node_control.read_down_nodes(self._config.state_dir)
            down, up = node_control.changes(self._down, wanted, self._node_names)
            for name in down:
                self.node_down(name)
            for name in up:
                try:
                    self.node_up(name)
                except Exception:  # the next poll tries again
                    log.exception("bringing node %s up failed", name)

    def node_down(self, name: str) -> None:
        """`name` fails like a machine losing power: heartbeats stop, its pods' processes are SIGKILLed,
        nothing more is written for them (their objects keep their last status)."""
        assert self._registrar is not None
        self._registrar.set_down(name)
        with self._lock:
            self._down = self._down | {name}
            lost = {uid: w for uid, w in self._workers.items() if w.node == name}
            for uid in lost:
                del self._workers[uid]
            self._crashed = [w for w in self._crashed if not w.finalized] + list(lost.values())
        for worker in lost.values():
            worker.crash()
        log.warning("node %s is down: no heartbeats; %d pods' processes killed", name, len(lost))

    def node_up(self, name: str) -> None:
        """`name` boots again: it registers afresh, and its pods are taken up as a restarted kubelet does
        (deletions finished, dead containers handed to the restart policy)."""
        assert self._registrar is not None
        with self._lock:
            crashed = [w for w in self._crashed if w.node == name]
        for worker in crashed:  # a pod's processes are dead before the "rebooted" node sees it again
            worker.join(timeout=10)
        self._registrar.set_up(name)
        with self._lock:
            self._down = self._down - {name}
            pods = [p for p in self._pods.values() if (p.get("spec") or {}).get("nodeName") == name]
        for pod in pods:
            self._dispatch(pod, deleted=False)
        log.warning("node %s is up again (rebooted): %d pods bound to it", name, len(pods))

    # -- services, for DNS -----------------------------------------------------------------------------

    def _services_listed(self, services: list[dict[str, Any]]) -> None:
        with self._lock:
            _replace_all(self._services, services)
        self._dns_dirty.set()

    def _service_event(self, kind: str, service: dict[str, Any]) -> None:
        self._remember(self._services, kind, service)

    def _remember(self, seen: dict[str, dict[str, Any]], kind: str, obj: dict[str, Any]) -> None:
        """Keep the last seen pods and Services by UID (cluster DNS is built from them), then ask for a
        hosts-file refresh."""
        with self._lock:
            if kind == "DELETED":
                seen.pop(obj["metadata"]["uid"], None)
            else:
                seen[obj["metadata"]["uid"]] = obj
        self._dns_dirty.set()

    def _dns_loop(self) -> None:
        """Coalesce bursts of pod and Service changes into one hosts-file refresh each, off the watch
        threads (a refresh rewrites every pod's hosts file)."""
        while True:
            self._dns_dirty.wait()
            if self._stopping.is_set():
                return
            self._dns_dirty.clear()
            with self._lock:
                pods, services = list(self._pods.values()), list(self._services.values())
            try:
                self._runtime.cluster_changed(pods, services)
            except Exception:
                log.exception("refreshing the pods' hosts files failed")
            self._stopping.wait(DNS_REFRESH_INTERVAL)  # what changes meanwhile waits in _dns_dirty


def _replace_all(seen: dict[str, dict[str, Any]], objs: list[dict[str, Any]]) -> None:
    """A relist replaces what was seen, in place: `_remember` may hold the same dict."""
    seen.clear()
    seen.update((obj["metadata"]["uid"], obj) for obj in objs)


def build_default_runtime(state_dir: Path, api: client.ApiClient) -> PodRuntime:
    """The real sandbox: a network namespace per pod on a bridge, volumes at their mount paths, hosts-file
    DNS; host networking where that is impossible (not root). `NodeAgent.start()` starts it."""
    from trainsmart.devcluster.agent.sandbox.runtime_impl import build_sandbox_runtime

    return build_sandbox_runtime(state_dir, api)
