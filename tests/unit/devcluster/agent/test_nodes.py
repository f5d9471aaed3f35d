"""Simulated node manifests: what the scheduler and the node-lifecycle controller read.

Pins:
- capacity == allocatable with cpu, memory, pods and nvidia.com/gpu;
- GPU Feature Discovery labels plus kubernetes.io/hostname and the other well-known labels;
- the nvidia.com/gpu=present:NoSchedule taint on GPU nodes only, merged into existing taints once;
- a Ready=True condition with heartbeat and transition times, and an InternalIP address;
- the Lease in kube-node-lease, owned by its Node, with MicroTime renewTime;
- node_configs names nodes <prefix>-<i>.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from trainsmart.devcluster.agent.nodes import (
    LEASE_NAMESPACE,
    NodeConfig,
    build_lease,
    build_node,
    merge_taints,
    node_configs,
    node_status,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_gpu_node_manifest() -> None:
    node = build_node(NodeConfig(name="gpu-0", gpus=8, address="10.250.0.1"), NOW)
    labels = node["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "gpu-0"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"
    assert labels["nvidia.com/gpu.count"] == "8"
    assert labels["nvidia.com/gpu.memory"] == "40960"
    assert labels["trainsmart.dev/simulated"] == "true"
    assert node["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    status = node["status"]
    assert status["capacity"] == status["allocatable"]
    assert status["capacity"]["nvidia.com/gpu"] == "8"
    assert {"cpu", "memory", "pods"} <= set(status["capacity"])
    assert {"type": "InternalIP", "address": "10.250.0.1"} in status["addresses"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert ready["lastHeartbeatTime"] == ready["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_cpu_node_has_no_gpu_bits() -> None:
    node = build_node(NodeConfig(name="cpu-0", gpus=0), NOW)
    assert node["spec"]["taints"] == []
    assert "nvidia.com/gpu" not in node["status"]["capacity"]
    assert not any(k.startswith("nvidia.com/") for k in node["metadata"]["labels"])


def test_heartbeat_moves_only_heartbeat_time() -> None:
    later = NOW + timedelta(seconds=30)
    status = node_status(NodeConfig(name="n"), ready_since=NOW, now=later)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["lastHeartbeatTime"] == "2024-05-01T12:00:30Z"
    assert ready["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_merge_taints_keeps_others_and_adds_ours_once() -> None:
    cfg = NodeConfig(name="n")
    existing = [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}]
    merged = merge_taints(existing, cfg)
    assert merged[0] == existing[0]
    assert merged[1]["key"] == "nvidia.com/gpu"
    assert merge_taints(merged, cfg) == merged


def test_lease() -> None:
    lease = build_lease("gpu-0", "uid-1", NOW)
    assert lease["metadata"]["namespace"] == LEASE_NAMESPACE
    assert lease["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "gpu-0",
        "uid": "uid-1",
    }
    assert lease["spec"]["holderIdentity"] == "gpu-0"
    assert lease["spec"]["renewTime"] == "2024-05-01T12:00:00.123456Z"
    assert lease["spec"]["leaseDurationSeconds"] == 40


def test_node_configs() -> None:
    configs = node_configs("ts", 3, 2, cpu="4")
    assert [c.name for c in configs] == ["ts-0", "ts-1", "ts-2"]
    assert all(c.gpus == 2 and c.cpu == "4" for c in configs)
