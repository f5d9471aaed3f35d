"""GPU index allocation, as the device plugin would do it on each simulated node.

Pins:
- a node never hands out more indices than it has, under any sequence of allocations and releases;
- indices held at the same time on one node are distinct; nodes are independent;
- allocation is idempotent per pod and freed by release;
- a node short only by what releasing pods hold makes admission wait (bounded) for them; a node short
  for any other reason, or still short when the wait ends, fails at once with the usual message;
- the pod's count follows the scheduler's rule (max of largest init container and sum of app containers),
  split into disjoint per-container slices; init containers reuse the first indices;
- the container env: NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES and the simulated-GPU marker,
  with "void" / empty for a container without GPUs.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trainsmart.devcluster.agent.gpus import (
    GpuAllocator,
    GpuUnavailableError,
    gpu_env,
    pick_free_indices,
    pod_gpu_count,
    split_devices,
)


def spec(*gpus: int, init: tuple[int, ...] = ()) -> dict[str, Any]:
    def container(name: str, n: int) -> dict[str, Any]:
        return {"name": name, "resources": {"limits": {"nvidia.com/gpu": str(n)}} if n else {}}

    return {
        "containers": [container(f"c{i}", n) for i, n in enumerate(gpus)],
        "initContainers": [container(f"i{i}", n) for i, n in enumerate(init)],
    }


def test_pick_lowest_free() -> None:
    assert pick_free_indices(4, [0, 2], 2) == (1, 3)
    with pytest.raises(GpuUnavailableError, match="only 2 of 4 are free"):
        pick_free_indices(4, [0, 2], 3)


def test_two_pods_on_a_node_get_distinct_indices_and_release_frees() -> None:
    alloc = GpuAllocator({"n0": 4, "n1": 4})
    a = alloc.allocate("n0", "a", spec(2))
    b = alloc.allocate("n0", "b", spec(2))
    assert set(a.indices).isdisjoint(b.indices)
    assert alloc.allocate("n1", "c", spec(4)).indices == (0, 1, 2, 3)
    with pytest.raises(GpuUnavailableError):
        alloc.allocate("n0", "d", spec(1))
    assert alloc.allocate("n0", "a", spec(2)) == a  # idempotent
    alloc.release("a")
    assert alloc.allocate("n0", "d", spec(1)).indices == (0,)
    assert alloc.in_use("n0") == (0, 2, 3)


def test_admission_waits_for_a_releasing_pod() -> None:
    alloc = GpuAllocator({"n0": 2})
    alloc.allocate("n0", "old", spec(2))
    alloc.mark_releasing("old")
    timer = threading.Timer(0.2, alloc.release, args=("old",))
    started = time.monotonic()
    timer.start()
    try:
        assert alloc.allocate("n0", "new", spec(2), wait=5.0).indices == (0, 1)
    finally:
        timer.cancel()
    assert 0.15 < time.monotonic() - started < 2.0


def test_admission_does_not_wait_for_what_is_not_coming() -> None:
    alloc = GpuAllocator({"n0": 4})
    alloc.allocate("n0", "busy", spec(3))
    alloc.allocate("n0", "old", spec(1))
    alloc.mark_releasing("old")
    started = time.monotonic()
    with pytest.raises(GpuUnavailableError, match="only 0 of 4 are free"):
        alloc.allocate("n0", "big", spec(2), wait=5.0)  # "old" frees one, two are needed
    assert time.monotonic() - started < 0.5
    with pytest.raises(GpuUnavailableError, match="only 0 of 4 are free"):
        alloc.allocate("n0", "late", spec(1), wait=0.2)  # "old" never goes: the wait ends, same error
    gave_up = threading.Event()
    timer = threading.Timer(0.1, lambda: (gave_up.set(), alloc.wake()))
    started = time.monotonic()
    timer.start()
    with pytest.raises(GpuUnavailableError):
        alloc.allocate("n0", "deleted", spec(1), wait=5.0, give_up=gave_up.is_set)
    assert time.monotonic() - started < 2.0
    alloc.release("old")
    assert alloc.allocate("n0", "late", spec(1), wait=0.2).indices == (3,)


def test_unknown_node_is_refused() -> None:
    with pytest.raises(GpuUnavailableError, match="not managed"):
        GpuAllocator({"n0": 1}).allocate("elsewhere", "a", spec(1))
    with pytest.raises(GpuUnavailableError, match="not managed"):
        GpuAllocator({"n0": 1}).allocate("elsewhere", "a", spec(1), wait=1.0)


@given(
    st.lists(
        st.tuples(st.sampled_from(["alloc", "release"]), st.integers(0, 5), st.integers(0, 3)),
        max_size=60,
    )
)
def test_never_over_capacity(ops: list[tuple[str, int, int]]) -> None:
    capacity = 4
    alloc = GpuAllocator({"n": capacity})
    held: dict[str, tuple[int, ...]] = {}
    for op, pod, count in ops:
        uid = f"pod-{pod}"
        if op == "release":
            alloc.release(uid)
            held.pop(uid, None)
            continue
        try:
            held[uid] = alloc.allocate("n", uid, spec(count)).indices
        except GpuUnavailableError:
            assert uid not in held
            assert sum(len(v) for v in held.values()) + count > capacity
        flat = [i for v in held.values() for i in v]
        assert len(flat) == len(set(flat)) <= capacity
        assert all(0 <= i < capacity for i in flat)
        assert alloc.in_use("n") == tuple(sorted(flat))


def test_pod_count_and_split() -> None:
    assert pod_gpu_count(spec(1, 2)) == 3
    assert pod_gpu_count(spec(1, init=(4,))) == 4
    assert pod_gpu_count({"containers": [{"name": "c"}]}) == 0
    assert pod_gpu_count({"containers": [{"name": "c", "resources": {"requests": {"nvidia.com/gpu": 2}}}]}) == 2
    split = split_devices(spec(1, 0, 2, init=(2,)), (4, 5, 6))
    assert split == {"c0": (4,), "c1": (), "c2": (5, 6), "i0": (4, 5)}


def test_env() -> None:
    assert gpu_env((1, 3)) == {
        "NVIDIA_VISIBLE_DEVICES": "1,3",
        "CUDA_VISIBLE_DEVICES": "1,3",
        "TRAINSMART_SIMULATED_GPUS": "1",
    }
    none = gpu_env(())
    assert (none["NVIDIA_VISIBLE_DEVICES"], none["CUDA_VISIBLE_DEVICES"]) == ("void", "")
