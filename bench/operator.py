"""Operator figures, printed: how much the operator adds on top of the pod creates it has to make.

Against a real control plane (etcd, kube-apiserver, kube-scheduler, kube-controller-manager) and the
operator as a subprocess (`python -m trainsmart.cli operator`), with no node agent: pods stay Pending, and
"all pods created" (the watch's ADDED event of each pod) is the measure, so the figures are the operator's
and the apiserver's, not the simulated kubelet's.

- (a) apply -> all pods created, p50/p95 over N jobs each for 1-, 8- and 32-replica TrainingJobs, next to
  the raw floor: the same creates the operator makes, made by this process with the kubernetes client and
  the same concurrency (`API_CONCURRENCY` threads): what the pods depend on (`pod_dependencies`: Service,
  Secret, and PVC/ConfigMap when the job has them) concurrently, then the pods (`build_worker_pod`)
  concurrently. In the same run and interleaved sample by sample, so both see the same machine; printed as
  a ratio (target p50 <= 2x the floor, issue 13);
- (b) throughput: M jobs created at once, jobs/s until every one of their pods exists;
- (c) the operator's RSS (VmRSS of its process tree) with K jobs present (target <= 200 MiB).

Timestamps come from one pod watch (ADDED events), not from polling, so a figure is not rounded up to a
poll interval. Every wait is bounded; the run stops by itself, and the control plane and the operator are
stopped on the way out whatever happened.

Usage: python bench/operator.py [--quick] [--samples 20] [--burst 200] [--population 1000]
                                [--phases latency,throughput,memory]
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named like the standard library's `operator`; keep its directory off the import path so
# nothing imported below can pick it up instead (CPython imports the real one at startup, but be explicit).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse  # after the sys.path fix above, on purpose
import contextlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION, TrainingJob
from trainsmart.builders import build_worker_pod
from trainsmart.devcluster.controlplane import ControlPlane
from trainsmart.devcluster.operator_process import OperatorProcess, trainsmart_operator
from trainsmart.handlers.trainingjob_controller import client_zipapp, pod_dependencies
from trainsmart.kube import API_CONCURRENCY, FIELD_MANAGER
from trainsmart.names import JOB_NAME_LABEL
from trainsmart.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
RAW_LABEL = "bench.trainsmart.dev/raw-job"
"""Raw-floor objects carry this instead of the job-name label, so the operator's pod watch ignores them."""
TARGET_RATIO = 2.0
"""apply -> all pods p50 within this factor of the raw floor's (issue 13)."""
MIB = 1024 * 1024


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; with 20 samples p95 is the second largest and p99 the maximum."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# ---- the pod watch ----------------------------------------------------------------------------------------


class PodRecorder:
    """When each pod of the namespace was first seen (monotonic time of its ADDED event).

    Runs one watch in a thread, raw JSON (no model deserialisation, which would cost more CPU than the
    event itself and delay the timestamps). Reconnects from the last resourceVersion; on 410 Gone it
    relists, and pods first seen in a relist are stamped with the relist time (rare; counted)."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.core = core
        self.namespace = namespace
        self.seen: dict[str, float] = {}
        self.relisted = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pod-watch", daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the pod watch did not start within 30 s")
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _list(self) -> str:
        response = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
        body = json.loads(response.data)
        now = time.monotonic()
        with self._cond:
            for item in body.get("items") or []:
                name = item["metadata"]["name"]
                if name not in self.seen:
                    self.seen[name] = now
                    self.relisted += 1
            self._cond.notify_all()
        return str(body["metadata"]["resourceVersion"])

    def _run(self) -> None:
        try:
            version = self._list()
            self.relisted = 0
            self._ready.set()
            while not self._stop.is_set():
                version = self._watch_once(version)
        except BaseException as exc:  # surfaced by wait_for: a dead watch must not look like a slow operator
            self._error = exc
            self._ready.set()
            with self._cond:
                self._cond.notify_all()

    def _watch_once(self, version: str) -> str:
        """One watch request (the server ends it after a few seconds, so `stop` is noticed); returns the
        resourceVersion to resume from."""
        response = self.core.list_namespaced_pod(
            self.namespace,
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=5,
            _preload_content=False,
        )
        try:
            for line in iter_resp_lines(response):
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return self._list()
                    raise RuntimeError(f"pod watch error: {obj}")
                version = str(obj.get("metadata", {}).get("resourceVersion", version))
                if kind == "ADDED":
                    self._stamp(obj["metadata"]["name"])
                if self._stop.is_set():
                    break
        finally:
            response.release_conn()
        return version

    def _stamp(self, name: str) -> None:
        now = time.monotonic()
        with self._cond:
            self.seen.setdefault(name, now)
            self._cond.notify_all()

    def wait_for(self, names: Iterable[str], timeout: float) -> dict[str, float]:
        """First-seen times of `names`; raises TimeoutError (with how many are missing) after `timeout`."""
        wanted = list(names)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._error is not None:
                    raise RuntimeError(f"the pod watch died: {self._error!r}")
                missing = [n for n in wanted if n not in self.seen]
                if not missing:
                    return {n: self.seen[n] for n in wanted}
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(missing)} of {len(wanted)} pods never appeared, e.g. {missing[:3]}")
                self._cond.wait(min(left, 1.0))

    def forget(self) -> None:
        with self._cond:
            self.seen.clear()


# ---- the operator process ---------------------------------------------------------------------------------


def operator_rss_bytes(operator: OperatorProcess) -> int:
    """VmRSS of the operator and every descendant (Kopf runs none today; a future one would count)."""
    assert operator.process is not None
    return sum(_vm_rss(pid) for pid in _process_tree(operator.process.pid))


def _process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree.extend(frontier)
    return tree


def _vm_rss(pid: int) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ---- the cluster side -------------------------------------------------------------------------------------


class Bench:
    """The API handles, the recorder and the manifests shared by the three phases."""

    def __init__(self, api: client.ApiClient, recorder: PodRecorder, operator: OperatorProcess, gpus: int) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.objects = client.CustomObjectsApi(api)
        self.recorder = recorder
        self.operator = operator
        self.gpus = gpus
        self.settings = OperatorSettings(report_url=f"{operator.report_base}/v1/reports")
        self.pool = ThreadPoolExecutor(API_CONCURRENCY, thread_name_prefix="raw-floor")

    def job_body(self, name: str, replicas: int) -> dict[str, Any]:
        """A small TrainingJob like the digits example; its shape, not its training, is what is measured."""
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {
                "replicas": replicas,
                "gpusPerReplica": self.gpus,
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
                "trainer": {"config": {"model": {"name": "mlp"}, "dataset": {"name": "digits"}, "epochs": 1}},
            },
        }

    def raw_objects(self, name: str, replicas: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Exactly what the operator would create for that job (what its pods depend on, then its pods),
        minus the owner references (there is no job to own them, and the garbage collector would delete
        them mid-measure) and with `RAW_LABEL` for the job-name label."""
        body = self.job_body(name, replicas)
        body["metadata"]["uid"] = "00000000-0000-0000-0000-000000000000"
        job = TrainingJob.model_validate(body)
        zipapp = client_zipapp() if job.spec.trainer.metrics is not None else None
        dependencies = pod_dependencies(job, self.settings, "bench-token", zipapp)
        pods = [build_worker_pod(job, index, 0, self.settings) for index in range(replicas)]
        for manifest in dependencies + pods:
            manifest["metadata"].pop("ownerReferences", None)
            labels = manifest["metadata"].setdefault("labels", {})
            labels[RAW_LABEL] = labels.pop(JOB_NAME_LABEL, name)
        return dependencies, pods

    def create_job(self, name: str, replicas: int) -> None:
        self.objects.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, TRAININGJOB_PLURAL, self.job_body(name, replicas)
        )

    def pod_names(self, name: str, replicas: int) -> list[str]:
        return [f"{name}-{index}" for index in range(replicas)]

    def time_raw(self, name: str, replicas: int, timeout: float) -> float:
        """The floor: the operator's creates with the operator's concurrency, dependencies then pods."""
        dependencies, pods = self.raw_objects(name, replicas)
        start = time.monotonic()
        list(self.pool.map(self._create, dependencies))
        list(self.pool.map(self._create, pods))
        seen = self.recorder.wait_for(self.pod_names(name, replicas), timeout)
        return max(seen.values()) - start

    def _create(self, manifest: dict[str, Any]) -> None:
        """One create, as `Kube.create_if_absent` sends it (raw response, one field manager)."""
        create = {
            "Pod": self.core.create_namespaced_pod,
            "Service": self.core.create_namespaced_service,
            "Secret": self.core.create_namespaced_secret,
            "ConfigMap": self.core.create_namespaced_config_map,
            "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
        }[manifest["kind"]]
        create(NAMESPACE, manifest, field_manager=FIELD_MANAGER, _preload_content=False).data  # noqa: B018

    def time_operator(self, name: str, replicas: int, timeout: float) -> float:
        start = time.monotonic()
        self.create_job(name, replicas)
        try:
            seen = self.recorder.wait_for(self.pod_names(name, replicas), timeout)
        except TimeoutError as exc:
            self.operator.check()
            raise TimeoutError(f"job {name}: {exc}\noperator log:\n{self.operator.tail()}") from exc
        return max(seen.values()) - start

    def clean(self, timeout: float = 300.0) -> None:
        """Delete every job, pod, and job Service, Secret, ConfigMap and PVC in the namespace, and wait until
        they are gone, so the next measure starts from the same empty namespace. The children are deleted
        here rather than left to the garbage collector: its client is rate-limited (20 QPS), and thousands
        of dependents would take minutes."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ApiException):
                self.objects.delete_collection_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, TRAININGJOB_PLURAL, propagation_policy="Background", _request_timeout=60
                )
            for selector in (JOB_NAME_LABEL, RAW_LABEL):
                with contextlib.suppress(ApiException):
                    self.core.delete_collection_namespaced_pod(
                        NAMESPACE, label_selector=selector, grace_period_seconds=0, _request_timeout=60
                    )
            for selector in (JOB_NAME_LABEL, RAW_LABEL):
                for delete in (
                    self.core.delete_collection_namespaced_secret,
                    self.core.delete_collection_namespaced_config_map,
                    self.core.delete_collection_namespaced_persistent_volume_claim,
                ):
                    with contextlib.suppress(ApiException):
                        delete(NAMESPACE, label_selector=selector, _request_timeout=60)
            services = self._names(self.core.list_namespaced_service)  # no deletecollection for Services in 1.20
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(self._delete_service, services))
            left = {
                "jobs": len(self._job_names()),
                "pods": len(self._names(self.core.list_namespaced_pod)),
                "services": len(self._names(self.core.list_namespaced_service)),
            }
            if not any(left.values()):
                self.recorder.forget()
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"still present {timeout:.0f} s after deleting everything: {left}")
            time.sleep(0.5)

    def _delete_service(self, name: str) -> None:
        with contextlib.suppress(ApiException):
            # Raw: v1.20 answers with a Status where the client expects a Service, which it cannot parse.
            self.core.delete_namespaced_service(name, NAMESPACE, _request_timeout=30, _preload_content=False)

    def _names(self, lister: Callable[..., Any]) -> list[str]:
        """Names from a core list call, as raw JSON (model deserialisation of thousands of objects is slow)."""
        response = lister(NAMESPACE, label_selector=JOB_NAME_LABEL, _preload_content=False, _request_timeout=60)
        raw = lister(NAMESPACE, label_selector=RAW_LABEL, _preload_content=False, _request_timeout=60)
        items = (json.loads(response.data).get("items") or []) + (json.loads(raw.data).get("items") or [])
        return [str(item["metadata"]["name"]) for item in items]

    def _job_names(self) -> list[str]:
        body = self.objects.list_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, TRAININGJOB_PLURAL, _request_timeout=60
        )
        return [str(item["metadata"]["name"]) for item in body.get("items") or []]


def install_crds(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    objects = client.CustomObjectsApi(api)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        with contextlib.suppress(ApiException):
            extensions.create_custom_resource_definition(manifest)
        plural: str = manifest["spec"]["names"]["plural"]

        def served(plural: str = plural) -> bool:
            return _served(objects, plural)

        _wait(served, 30, f"CRD {plural} served")


def _served(objects: client.CustomObjectsApi, plural: str) -> bool:
    """Listed by API discovery, which is where Kopf looks at its start (Established comes a bit earlier)."""
    try:
        response = objects.get_api_resources(GROUP, VERSION, _preload_content=False, _request_timeout=10)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return plural in {item["name"] for item in json.loads(response.data).get("resources") or []}


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# ---- the phases -------------------------------------------------------------------------------------------


def phase_latency(bench: Bench, sizes: list[int], samples: int) -> None:
    """(a) Raw and operator samples alternate, so drift in the machine's load hits both alike."""
    print(
        f"(a) apply -> all pods created, {samples} jobs per size; raw floor = the same creates made directly "
        f"({API_CONCURRENCY} threads: dependencies concurrently, then the pods concurrently):"
    )
    for replicas in sizes:
        raw: list[float] = []
        via_operator: list[float] = []
        timeout = 60.0 + replicas
        for i in range(samples):
            raw.append(bench.time_raw(f"raw{replicas}-{i}", replicas, timeout))
            via_operator.append(bench.time_operator(f"op{replicas}-{i}", replicas, timeout))
            bench.clean()
        floor50, op50 = percentile(raw, 50), percentile(via_operator, 50)
        verdict = "ok" if op50 <= TARGET_RATIO * floor50 else "OVER TARGET"
        print(
            f"  {replicas:>2} replica(s): operator p50 {ms(op50)}, p95 {ms(percentile(via_operator, 95))}; "
            f"raw floor p50 {ms(floor50)}, p95 {ms(percentile(raw, 95))}; "
            f"ratio p50 {op50 / floor50:.1f}x (target <= {TARGET_RATIO:g}x: {verdict})",
            flush=True,
        )


def phase_throughput(bench: Bench, jobs: int, replicas: int, threads: int) -> None:
    """(b) All jobs created as fast as `threads` clients can, then the time until the last pod exists."""
    names = [f"burst-{i:04d}" for i in range(jobs)]
    created: dict[str, float] = {}
    start = time.monotonic()

    def create(name: str) -> None:
        bench.create_job(name, replicas)
        created[name] = time.monotonic()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, names))
    applied = time.monotonic() - start
    wanted = [pod for name in names for pod in bench.pod_names(name, replicas)]
    try:
        seen = bench.recorder.wait_for(wanted, timeout=120.0 + jobs * replicas * 0.5)
    except TimeoutError as exc:
        bench.operator.check()
        raise TimeoutError(f"burst: {exc}\noperator log:\n{bench.operator.tail()}") from exc
    elapsed = max(seen.values()) - start
    per_job = [max(seen[pod] for pod in bench.pod_names(name, replicas)) - created[name] for name in names]
    print(
        f"(b) throughput: {jobs} jobs x {replicas} replicas applied at once ({threads} client threads, "
        f"all applied in {applied:.1f} s): all {len(wanted)} pods in {elapsed:.1f} s = {jobs / elapsed:.1f} jobs/s; "
        f"per job apply -> pods p50 {ms(percentile(per_job, 50))}, p99 {ms(percentile(per_job, 99))}",
        flush=True,
    )


def phase_memory(bench: Bench, jobs: int, threads: int) -> None:
    """(c) RSS after the operator has created every pod and gone quiet (the figure), plus the peaks while
    the jobs were being created and while they were being deleted (a delete storm is events too)."""
    idle = operator_rss_bytes(bench.operator)
    peak = {"create": idle, "delete": idle}
    stage = "create"
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(AssertionError):
                peak[stage] = max(peak[stage], operator_rss_bytes(bench.operator))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    names = [f"pop-{i:04d}" for i in range(jobs)]
    start = time.monotonic()
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda name: bench.create_job(name, 1), names))
        try:
            bench.recorder.wait_for([f"{name}-0" for name in names], timeout=120.0 + jobs * 0.5)
        except TimeoutError as exc:
            bench.operator.check()
            raise TimeoutError(f"population: {exc}\noperator log:\n{bench.operator.tail()}") from exc
        ready = time.monotonic() - start
        time.sleep(10.0)  # the scheduler's Unschedulable updates and the operator's follow-up reconciles settle
        settled = operator_rss_bytes(bench.operator)
        verdict = "ok" if settled <= 200 * MIB else "OVER TARGET"
        print(
            f"(c) operator RSS with {jobs} jobs present (all pods created in {ready:.0f} s, then 10 s idle): "
            f"{settled / MIB:.0f} MiB (target <= 200 MiB: {verdict}); idle before {idle / MIB:.0f} MiB, "
            f"peak while creating {peak['create'] / MIB:.0f} MiB",
            flush=True,
        )
        stage = "delete"
        began = time.monotonic()
        bench.clean(timeout=120.0 + jobs * 0.3)
        time.sleep(5.0)  # the operator's reconciles of the deleted jobs (404 -> forget) finish
        after = operator_rss_bytes(bench.operator)
    finally:
        stop.set()
        sampler.join(5)
    print(
        f"    deleting them ({time.monotonic() - began:.0f} s): peak {peak['delete'] / MIB:.0f} MiB, "
        f"{after / MIB:.0f} MiB 5 s after the last was gone (no target)",
        flush=True,
    )


@contextlib.contextmanager
def environment(workdir: Path, gpus: int) -> Iterator[Bench]:
    """Control plane, CRDs, namespace, the operator and the pod watch; all stopped on the way out."""
    with ControlPlane(workdir=workdir / "controlplane") as cp:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(cp.admin_kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32  # the creating threads of (b) and (c), plus the watch
        api = client.ApiClient(configuration)
        # Its own session: a Ctrl-C in the terminal reaches the bench, which stops it in order.
        operator = trainsmart_operator(cp.admin_kubeconfig, workdir / "operator.log", new_session=True)
        try:
            install_crds(api)
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            _wait(lambda: _has_default_sa(core), 30, "the namespace's default ServiceAccount")
            operator.start()
            with PodRecorder(core, NAMESPACE) as recorder:
                yield Bench(api, recorder, operator, gpus=gpus)
        finally:
            operator.stop()
            api.close()


def _has_default_sa(core: client.CoreV1Api) -> bool:
    try:
        core.read_namespaced_service_account("default", NAMESPACE)
    except ApiException:
        return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller run: 5 samples, 50-job burst, 200 jobs")
    parser.add_argument("--samples", type=int, default=None, help="jobs per size in (a) (default 20, quick 5)")
    parser.add_argument("--sizes", default="1,8,32", help="replica counts for (a) (default 1,8,32)")
    parser.add_argument("--burst", type=int, default=None, help="jobs applied at once in (b) (default 200, quick 50)")
    parser.add_argument("--burst-replicas", type=int, default=2, help="replicas per job in (b) (default 2)")
    parser.add_argument("--population", type=int, default=None, help="jobs present in (c) (default 1000, quick 200)")
    parser.add_argument("--gpus-per-replica", type=int, default=1, help="nvidia.com/gpu per pod (default 1)")
    parser.add_argument("--threads", type=int, default=8, help="client threads creating jobs in (b), (c)")
    parser.add_argument(
        "--phases", default="latency,throughput,memory", help="which of (a) latency, (b) throughput, (c) memory"
    )
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    if not phases <= {"latency", "throughput", "memory"}:
        parser.error(f"unknown phase(s): {sorted(phases - {'latency', 'throughput', 'memory'})}")
    samples = args.samples or (5 if args.quick else 20)
    burst = args.burst or (50 if args.quick else 200)
    population = args.population or (200 if args.quick else 1000)
    sizes = [int(size) for size in args.sizes.split(",")]
    print(
        f"operator bench: real control plane (scheduler, controller-manager), no nodes; operator pid in a "
        f"subprocess; {os.cpu_count()} CPUs shared with the control plane and this client",
        flush=True,
    )
    began = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="trainsmart-bench-op-") as tmp,
        environment(Path(tmp), args.gpus_per_replica) as bench,
    ):
        try:
            if "latency" in phases:
                phase_latency(bench, sizes, samples)
                bench.clean()
            if "throughput" in phases:
                phase_throughput(bench, burst, args.burst_replicas, args.threads)
                bench.clean()
            if "memory" in phases:
                phase_memory(bench, population, args.threads)  # no clean after it: the control plane goes next
        except (TimeoutError, RuntimeError) as exc:
            print(f"bench failed: {exc}", file=sys.stderr, flush=True)
            return 1
        finally:
            if bench.recorder.relisted:
                print(f"note: {bench.recorder.relisted} pods were stamped by a relist after a 410", flush=True)
    print(f"done in {time.monotonic() - began:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
