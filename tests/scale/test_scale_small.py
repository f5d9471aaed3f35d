"""The scale suite's small version (`bench/scale.py --quick` runs the same steps with figures), issue 13:

- 100 one-replica jobs applied at once all get their pod, and after a restart with them present the new
  operator process reconciles every one (`trainsmart_objects_reconciled` reaches the number of jobs);
- with a TPE sweep active (hyperopt loaded), 300 TrainingJobs present (every 10th with a Pending pod, the
  rest suspended) keep the operator's RSS within 250 MiB; after all are deleted its RSS is within 25 MiB of
  what it was before (the worker threads' one-time share), and a second create-delete cycle adds at most
  10 MiB to that (memory held for deleted jobs comes back).

Behaviour only: the deadlines are generous, no timing is asserted. The steps are `bench/scale.py`'s own
(imported by path), so the bench and this test cannot drift apart.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest
from kubernetes import client

from support.paths import REPO
from trainsmart.devcluster.controlplane import free_port
from trainsmart.devcluster.operator_process import OperatorProcess

# About a minute each on an idle 2-core machine. The limit is far above that: each step has its own deadline
# that names what is left (bench/scale.py), which says more than pytest's timeout in the middle of a call.
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

JOBS = 300
BURST = 100


def _load_scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("trainsmart_bench_scale", REPO / "bench/scale.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench_scale = _load_scale()


@pytest.fixture(scope="module")
def scale(
    api_client: client.ApiClient, trainsmart_crds: dict[str, Any], start_operator: Callable[..., OperatorProcess]
) -> Iterator[Any]:
    """An operator with /metrics, two namespaces of its own (jobs; the sweep) and the jobs' pod watch."""
    suffix = f"{int(time.time()) % 100000}"
    namespace, sweep_namespace = f"scale-{suffix}", f"scale-sweep-{suffix}"
    core = client.CoreV1Api(api_client)
    for name in (namespace, sweep_namespace):
        core.create_namespace({"metadata": {"name": name}})
    operator = start_operator(metrics=("127.0.0.1", free_port()), timeout=60.0)
    ops = bench_scale.load_operator_bench(namespace)
    ops._wait(lambda: ops._has_default_sa(core), 30, "the namespace's default ServiceAccount")
    try:
        with ops.PodRecorder(core, namespace) as recorder:
            yield bench_scale.Scale(api_client, operator, recorder, namespace, sweep_namespace)
    finally:
        operator.stop()
        print(operator.tail())
        for name in (namespace, sweep_namespace):
            core.delete_namespace(name)


def test_jobs_applied_at_once_all_get_their_pods_and_a_restart_reconciles_every_one(scale: Any) -> None:
    names = [f"burst-{i:04d}" for i in range(BURST)]
    pods = scale.create_jobs(names, active_every=1, threads=8)
    scale.wait_handled(BURST, pods, timeout=150.0)
    scale.operator.stop()
    scale.operator.start(timeout=60.0)
    scale.wait(scale.resynced, 120.0, f"{BURST} jobs reconciled after a restart", poll=1.0)
    scale.delete_jobs(timeout=120.0)


def test_rss_stays_within_goal_with_a_sweep_and_comes_back_after_deletion(scale: Any) -> None:
    scale.start_sweep()
    assert scale.hyperopt_loaded()
    before = scale.settle_rss(3.0)
    first = bench_scale.rss_cycle(scale, "small", JOBS, active_every=10, threads=8, quiet=3.0)
    second = bench_scale.rss_cycle(scale, "again", JOBS, active_every=10, threads=8, quiet=3.0)
    mib = bench_scale.MIB
    figures = (
        f"before {before / mib:.0f} MiB; first: peak {first['peak'] / mib:.0f}, after {first['after'] / mib:.0f}; "
        f"second: peak {second['peak'] / mib:.0f}, after {second['after'] / mib:.0f}"
    )
    assert max(first["peak"], second["peak"]) <= bench_scale.RSS_GOAL, figures
    # The first cycle may add the worker threads' one-time share (the API pool starts its threads); a
    # second cycle of the same jobs must not add more: what a deleted job held has been released.
    assert first["after"] - before <= bench_scale.RSS_FIRST_CYCLE_TOLERANCE, figures
    assert second["after"] - first["after"] <= bench_scale.RSS_RETURN_TOLERANCE, figures
