"""Simulated GPU nodes: their manifests (pure) and their registration and heartbeats (I/O).

A node is only as schedulable as its object says: the real kube-scheduler places pods by `allocatable`
(including `nvidia.com/gpu`), taints and labels, and the real node-lifecycle controller marks a node
NotReady, then taints and evicts its pods, when neither its Lease nor its Ready condition moves for
`node-monitor-grace-period` (10 s in the local cluster, see `controlplane.py`). So this module writes what a
kubelet plus the NVIDIA device plugin and GPU Feature Discovery would: capacity, GFD labels, the
`nvidia.com/gpu=present:NoSchedule` taint GPU node pools carry, an InternalIP, and heartbeats: a Lease
renewal every `interval` seconds and a NodeStatus refresh every `STATUS_INTERVAL` (as a kubelet splits
them). A node taken down (`node_control.py`) gets neither until it is brought up again.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from trainsmart import __version__
from trainsmart.devcluster.agent.gpus import GPU_RESOURCE
from trainsmart.devcluster.agent.podstatus import rfc3339

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"
LEASE_DURATION_SECONDS = 40
HEARTBEAT_INTERVAL = 2.0
"""Seconds between Lease renewals: well inside the local cluster's 10 s node-monitor-grace-period."""
STATUS_INTERVAL = 10.0
"""Seconds between NodeStatus refreshes (the Lease alone keeps a node Ready)."""
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
SIMULATED_LABEL = "trainsmart.dev/simulated"
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class NodeConfig:
    """One simulated node. Defaults describe a common 4 x A100-40GB training box."""

    name: str
    gpus: int = 4
    cpu: str = "16"
    memory: str = "64Gi"
    pods: int = 110
    gpu_product: str = "NVIDIA-A100-SXM4-40GB"
    gpu_memory_mib: int = 40960
    gpu_family: str = "ampere"
    address: str | None = None  # InternalIP; None: the agent fills in where pods reach the host
    labels: Mapping[str, str] = field(default_factory=dict)


def node_configs(prefix: str, count: int, gpus_per_node: int, **options: Any) -> list[NodeConfig]:
    """`count` nodes named `<prefix>-0` .. `<prefix>-<count-1>`, alike except for their names."""
    return [NodeConfig(name=f"{prefix}-{i}", gpus=gpus_per_node, **options) for i in range(count)]


def node_labels(cfg: NodeConfig) -> dict[str, str]:
    """Well-known node labels plus those GPU Feature Discovery sets, so node selectors written for real
    GPU clusters (`nvidia.com/gpu.product`, ...) select these nodes too."""
    labels = {
        "kubernetes.io/hostname": cfg.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "trainsmart-simulated",
        SIMULATED_LABEL: "true",
    }
    if cfg.gpus > 0:
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": cfg.gpu_product,
            "nvidia.com/gpu.count": str(cfg.gpus),
            "nvidia.com/gpu.memory": str(cfg.gpu_memory_mib),
            "nvidia.com/gpu.family": cfg.gpu_family,
            "nvidia.com/mig.capable": "false",
        }
    return labels | dict(cfg.labels)


def node_resources(cfg: NodeConfig) -> dict[str, str]:
    resources = {"cpu": cfg.cpu, "memory": cfg.memory, "pods": str(cfg.pods), "ephemeral-storage": "100Gi"}
    if cfg.gpus > 0:
        resources[GPU_RESOURCE] = str(cfg.gpus)
    return resources


def node_conditions(ready_since: datetime, now: datetime) -> list[dict[str, str]]:
    """The conditions a healthy kubelet reports; only Ready matters to the scheduler and controllers."""

    def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": rfc3339(now),
            "lastTransitionTime": rfc3339(ready_since),
        }

    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "simulated node has sufficient memory"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "simulated node has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "simulated node has sufficient PID"),
        cond("Ready", "True", "KubeletReady", "trainsmart node agent is posting ready status"),
    ]


def node_status(cfg: NodeConfig, ready_since: datetime, now: datetime) -> dict[str, Any]:
    resources = node_resources(cfg)
    return {
        "capacity": resources,
        "allocatable": resources,
        "conditions": node_conditions(ready_since, now),
        "addresses": [
            {"type": "InternalIP", "address": cfg.address or "127.0.0.1"},
            {"type": "Hostname", "address": cfg.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": cfg.name,
            "systemUUID": cfg.name,
            "bootID": "",
            "kernelVersion": "",
            "osImage": "trainsmart simulated node",
            "containerRuntimeVersion": f"trainsmart://{__version__}",
            "kubeletVersion": "v1.20.2",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def build_node(cfg: NodeConfig, now: datetime) -> dict[str, Any]:
    """The Node object to create. Nodes, unlike most kinds, accept `status` on create."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.name, "labels": node_labels(cfg)},
        "spec": {"taints": [dict(GPU_TAINT)] if cfg.gpus > 0 else []},
        "status": node_status(cfg, now, now),
    }


def merge_taints(existing: Sequence[Mapping[str, Any]], cfg: NodeConfig) -> list[dict[str, Any]]:
    """Our GPU taint added to whatever the node already carries (the lifecycle controller's own taints
    included): taints are a plain list in patches, so we send it whole."""
    taints = [dict(t) for t in existing]
    ours = (t for t in [GPU_TAINT] if cfg.gpus > 0)
    for taint in ours:
        if not any(t.get("key") == taint["key"] and t.get("effect") == taint["effect"] for t in taints):
            taints.append(dict(taint))
    return taints


def micro_time(moment: datetime) -> str:
    """`metav1.MicroTime`, the format Lease times use."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def build_lease(node_name: str, node_uid: str, now: datetime) -> dict[str, Any]:
    """The node's Lease, owned by the Node so the garbage collector removes it with the node."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node_name,
            "namespace": LEASE_NAMESPACE,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
        },
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": micro_time(now),
        },
    }


def _body(resp: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resp.data)
    return data


class NodeRegistrar:
    """Registers the nodes once, then keeps them Ready from a daemon thread until `stop()`."""

    def __init__(
        self, api: client.ApiClient, nodes: Sequence[NodeConfig], interval: float = HEARTBEAT_INTERVAL
    ) -> None:
        self._core = client.CoreV1Api(api)
        self._coord = client.CoordinationV1Api(api)
        self._nodes = list(nodes)
        self._interval = interval
        self._ready_since: dict[str, datetime] = {}
        self._uids: dict[str, str] = {}
        self._status_posted: dict[str, float] = {}  # node -> monotonic time of its last NodeStatus
        self._down: set[str] = set()
        self._lock = threading.Lock()  # the beat of one node vs. taking it down or up
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def register(self) -> None:
        """Create (or bring up to date) every node and its Lease. Blocking: when it returns, the nodes
        are Ready and schedulable."""
        for cfg in self._nodes:
            self._register(cfg)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="node-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    @property
    def down(self) -> frozenset[str]:
        return frozenset(self._down)

    def set_down(self, name: str) -> None:
        """Stop `name`'s heartbeats, as a machine that lost power: returns once no beat is in flight."""
        with self._lock:
            self._down.add(name)

    def set_up(self, name: str) -> None:
        """`name` boots again: registered afresh (Ready since now), heartbeats resume."""
        with self._lock:
            self._down.discard(name)
            for cfg in self._nodes:
                if cfg.name == name:
                    self._register(cfg)

    def delete_nodes(self) -> None:
        """Remove our Node objects (their Leases follow through garbage collection). Not what a kubelet
        does on shutdown; for throw-away agents (tests) whose nodes must not attract pods afterwards."""
        for cfg in self._nodes:
            try:
                self._core.delete_node(cfg.name, _preload_content=False)
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _register(self, cfg: NodeConfig) -> None:
        now = datetime.now(UTC)
        self._ready_since[cfg.name] = now
        try:
            node = _body(self._core.create_node(build_node(cfg, now), _preload_content=False))
        except ApiException as exc:
            if exc.status != 409:
                raise
            current = _body(self._core.read_node(cfg.name, _preload_content=False))
            patch = {
                "metadata": {"labels": node_labels(cfg)},
                "spec": {"taints": merge_taints(current.get("spec", {}).get("taints") or [], cfg)},
            }
            node = _body(self._core.patch_node(cfg.name, patch, _content_type=STRATEGIC, _preload_content=False))
        self._uids[cfg.name] = node["metadata"]["uid"]
        self._post_status(cfg)
        self._renew_lease(cfg)

    def _post_status(self, cfg: NodeConfig) -> None:
        self._status_posted[cfg.name] = time.monotonic()
        status = node_status(cfg, self._ready_since[cfg.name], datetime.now(UTC))
        self._core.patch_node_status(cfg.name, {"status": status}, _content_type=STRATEGIC, _preload_content=False)

    def _renew_lease(self, cfg: NodeConfig) -> None:
        now = datetime.now(UTC)
        patch = {"spec": {"holderIdentity": cfg.name, "renewTime": micro_time(now)}}
        try:
            self._coord.patch_namespaced_lease(
                cfg.name, LEASE_NAMESPACE, patch, _content_type=MERGE, _preload_content=False
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            lease = build_lease(cfg.name, self._uids[cfg.name], now)
            self._coord.create_namespaced_lease(LEASE_NAMESPACE, lease, _preload_content=False)

    def _beat(self, cfg: NodeConfig) -> None:
        try:
            self._renew_lease(cfg)
            if time.monotonic() - self._status_posted.get(cfg.name, 0.0) >= STATUS_INTERVAL:
                self._post_status(cfg)
        except ApiException as exc:
            if exc.status == 404:  # someone deleted the node: a kubelet re-registers, so do we
                log.warning("node %s disappeared; registering it again", cfg.name)
                self._register(cfg)
            else:
                raise

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for cfg in self._nodes:
                try:
                    with self._lock:
                        if cfg.name not in self._down:
                            self._beat(cfg)
                except Exception:  # keep beating for the other nodes and the next round
                    log.exception("heartbeat for node %s failed", cfg.name)
