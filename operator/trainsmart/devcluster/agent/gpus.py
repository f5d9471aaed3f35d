"""Simulated GPU devices, handed out the way the NVIDIA device plugin hands out real ones.

The scheduler only counts `nvidia.com/gpu`; which *device indices* a container gets is the device
plugin's decision, made on the node. We mirror it so that two pods sharing a node never see the same
index in `CUDA_VISIBLE_DEVICES` (a trainer that pins rank N to its first visible device would otherwise
collide), and so that a bug that over-commits a node fails loudly here instead of silently sharing.

Everything in this module is pure except `GpuAllocator`, which only holds a lock around a dict.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainsmart_trainer.contract import SIMULATED_GPUS

GPU_RESOURCE = "nvidia.com/gpu"
# The trainer reads this to run on the CPU and say its GPUs are simulated: the name comes from the contract.
SIMULATED_GPUS_ENV = SIMULATED_GPUS
# The nvidia container runtime's spelling for "no devices" (unset would mean "all" in CUDA images).
NO_DEVICES = "void"


class GpuUnavailableError(RuntimeError):
    """The node has fewer free GPUs than a pod needs: the kubelet's `UnexpectedAdmissionError` case."""


def _as_int(quantity: object) -> int:
    """Extended resources are whole numbers; the API serialises them as strings ("2") or ints."""
    return int(str(quantity)) if quantity is not None else 0


def container_gpu_count(container: Mapping[str, Any]) -> int:
    """GPUs a container asks for. Extended resources must have request == limit, so either will do."""
    resources = container.get("resources") or {}
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    return _as_int(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE)))


def pod_gpu_count(pod_spec: Mapping[str, Any]) -> int:
    """GPUs the pod holds for its lifetime: the scheduler's rule, max(largest init container, sum of
    app containers), because init containers run before, never beside, the app containers."""
    app = sum(container_gpu_count(c) for c in pod_spec.get("containers") or [])
    init = max((container_gpu_count(c) for c in pod_spec.get("initContainers") or []), default=0)
    return max(app, init)


def pick_free_indices(capacity: int, in_use: Iterable[int], count: int) -> tuple[int, ...]:
    """The `count` lowest indices in [0, capacity) not in use; raises when there are not enough."""
    if count < 0:
        raise ValueError(f"negative GPU count {count}")
    used = set(in_use)
    free = [i for i in range(capacity) if i not in used]
    if len(free) < count:
        raise GpuUnavailableError(
            f"requested {count} {GPU_RESOURCE} but only {len(free)} of {capacity} are free on this node"
        )
    return tuple(free[:count])


@dataclass(frozen=True)
class PodDevices:
    """The indices a pod holds, split per container as the device plugin does."""

    indices: tuple[int, ...]
    per_container: Mapping[str, tuple[int, ...]]


def split_devices(pod_spec: Mapping[str, Any], indices: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """App containers get disjoint consecutive slices; init containers reuse the pod's first indices
    (they have finished before any app container starts)."""
    out: dict[str, tuple[int, ...]] = {}
    offset = 0
    for container in pod_spec.get("containers") or []:
        n = container_gpu_count(container)
        out[container["name"]] = tuple(indices[offset : offset + n])
        offset += n
    for container in pod_spec.get("initContainers") or []:
        out[container["name"]] = tuple(indices[: container_gpu_count(container)])
    return out


def gpu_env(indices: Sequence[int]) -> dict[str, str]:
    """The environment a container gets for its devices, plus the simulated-GPU marker the trainer
    reads to decide it should run on the CPU and say so."""
    visible = ",".join(str(i) for i in indices)
    return {
        "NVIDIA_VISIBLE_DEVICES": visible or NO_DEVICES,
        # Empty hides every device from CUDA: a pod without GPUs must not grab a real host GPU.
        "CUDA_VISIBLE_DEVICES": visible,
        SIMULATED_GPUS_ENV: "1",
    }


class GpuAllocator:
    """Per-node device bookkeeping. Thread-safe: pod workers allocate and release concurrently."""

    def __init__(self, capacity_per_node: Mapping[str, int]) -> None:
        self._capacity = dict(capacity_per_node)
        self._held: dict[str, tuple[str, tuple[int, ...]]] = {}  # pod uid -> (node, indices)
        self._lock = threading.Lock()

    def allocate(self, node: str, pod_uid: str, pod_spec: Mapping[str, Any]) -> PodDevices:
        """Devices for a pod on `node`; idempotent for a pod that already holds some."""
        with self._lock:
            if pod_uid in self._held:
                indices = self._held[pod_uid][1]
            else:
                if node not in self._capacity:
                    raise GpuUnavailableError(f"node {node!r} is not managed by this agent")
                in_use = (i for n, held in self._held.values() if n == node for i in held)
                indices = pick_free_indices(self._capacity[node], in_use, pod_gpu_count(pod_spec))
                self._held[pod_uid] = (node, indices)
        return PodDevices(indices, split_devices(pod_spec, indices))

    def release(self, pod_uid: str) -> None:
        with self._lock:
            self._held.pop(pod_uid, None)

    def in_use(self, node: str) -> tuple[int, ...]:
        with self._lock:
            return tuple(sorted(i for n, held in self._held.values() if n == node for i in held))
