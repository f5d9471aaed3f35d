"""Control-plane figures for the foundation issue, printed:

- cold build time of the binaries (only when this run had to obtain them; otherwise says they were cached),
- warm start to ready (/readyz ok and the `default` namespace present), median and max over several starts,
- stop time (every process gone), median and max,
- pod create -> Running latency through the real kube-scheduler and the node agent, p50/p95 over N pods.

Usage: python bench/controlplane.py [--starts 5] [--pods 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch

from trainsmart.devcluster.binaries import ensure_binaries, find_binaries
from trainsmart.devcluster.controlplane import ControlPlane


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def bench_binaries() -> None:
    found = find_binaries()
    if found is not None and found.complete:
        print(f"binaries: cached ({found.source}: {found.kube_apiserver.parent}); no build needed")
        return
    start = time.monotonic()
    ensure_binaries(lambda m: print("  " + m, flush=True))
    print(f"binaries: obtained in {time.monotonic() - start:.1f} s (cold)")


def bench_start_stop(starts: int) -> None:
    ready, stopped = [], []
    for _ in range(starts):
        cp = ControlPlane()
        t0 = time.monotonic()
        cp.start()
        ready.append(time.monotonic() - t0)
        t1 = time.monotonic()
        cp.stop()
        stopped.append(time.monotonic() - t1)
    print(
        f"warm start to ready: median {statistics.median(ready):.2f} s, max {max(ready):.2f} s "
        f"over {starts} starts (target <= 5 s)"
    )
    print(
        f"stop (all processes gone): median {statistics.median(stopped):.2f} s, max {max(stopped):.2f} s "
        f"(target <= 3 s)"
    )


def _pod(name: str, gpus: int) -> client.V1Pod:
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"bench": "latency"}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            termination_grace_period_seconds=1,
            tolerations=[client.V1Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            containers=[
                client.V1Container(
                    name="main",
                    image="busybox",
                    command=["sleep", "30"],
                    resources=client.V1ResourceRequirements(limits=limits, requests=limits),
                )
            ],
        ),
    )


def bench_pod_latency(pods: int) -> None:
    with tempfile.TemporaryDirectory(prefix="trainsmart-bench-") as tmp, ControlPlane() as cp:
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trainsmart.devcluster.agent",
                "--kubeconfig",
                str(cp.admin_kubeconfig),
                "--nodes",
                "2",
                "--gpus-per-node",
                "4",
                "--state-dir",
                str(Path(tmp) / "agent"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        api = config.new_client_from_config(config_file=str(cp.admin_kubeconfig))
        try:
            core = client.CoreV1Api(api)
            _wait_nodes(core, 2)
            ns = "bench"
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
            created: dict[str, float] = {}
            running: dict[str, float] = {}
            done = threading.Event()

            def observe() -> None:
                w = watch.Watch()
                for event in w.stream(core.list_namespaced_pod, ns, timeout_seconds=300):
                    pod = event["object"]
                    if pod.status.phase == "Running" and pod.metadata.name not in running:
                        running[pod.metadata.name] = time.monotonic()
                        if len(running) >= pods:
                            w.stop()
                done.set()

            watcher = threading.Thread(target=observe, daemon=True)
            watcher.start()
            time.sleep(0.5)
            # Pods in waves no bigger than the cluster's GPU count, half with a GPU, half without; each
            # latency is measured from its own create call.
            for i in range(pods):
                name = f"p{i:03d}"
                created[name] = time.monotonic()
                core.create_namespaced_pod(ns, _pod(name, gpus=i % 2))
                if i % 8 == 7:
                    _wait_running(running, created, timeout=60)
                    for old in list(created)[-8:]:
                        core.delete_namespaced_pod(old, ns, grace_period_seconds=0)
            done.wait(120)
            latencies = [running[n] - created[n] for n in created if n in running]
            missing = len(created) - len(latencies)
            print(
                f"pod create -> Running (scheduler + node agent): p50 {percentile(latencies, 50) * 1000:.0f} ms, "
                f"p95 {percentile(latencies, 95) * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms "
                f"over {len(latencies)} pods" + (f" ({missing} never ran)" if missing else "")
            )
        finally:
            api.close()
            agent.terminate()
            agent.wait(30)


def _wait_nodes(core: client.CoreV1Api, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = core.list_node().items
        ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]
        if len(ready) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError("nodes never became Ready")


def _wait_running(running: dict[str, float], created: dict[str, float], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(n in running for n in created):
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--pods", type=int, default=50)
    args = parser.parse_args()
    bench_binaries()
    bench_start_stop(args.starts)
    bench_pod_latency(args.pods)


if __name__ == "__main__":
    main()
