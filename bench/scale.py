"""Scale figures, printed next to their goals (issue 13, "Reliability under faults and load"): the operator
with thousands of TrainingJobs present, after a restart, and with a thousand applied at once.

Against a real control plane and `trainsmart operator` as a subprocess, with no node agent (pods stay
Pending), as `bench/operator.py`, whose pod watch, job manifests, raw floor and cleanup this reuses
(imported by path: its file name is the standard library's `operator`).

- (1) rss: a HyperparamSweep (TPE) is active first, so hyperopt is loaded as it is for a user with sweeps;
  then N TrainingJobs (default 5,000) are created, a mix: every `--active-every`-th job runs one replica
  (its pod is created and stays Pending), the others are suspended. Suspended, not all running: 5,000
  Pending pods plus their Services and Secrets would measure the 2-core apiserver, not the operator; the
  operator watches, reconciles and caches every job either way (each gets a status). RSS (VmRSS of the
  operator's process tree) idle before the sweep, before the jobs (sweep active), peak, with all jobs
  handled, and after all were deleted; then the same again (a second create-delete cycle). The first
  cycle's delta includes one-time growth (the API pool's 16 worker threads start in the first burst and
  stay: stacks and glibc malloc arenas, about 14 MiB); the second cycle's delta is what a leak would show
  (goal <= +10 MiB: memory comes back). Goal <= 250 MiB. `--memory-debug DIR` runs the operator with
  its /debug/memory hook (`observability/memory_debug.py`) and saves its answers (objects by type,
  tracemalloc sites) before and after each cycle.
- (2) resync: with N jobs present (handled by the operator), the operator is stopped and started again;
  the figure is the time from the new process's launch until every job was reconciled by it: its
  `trainsmart_objects_reconciled{kind="TrainingJob"}` gauge (watched jobs it has reconciled at least
  once) reaches the number of jobs. A job's stored status does not change on a restart (nothing happened
  to it), so no status field can show that the new process looked at it; this gauge can.
- (3) burst: M jobs (default 1,000, one replica each) applied at once by `--threads` clients; the time
  until every pod exists, next to the raw floor: the same creates (each job's Service and Secret, then its
  pod: `bench/operator.py`'s `raw_objects`) made directly with the operator's concurrency
  (`API_CONCURRENCY` threads), dependencies of all jobs first, then all pods. Printed as a ratio (no goal
  of its own; the 2x goal is for the single-job latency).
- (latency) opt-in: `bench/operator.py`'s phase (a), apply -> all pods p50 for 1/8/32 replicas vs the raw
  floor (goal <= 2x); run here only to have every scale figure in one run, not re-implemented.

Usage: python bench/scale.py [--quick] [--jobs 5000] [--burst 1000] [--phases rss,resync,burst[,latency]]
`--quick`: 300 jobs in (1), 100 in (2), a burst of 100, shorter quiet periods (about 2 minutes on an idle
2-core machine; twice that when the machine is shared).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Keep bench/ off the import path: bench/operator.py would shadow the standard library's `operator`.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse  # after the sys.path fix above, on purpose
import contextlib
import importlib.util
import json
import os
import re
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.controlplane import ControlPlane, free_port
from trainsmart.devcluster.operator_process import OperatorProcess, trainsmart_operator
from trainsmart.kube import API_CONCURRENCY

ROOT = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
RSS_GOAL = 250 * MIB
"""Operator RSS with 5,000 jobs and a sweep active (issue 13)."""
RSS_RETURN_TOLERANCE = 10 * MIB
"""RSS after a second create-delete cycle may exceed the first cycle's by this much (allocator slack)."""
RSS_FIRST_CYCLE_TOLERANCE = 25 * MIB
"""RSS after the first cycle may exceed the pre-create figure by this much: the API pool's 16 worker threads
start during the first burst and stay, each with its stack and glibc malloc arena (measured +14 MiB)."""
SWEEP_NAME = "scale-tpe"
RECONCILED_SERIES = "trainsmart_objects_reconciled"


def load_operator_bench(namespace: str) -> ModuleType:
    """A private instance of bench/operator.py whose objects live in `namespace` (its module-global
    NAMESPACE, read at call time by its job bodies, raw floor and cleanup)."""
    spec = importlib.util.spec_from_file_location(f"trainsmart_bench_operator_{namespace}", ROOT / "bench/operator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setattr(module, "NAMESPACE", namespace)  # noqa: B010 - a module attribute mypy cannot see
    return module


def mib(value: float) -> str:
    return f"{value / MIB:.0f} MiB"


class Scale:
    """The operator under scale: its jobs, its sweep, its RSS and its metrics, in one namespace."""

    def __init__(
        self, api: client.ApiClient, operator: OperatorProcess, recorder: Any, namespace: str, sweep_namespace: str
    ) -> None:
        self.api = api
        self.operator = operator
        self.recorder = recorder
        self.namespace = namespace
        self.sweep_namespace = sweep_namespace
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.ops = load_operator_bench(namespace)
        self.bench = self.ops.Bench(api, recorder, operator, gpus=1)
        """bench/operator.py's handles: job bodies, creates, the raw floor, cleanup."""

    # ---- the operator process ----------------------------------------------------------------------------

    def rss(self) -> int:
        return int(self.ops.operator_rss_bytes(self.operator))

    def hyperopt_loaded(self) -> bool:
        """hyperopt.tpe imports scipy.special, whose extension modules then show in the process's memory map."""
        assert self.operator.process is not None
        maps = Path(f"/proc/{self.operator.process.pid}/maps").read_text()
        return "scipy" in maps

    def reconciled_jobs(self) -> int:
        """The operator's `trainsmart_objects_reconciled{kind="TrainingJob"}` (only that series is asked for)."""
        url = f"{self.operator.metrics_base}/metrics?name[]={RECONCILED_SERIES}"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback URL
            text = response.read().decode()
        match = re.search(rf'^{RECONCILED_SERIES}{{kind="TrainingJob"}} (\S+)$', text, re.MULTILINE)
        return int(float(match.group(1))) if match else 0

    def watched_jobs(self) -> int:
        """TrainingJobs in the operator's watch cache: the sum of `trainsmart_objects{kind="TrainingJob"}`."""
        url = f"{self.operator.metrics_base}/metrics?name[]=trainsmart_objects"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own loopback URL
            text = response.read().decode()
        pattern = r'^trainsmart_objects{kind="TrainingJob",phase="[^"]*"} (\S+)$'
        return int(sum(float(value) for value in re.findall(pattern, text, re.MULTILINE)))

    def caught_up(self) -> bool:
        """The operator has seen every deletion: it watches no more TrainingJobs than the cluster holds."""
        self.operator.check()
        return self.watched_jobs() <= self.all_trainingjobs()

    def memory_debug(self, label: str) -> None:
        """With `--memory-debug DIR`: the operator's /debug/memory answer (glibc trimmed first) to DIR."""
        directory = os.environ.get("TRAINSMART_SCALE_MEMORY_DIR")
        if not directory:
            return
        url = f"{self.operator.metrics_base}/debug/memory?trim=1"
        with urllib.request.urlopen(url, timeout=120) as response:  # noqa: S310 - our own loopback URL
            report = json.loads(response.read())
        Path(directory, f"{label}.json").write_text(json.dumps(report, indent=1))
        print(
            f"    [memory debug] {label}: RSS {report['rss_mib']:.0f} MiB, after GC+trim "
            f"{report['rss_after_mib']:.0f} MiB, traced {report.get('traced_mib', 0):.0f} MiB",
            flush=True,
        )

    def threads(self) -> int:
        """Threads of the operator process (each worker thread holds a stack and, in glibc, a malloc arena)."""
        assert self.operator.process is not None
        for line in Path(f"/proc/{self.operator.process.pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
        return 0

    def sample_peak(self) -> tuple[Callable[[], int], Callable[[], None]]:
        """Start sampling RSS every 0.5 s; returns (peak so far, stop)."""
        peak = [self.rss()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                with contextlib.suppress(AssertionError, OSError):
                    peak[0] = max(peak[0], self.rss())

        thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
        thread.start()

        def finish() -> None:
            stop.set()
            thread.join(5)

        return (lambda: peak[0]), finish

    # ---- the sweep --------------------------------------------------------------------------------------

    def start_sweep(self, timeout: float = 120.0) -> None:
        """A TPE sweep whose first trial is created (its pod stays Pending): hyperopt is then loaded."""
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HyperparamSweep",
            "metadata": {"name": SWEEP_NAME, "namespace": self.sweep_namespace},
            "spec": {
                "objective": {"metric": "val_accuracy", "goal": "maximize"},
                "algorithm": {"name": "tpe", "seed": 1, "tpe": {"startupTrials": 2}},
                "maxTrials": 4,
                "parallelTrials": 1,
                "parameters": [
                    {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1}
                ],
                "trialTemplate": {
                    "gpusPerReplica": 1,
                    "trainer": {"config": {"model": {"name": "mlp"}, "dataset": {"name": "digits"}, "epochs": 1}},
                },
            },
        }
        self.objects.create_namespaced_custom_object(GROUP, VERSION, self.sweep_namespace, SWEEP_PLURAL, body)
        self.wait(lambda: self._exists(f"{SWEEP_NAME}-0") and self.hyperopt_loaded(), timeout, "the sweep's trial 0")

    def _exists(self, job: str) -> bool:
        try:
            self.objects.get_namespaced_custom_object(GROUP, VERSION, self.sweep_namespace, TRAININGJOB_PLURAL, job)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    # ---- jobs -------------------------------------------------------------------------------------------

    def create_jobs(self, names: list[str], active_every: int, threads: int) -> list[str]:
        """Create the jobs (every `active_every`-th with one running replica, the rest suspended); returns
        the pod names the operator must create."""
        pods: list[str] = []

        def create(item: tuple[int, str]) -> None:
            index, name = item
            body = self.bench.job_body(name, 1)
            body["spec"]["suspend"] = active_every <= 0 or index % active_every != 0
            response = self.objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TRAININGJOB_PLURAL, body, _preload_content=False
            )
            _ = response.data  # read whole: the connection goes back to the pool for the next create

        for index, name in enumerate(names):
            if active_every > 0 and index % active_every == 0:
                pods.append(f"{name}-0")
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(create, enumerate(names)))
        return pods

    def jobs_without_status(self) -> tuple[int, int]:
        """(jobs in the namespace, those the operator has not given a phase yet), from one raw LIST."""
        response = self.objects.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, TRAININGJOB_PLURAL, _preload_content=False, _request_timeout=120
        )
        items = json.loads(response.data).get("items") or []
        return len(items), sum(1 for item in items if not (item.get("status") or {}).get("phase"))

    def wait_handled(self, count: int, pods: list[str], timeout: float) -> float:
        """Until all `count` jobs have a status and all `pods` exist; returns the seconds it took."""
        start = time.monotonic()
        self.recorder.wait_for(pods, timeout)

        def handled() -> bool:
            self.operator.check()
            present, pending = self.jobs_without_status()
            return present == count and pending == 0

        self.wait(handled, max(1.0, timeout - (time.monotonic() - start)), f"{count} jobs with a status", poll=2.0)
        return time.monotonic() - start

    def delete_jobs(self, timeout: float) -> float:
        """Delete every job and its children in the namespace (`bench/operator.py`'s cleanup); seconds taken."""
        start = time.monotonic()
        self.bench.clean(timeout=timeout)
        return time.monotonic() - start

    def resynced(self) -> bool:
        """Every TrainingJob of the cluster reconciled by the running operator process."""
        self.operator.check()
        return self.reconciled_jobs() >= self.all_trainingjobs()

    def all_trainingjobs(self) -> int:
        """TrainingJobs in every namespace (the sweep's trials too): what the operator watches."""
        response = self.objects.list_cluster_custom_object(
            GROUP, VERSION, TRAININGJOB_PLURAL, _preload_content=False, _request_timeout=120
        )
        return len(json.loads(response.data).get("items") or [])

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{self.operator.tail(30)}")
            time.sleep(poll)

    def settle_rss(self, seconds: float) -> int:
        """RSS after `seconds` of quiet (the lowest of a few samples: a scrape or resync can be in flight)."""
        samples = []
        end = time.monotonic() + seconds
        while True:
            samples.append(self.rss())
            if time.monotonic() >= end:
                return min(samples[-3:])
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))


# ---- the phases -------------------------------------------------------------------------------------------


def step(label: str, what: str) -> None:
    """One line per finished step, flushed: where a slow run spends its time (pytest shows it on failure)."""
    print(f"    [{time.strftime('%H:%M:%S')}] {label}: {what}", flush=True)


def rss_cycle(scale: Scale, prefix: str, jobs: int, active_every: int, threads: int, quiet: float) -> dict[str, float]:
    """Create `jobs`, wait until all are handled, let it go quiet, delete them all, let it go quiet: the RSS
    peak, with all present and after deletion; threads after; seconds to apply, handle, delete."""
    peak, stop = scale.sample_peak()
    try:
        names = [f"{prefix}-{i:05d}" for i in range(jobs)]
        started = time.monotonic()
        pods = scale.create_jobs(names, active_every, threads)
        applied = time.monotonic() - started
        step(prefix, f"{jobs} jobs applied in {applied:.1f} s")
        handled = scale.wait_handled(jobs, pods, timeout=120.0 + jobs * 0.2)
        step(prefix, f"all handled {handled:.1f} s later")
        present = scale.settle_rss(quiet)
        present_peak = peak()
        scale.memory_debug(f"{prefix}-present")
        deleted = scale.delete_jobs(timeout=120.0 + jobs * 0.5)
        step(prefix, f"all deleted in {deleted:.1f} s")
        # RSS "after" is read once the operator has processed every DELETED event, not while it catches up.
        scale.wait(scale.caught_up, 60.0 + jobs * 0.05, "the operator to see every deletion", poll=1.0)
        step(prefix, "the operator watches none of them")
        after = scale.settle_rss(quiet + 5.0)
    finally:
        stop()
    return {
        "pods": len(pods),
        "peak": max(present_peak, present),
        "present": present,
        "after": after,
        "threads": scale.threads(),
        "applied_s": applied,
        "handled_s": handled,
        "deleted_s": deleted,
    }


def phase_rss(scale: Scale, jobs: int, active_every: int, threads: int, quiet: float = 10.0) -> dict[str, float]:
    """(1) RSS before / peak / present / after deletion, with the sweep active, over two create-delete
    cycles: the first one's delta includes one-time growth (the API thread pool and the report endpoint's
    threads start, each with its stack and glibc malloc arena, and stay); a leak grows with every cycle,
    so the second cycle's delta is the figure that says whether memory comes back."""
    idle = scale.rss()
    if not scale.hyperopt_loaded():
        scale.start_sweep()
    before = scale.settle_rss(5.0)
    threads_before = scale.threads()
    scale.memory_debug("before")
    first = rss_cycle(scale, "scale", jobs, active_every, threads, quiet)
    scale.memory_debug("after-1")
    second = rss_cycle(scale, "again", jobs, active_every, threads, quiet)
    scale.memory_debug("after-2")
    peak = max(first["peak"], second["peak"])
    verdict = "ok" if peak <= RSS_GOAL else "OVER GOAL"
    back = "ok" if second["after"] - first["after"] <= RSS_RETURN_TOLERANCE else "NOT BACK"
    print(
        f"(1) RSS with {jobs} TrainingJobs ({first['pods']:.0f} with a Pending pod, the rest suspended; a TPE "
        f"sweep active, hyperopt loaded: {scale.hyperopt_loaded()}): applied in {first['applied_s']:.0f} s, all "
        f"handled in {first['handled_s']:.0f} s, all deleted in {first['deleted_s']:.0f} s\n"
        f"    idle {mib(idle)}; before the jobs (sweep active) {mib(before)}, {threads_before} threads; "
        f"peak {mib(peak)}; all present, {quiet:.0f} s quiet {mib(first['present'])} "
        f"(goal <= {mib(RSS_GOAL)}: {verdict})\n"
        f"    after deleting them all: {mib(first['after'])} ({(first['after'] - before) / MIB:+.0f} MiB over "
        f"before; {first['threads']:.0f} threads); after a second create-delete cycle {mib(second['after'])} "
        f"({(second['after'] - first['after']) / MIB:+.0f} MiB over the first: goal <= "
        f"+{mib(RSS_RETURN_TOLERANCE)}: {back})",
        flush=True,
    )
    return {
        "idle": idle,
        "before": before,
        "peak": peak,
        **{f"first_{k}": v for k, v in first.items()},
        **{f"second_{k}": v for k, v in second.items()},
    }


def phase_resync(scale: Scale, jobs: int, active_every: int, threads: int) -> float:
    """(2) N jobs present and handled, then the operator restarted: seconds until it reconciled them all."""
    names = [f"resync-{i:05d}" for i in range(jobs)]
    pods = scale.create_jobs(names, active_every, threads)
    scale.wait_handled(jobs, pods, timeout=120.0 + jobs * 0.2)
    watched = scale.all_trainingjobs()
    scale.operator.stop()
    launched = time.monotonic()
    scale.operator.start(timeout=120.0)
    ready = time.monotonic() - launched
    scale.wait(scale.resynced, 60.0 + jobs * 0.1, f"{watched} jobs reconciled after a restart")
    took = time.monotonic() - launched
    rss = scale.rss()
    print(
        f"(2) resync: operator restarted with {jobs} jobs present: /healthz after {ready:.1f} s, every job "
        f"reconciled by the new process after {took:.1f} s ({jobs / took:.0f} jobs/s); its RSS then {mib(rss)}",
        flush=True,
    )
    scale.delete_jobs(timeout=120.0 + jobs * 0.5)
    return took


def phase_burst(scale: Scale, jobs: int, threads: int) -> tuple[float, float]:
    """(3) M one-replica jobs applied at once vs the same creates made directly; (operator, floor) seconds."""
    bench, recorder = scale.bench, scale.recorder
    try:
        raw = [bench.raw_objects(f"rawburst-{i:04d}", 1) for i in range(jobs)]
        start = time.monotonic()
        list(bench.pool.map(bench._create, [item for dependencies, _ in raw for item in dependencies]))
        list(bench.pool.map(bench._create, [pod for _, pods in raw for pod in pods]))
        recorder.wait_for([f"rawburst-{i:04d}-0" for i in range(jobs)], 120.0 + jobs)
        floor = max(recorder.seen[f"rawburst-{i:04d}-0"] for i in range(jobs)) - start
        bench.clean(timeout=120.0 + jobs * 0.3)
        names = [f"burst-{i:04d}" for i in range(jobs)]
        start = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda name: bench.create_job(name, 1), names))
        applied = time.monotonic() - start
        seen = recorder.wait_for([f"{name}-0" for name in names], 120.0 + jobs)
        elapsed = max(seen.values()) - start
        bench.clean(timeout=120.0 + jobs * 0.3)
    finally:
        bench.pool.shutdown()
        scale.bench = scale.ops.Bench(scale.api, recorder, scale.operator, gpus=1)
    print(
        f"(3) {jobs} one-replica jobs applied at once ({threads} client threads, applied in {applied:.1f} s): all "
        f"pods in {elapsed:.1f} s; raw floor (the same {jobs * 3} creates, {API_CONCURRENCY} threads) "
        f"{floor:.1f} s; ratio {elapsed / floor:.1f}x (reference: the 2x goal of single-job latency)",
        flush=True,
    )
    return elapsed, floor


# ---- the environment --------------------------------------------------------------------------------------


@contextlib.contextmanager
def environment(workdir: Path, namespace: str, sweep_namespace: str) -> Iterator[Scale]:
    """Control plane, CRDs, namespaces, the operator (with /metrics on a free port) and the pod watch."""
    with ControlPlane(workdir=workdir / "controlplane") as cp:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(cp.admin_kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        api = client.ApiClient(configuration)
        operator = trainsmart_operator(
            cp.admin_kubeconfig, workdir / "operator.log", metrics=("127.0.0.1", free_port()), new_session=True
        )
        try:
            ops = load_operator_bench(namespace)
            ops.install_crds(api)
            core = client.CoreV1Api(api)
            for name in (namespace, sweep_namespace):
                core.create_namespace({"metadata": {"name": name}})
            ops._wait(lambda: ops._has_default_sa(core), 30, "the namespace's default ServiceAccount")
            operator.start()
            with ops.PodRecorder(core, namespace) as recorder:
                yield Scale(api, operator, recorder, namespace, sweep_namespace)
        finally:
            operator.stop()
            api.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 jobs, 100 at the restart, a burst of 100")
    parser.add_argument("--jobs", type=int, default=None, help="jobs present in (1) and (2) (default 5000)")
    parser.add_argument("--resync-jobs", type=int, default=None, help="jobs in (2) (default: --jobs; quick 100)")
    parser.add_argument("--burst", type=int, default=None, help="jobs applied at once in (3) (default 1000)")
    parser.add_argument("--active-every", type=int, default=10, help="every Nth job runs a replica (default 10)")
    parser.add_argument("--threads", type=int, default=8, help="client threads creating jobs (default 8)")
    parser.add_argument("--phases", default="rss,resync,burst", help="of rss, resync, burst, latency")
    parser.add_argument("--samples", type=int, default=5, help="jobs per size in the latency phase")
    parser.add_argument(
        "--memory-debug", metavar="DIR", help="run the operator with its /debug/memory hook, save its answers in DIR"
    )
    args = parser.parse_args()
    if args.memory_debug:  # inherited by the operator process
        os.environ["TRAINSMART_DEBUG_MEMORY"] = os.environ.get("TRAINSMART_DEBUG_MEMORY") or "trace"
        os.environ["TRAINSMART_SCALE_MEMORY_DIR"] = args.memory_debug
    phases = set(args.phases.split(","))
    known = {"rss", "resync", "burst", "latency"}
    if not phases <= known:
        parser.error(f"unknown phase(s): {sorted(phases - known)}")
    jobs = args.jobs or (300 if args.quick else 5000)
    resync_jobs = args.resync_jobs or (100 if args.quick else jobs)
    burst = args.burst or (100 if args.quick else 1000)
    print(
        f"scale bench: real control plane, no nodes (pods stay Pending), operator in a subprocess; "
        f"{os.cpu_count()} CPUs shared with the control plane and this client",
        flush=True,
    )
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="trainsmart-bench-scale-") as tmp,
        environment(Path(tmp), "bench", "bench-sweep") as scale,
    ):
        try:
            if "rss" in phases:
                phase_rss(scale, jobs, args.active_every, args.threads, quiet=3.0 if args.quick else 10.0)
            if "resync" in phases:
                phase_resync(scale, resync_jobs, args.active_every, args.threads)
            if "burst" in phases:
                phase_burst(scale, burst, args.threads)
            if "latency" in phases:
                scale.ops.phase_latency(scale.bench, [1, 8, 32], args.samples)
        except (TimeoutError, RuntimeError) as exc:
            print(f"bench failed: {exc}", file=sys.stderr, flush=True)
            return 1
    print(f"done in {time.monotonic() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
