"""Operator overhead per sweep trial, printed: trial TrainingJob created -> its pod created -> pod running.

On a throwaway local cluster (`trainsmart dev up` in a temp state dir: etcd, kube-apiserver, scheduler,
controller-manager and the node agent running pods as local processes) with `trainsmart operator`, one
HyperparamSweep of N tiny trials (digits MLP, 1 epoch, 1 replica, 0 GPUs), `parallel` at a time. One watch
on TrainingJobs and one on pods in the namespace timestamp each event as it arrives (monotonic clock, not
the API's whole-second timestamps), and the figures are per trial:

- trial created -> its pod created: the TrainingJob controller's share (reconcile, Service, Secret, pod);
- trial created -> its pod Running: plus the scheduler and the node agent starting the process;
- trial finished -> the next trial created: the sweep controller's share (watch, derive, suggest, create),
  for trials that filled a slot freed by a finished one;
- sweep applied -> first trial created.

p50/p95 use the nearest rank (with 16 samples p95 is the second largest). The run stops by itself, and the
operator and the cluster are stopped on the way out whatever happened.

Usage: python bench/sweep_overhead.py [--trials 16] [--parallel 4] [--timeout 600]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.operator_process import OperatorProcess, pod_gateway, trainsmart_operator
from trainsmart.names import JOB_NAME_LABEL, SWEEP_NAME_LABEL

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "default"
SWEEP = "overhead"
TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


@dataclass
class Timeline:
    """Monotonic times of what the watches saw, per trial name."""

    applied: float = 0.0
    created: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)
    pod_created: dict[str, float] = field(default_factory=dict)
    pod_running: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def first(self, table: dict[str, float], key: str) -> None:
        with self.lock:
            table.setdefault(key, time.monotonic())


def watch_trials(objects: client.CustomObjectsApi, timeline: Timeline, stop: threading.Event) -> None:
    while not stop.is_set():
        stream = watch.Watch().stream(
            objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            NAMESPACE,
            TRAININGJOB_PLURAL,
            label_selector=f"{SWEEP_NAME_LABEL}={SWEEP}",
            timeout_seconds=5,
        )
        for event in stream:
            job = event["object"]
            name = job["metadata"]["name"]
            timeline.first(timeline.created, name)
            if (job.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                timeline.first(timeline.finished, name)


def watch_pods(core: client.CoreV1Api, timeline: Timeline, stop: threading.Event) -> None:
    while not stop.is_set():
        for event in watch.Watch().stream(core.list_namespaced_pod, NAMESPACE, timeout_seconds=5):
            pod = event["object"]
            job = (pod.metadata.labels or {}).get(JOB_NAME_LABEL)
            if not job:
                continue
            timeline.first(timeline.pod_created, job)
            if pod.status.phase == "Running":
                timeline.first(timeline.pod_running, job)


def sweep_manifest(trials: int, parallel: int) -> dict[str, Any]:
    config_ = {"dataset": {"name": "digits"}, "model": {"name": "mlp", "hiddenSizes": [16]}, "epochs": 1}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HyperparamSweep",
        "metadata": {"name": SWEEP},
        "spec": {
            "objective": {"metric": "val_accuracy", "goal": "maximize"},
            "algorithm": {"name": "random", "seed": 1},
            "maxTrials": trials,
            "parallelTrials": parallel,
            "parameters": [
                {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-3, "max": 0.05}
            ],
            "trialTemplate": {
                "tolerations": TOLERATIONS,
                "trainer": {"env": [{"name": "OMP_NUM_THREADS", "value": "1"}], "config": config_},
            },
        },
    }


@contextlib.contextmanager
def cluster(state_dir: Path) -> Iterator[Path]:
    """`trainsmart dev up` in `state_dir`; yields the kubeconfig; `dev down` on the way out."""
    cli = [sys.executable, "-m", "trainsmart.cli", "dev"]
    try:
        subprocess.run([*cli, "up", "--state-dir", str(state_dir)], check=True, timeout=900, stdin=subprocess.DEVNULL)
        yield Path(json.loads((state_dir / "state.json").read_text())["kubeconfig"])
    finally:
        subprocess.run([*cli, "down", "--state-dir", str(state_dir)], check=False, timeout=120)


def operator(kubeconfig: Path, api: client.ApiClient, log: Path) -> OperatorProcess:
    """`trainsmart operator` with its report endpoint where the trials' pods reach the host; `with` starts
    it (ready once /healthz answers) and stops it on the way out."""
    return trainsmart_operator(kubeconfig, log, report_host=pod_gateway(client.CoreV1Api(api)))


def install_crds(api: client.ApiClient) -> None:
    import yaml

    extensions = client.ApiextensionsV1Api(api)
    objects = client.CustomObjectsApi(api)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        with contextlib.suppress(client.ApiException):
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    deadline = time.monotonic() + 60
    for plural in (TRAININGJOB_PLURAL, SWEEP_PLURAL):
        while True:
            try:
                objects.list_cluster_custom_object(GROUP, VERSION, plural, limit=1)
                break
            except client.ApiException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def report(timeline: Timeline, trials: int, parallel: int) -> None:
    names = sorted(timeline.created, key=lambda name: timeline.created[name])
    to_pod = [timeline.pod_created[n] - timeline.created[n] for n in names if n in timeline.pod_created]
    to_running = [timeline.pod_running[n] - timeline.created[n] for n in names if n in timeline.pod_running]
    refill = []
    for name in names[parallel:]:
        done = [t for t in timeline.finished.values() if t <= timeline.created[name]]
        if done:
            refill.append(timeline.created[name] - max(done))
    first = timeline.created[names[0]] - timeline.applied if names else float("nan")
    print(f"sweep overhead: {len(names)} trials ({trials} planned, {parallel} at a time), digits MLP, 1 epoch, CPU")
    print(f"  sweep applied -> first trial created: {first * 1000:.0f} ms")
    for label, values in (
        ("trial created -> its pod created", to_pod),
        ("trial created -> its pod Running", to_running),
        ("trial finished -> next trial created", refill),
    ):
        if values:
            p50, p95 = percentile(values, 50) * 1000, percentile(values, 95) * 1000
            print(f"  {label:<40} p50 {p50:6.0f} ms   p95 {p95:6.0f} ms   (n={len(values)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="trainsmart-bench-sweep-"))
    state_dir.chmod(0o755)  # pods (non-root) get volumes from under it
    ok = False
    try:
        with cluster(state_dir) as kubeconfig:
            api = config.new_client_from_config(config_file=str(kubeconfig))
            install_crds(api)
            objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
            with operator(kubeconfig, api, state_dir / "operator.log"):
                timeline, stop = Timeline(), threading.Event()
                watchers = [
                    threading.Thread(target=watch_trials, args=(objects, timeline, stop), daemon=True),
                    threading.Thread(target=watch_pods, args=(core, timeline, stop), daemon=True),
                ]
                for thread in watchers:
                    thread.start()
                time.sleep(1)
                timeline.applied = time.monotonic()
                body = sweep_manifest(args.trials, args.parallel)
                objects.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, SWEEP_PLURAL, body)
                deadline = time.monotonic() + args.timeout
                while time.monotonic() < deadline:
                    sweep = objects.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, SWEEP_PLURAL, SWEEP)
                    if (sweep.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                        ok = True
                        break
                    time.sleep(1)
                stop.set()
                report(timeline, args.trials, args.parallel)
                if not ok:
                    print(f"the sweep did not finish within {args.timeout:.0f} s")
            api.close()
    finally:
        if ok:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:
            print(f"logs kept in {state_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
