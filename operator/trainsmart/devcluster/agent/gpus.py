"""Simulated GPU devices, handed out the way the NVIDIA device plugin hands out real ones.

The scheduler only counts `nvidia.com/gpu`; which *device indices* a container gets is the device
plugin's decision, made on the node. We mirror it so that two pods sharing a node never see the same
index in `CUDA_VISIBLE_DEVICES` (a trainer that pins rank N to its first visible device would otherwise
collide), and so that a bug that over-commits a node fails loudly here instead of silently sharing.

Everything in this module is pure except `GpuAllocator`, which only holds a condition around a dict.

Admission waits, briefly, for pods that are being torn down. A force-deleted pod (grace 0) vanishes from
the API at once, so the scheduler may bind a new pod to its GPUs while we are still stopping its processes;
a kubelet would fail the newcomer with `UnexpectedAdmissionError`, which on a busy dev cluster is noise, not
a finding. So a worker marks its pod `releasing` as soon as it learns the object is gone, and `allocate`
waits (bounded) when the node is short only by what releasing pods still hold. A real over-commit still
fails at once, with the same message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
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
        self._releasing: set[str] = set()  # uids whose processes are being stopped; their GPUs come back soon
        self._changed = threading.Condition()

    def allocate(
        self,
        node: str,
        pod_uid: str,
        pod_spec: Mapping[str, Any],
        *,
        wait: float = 0.0,
        give_up: Callable[[], bool] | None = None,
    ) -> PodDevices:
        """Devices for a pod on `node`; idempotent for a pod that already holds some. When the node is short
        only because releasing pods still hold devices, wait up to `wait` seconds for them (or until
        `give_up()` says the caller no longer needs them; `wake()` makes it ask), then raise as usual."""
        deadline = time.monotonic() + wait
        with self._changed:
            while True:
                try:
                    indices = self._allocate_locked(node, pod_uid, pod_spec)
                    break
                except GpuUnavailableError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or (give_up is not None and give_up()):
                        raise
                    if not self._releasing_would_suffice(node, pod_gpu_count(pod_spec)):
                        raise
                    self._changed.wait(remaining)
        return PodDevices(indices, split_devices(pod_spec, indices))

    def _allocate_locked(self, node: str, pod_uid: str, pod_spec: Mapping[str, Any]) -> tuple[int, ...]:
        if pod_uid in self._held:
            return self._held[pod_uid][1]
        if node not in self._capacity:
            raise GpuUnavailableError(f"node {node!r} is not managed by this agent")
        indices = pick_free_indices(self._capacity[node], self._in_use_locked(node), pod_gpu_count(pod_spec))
        self._held[pod_uid] = (node, indices)
        return indices

    def _in_use_locked(self, node: str) -> list[int]:
        return [i for n, held in self._held.values() if n == node for i in held]

    def _releasing_would_suffice(self, node: str, count: int) -> bool:
        if node not in self._capacity:
            return False
        free = self._capacity[node] - len(self._in_use_locked(node))
        coming = sum(len(held) for uid, (n, held) in self._held.items() if n == node and uid in self._releasing)
        return coming > 0 and free + coming >= count

    def mark_releasing(self, pod_uid: str) -> None:
        """The pod is going (its object is gone): admissions may wait for its devices. A pod holding none
        is not remembered (nothing to wait for, and nothing would ever forget it)."""
        with self._changed:
            if pod_uid in self._held:
                self._releasing.add(pod_uid)

    def wake(self) -> None:
        """Make waiting admissions re-check their `give_up`."""
        with self._changed:
            self._changed.notify_all()

    def release(self, pod_uid: str) -> None:
        with self._changed:
            self._held.pop(pod_uid, None)
            self._releasing.discard(pod_uid)
            self._changed.notify_all()

    def in_use(self, node: str) -> tuple[int, ...]:
        with self._changed:
            return tuple(sorted(self._in_use_locked(node)))
