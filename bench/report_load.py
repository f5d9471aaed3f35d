"""Report endpoint under load, printed: reports/s sustained from many trainers, and their latency, while
many other TrainingJobs start at once (issue 13: "report endpoint unreachable ... timed out").

Against a real control plane and the operator as a subprocess (`python -m trainsmart.cli operator`), with
no node agent: this process plays the trainers. It creates `--trainers` TrainingJobs, reads each one's
report token from its Secret (as the pod's env would), then every trainer POSTs epoch reports for its own
job with its own token, one connection per report and a 5 s timeout (as `trainsmart_client.sender`
does), for `--seconds`. Two seconds in, `--burst` more jobs are created at once by 8 client threads: the
"many objects start at once" condition, which keeps the operator's reconciles busy (every job's Service,
Secret and pods, status patches, Kopf's watch events) while the reports flow. The accepted reports
themselves trigger reconciles and status patches too, as real ones do.

Two phases:
- paced: each trainer sends one report every `--interval` seconds (default 1: 200 reports/s offered),
  about the rate of an epoch loop's progress with every trainer reporting at once;
- saturated: each trainer sends its next report as soon as the previous one was answered: the rate the
  endpoint sustains (its p99 is then mostly the trainers' own queueing behind each other).

Printed per phase: reports/s answered 202, p50/p95/p99/max latency, errors by kind (goal: 0), the worst
second's p99 (the burst), and the operator's own histograms from /metrics (report handling time, event
loop lag) when it has them. Every wait is bounded; the control plane and the operator are stopped on the
way out whatever happened.

Usage: python bench/report_load.py [--trainers 200] [--seconds 30] [--burst 200] [--interval 1.0]
                                   [--phases paced,saturated]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.controlplane import ControlPlane, free_port
from trainsmart.devcluster.operator_process import OperatorProcess, trainsmart_operator
from trainsmart.names import REPORT_TOKEN_KEY, report_secret_name

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
REQUEST_TIMEOUT_S = 5.0
"""The client library's default (`ReportSender.request_timeout_s`): beyond it a trainer logs
"report endpoint ... unreachable ... timed out"."""
BURST_AT_S = 2.0
BURST_THREADS = 8


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


# ---- the cluster side -------------------------------------------------------------------------------------


def job_body(name: str, replicas: int) -> dict[str, Any]:
    """A small TrainingJob; its shape, not its training, is what is measured (no node runs its pods)."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "gpusPerReplica": 1,
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}},
            "trainer": {"config": {"model": {"name": "mlp"}, "dataset": {"name": "digits"}, "epochs": 1}},
        },
    }


def install_crds(api: client.ApiClient) -> None:
    extensions = client.ApiextensionsV1Api(api)
    objects = client.CustomObjectsApi(api)
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        with contextlib.suppress(ApiException):
            extensions.create_custom_resource_definition(manifest)
        plural: str = manifest["spec"]["names"]["plural"]
        wait_until(lambda plural=plural: served(objects, plural), 30, f"CRD {plural} served")


def served(objects: client.CustomObjectsApi, plural: str) -> bool:
    try:
        response = objects.get_api_resources(GROUP, VERSION, _preload_content=False, _request_timeout=10)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return plural in {item["name"] for item in json.loads(response.data).get("resources") or []}


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def has_default_sa(core: client.CoreV1Api) -> bool:
    try:
        core.read_namespaced_service_account("default", NAMESPACE)
    except ApiException:
        return False
    return True


@dataclass
class Cluster:
    api: client.ApiClient
    operator: OperatorProcess
    core: client.CoreV1Api = field(init=False)
    objects: client.CustomObjectsApi = field(init=False)

    def __post_init__(self) -> None:
        self.core = client.CoreV1Api(self.api)
        self.objects = client.CustomObjectsApi(self.api)

    def create_job(self, name: str, replicas: int) -> None:
        self.objects.create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, TRAININGJOB_PLURAL, job_body(name, replicas), _request_timeout=60
        )

    def token(self, job: str) -> str | None:
        try:
            secret = self.core.read_namespaced_secret(report_secret_name(job), NAMESPACE, _preload_content=False)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        encoded = (json.loads(secret.data).get("data") or {}).get(REPORT_TOKEN_KEY)
        return base64.b64decode(encoded).decode() if isinstance(encoded, str) else None

    def tokens(self, jobs: list[str], timeout: float) -> dict[str, str]:
        """Each job's report token, once the operator has created its Secret."""
        found: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        with ThreadPoolExecutor(BURST_THREADS) as pool:
            while len(found) < len(jobs):
                missing = [job for job in jobs if job not in found]
                for job, token in zip(missing, pool.map(self.token, missing), strict=True):
                    if token is not None:
                        found[job] = token
                if len(found) < len(jobs):
                    if time.monotonic() > deadline:
                        self.operator.check()
                        raise TimeoutError(f"{len(jobs) - len(found)} report-token Secrets never appeared")
                    time.sleep(0.5)
        return found


@contextlib.contextmanager
def environment(workdir: Path) -> Iterator[Cluster]:
    """Control plane, CRDs, namespace and the operator (with /metrics); all stopped on the way out."""
    with ControlPlane(workdir=workdir / "controlplane") as cp:
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(cp.admin_kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        api = client.ApiClient(configuration)
        operator = trainsmart_operator(
            cp.admin_kubeconfig,
            workdir / "operator.log",
            metrics=("127.0.0.1", free_port("127.0.0.1")),
            new_session=True,
        )
        try:
            install_crds(api)
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            wait_until(lambda: has_default_sa(core), 30, "the namespace's default ServiceAccount")
            operator.start()
            yield Cluster(api, operator)
        finally:
            operator.stop()
            api.close()
            if os.environ.get("BENCH_KEEP_LOG"):
                print((workdir / "operator.log").read_text(errors="replace")[-20000:])


# ---- the trainers -----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    by_second: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    accepted: int = 0


def epoch_report(job: str, epoch: int) -> bytes:
    body = {
        "kind": "epoch",
        "time": "2025-01-01T12:00:00+00:00",
        "epoch": epoch,
        "totalEpochs": 1_000_000,
        "metrics": {"train_loss": 1.0 / (epoch + 1), "val_accuracy": min(0.99, epoch / 1000)},
        "device": {"type": "cpu"},
        "job": {"namespace": NAMESPACE, "name": job},
    }
    return json.dumps(body).encode()


async def trainer(
    session: aiohttp.ClientSession, url: str, job: str, token: str, interval: float, until: float, out: Outcome
) -> None:
    """One trainer: POST an epoch report, wait out `interval` (from the start of the previous send)."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    epoch = 0
    began = loop.time()
    # Spread the first reports over one interval, as trainers that did not start together would.
    await asyncio.sleep((hash(job) % 1000) / 1000 * interval)
    while loop.time() < until:
        epoch += 1
        sent = loop.time()
        try:
            async with session.post(f"{url}/{NAMESPACE}/{job}", data=epoch_report(job, epoch), headers=headers) as r:
                await r.read()
                status = r.status
        except TimeoutError:
            out.errors["timed out (5 s)"] += 1
        except aiohttp.ClientError as exc:
            out.errors[type(exc).__name__] += 1
        else:
            latency = loop.time() - sent
            if status == 202:
                out.accepted += 1
                out.latencies.append(latency)
                out.by_second[int(sent - began)].append(latency)
            else:
                out.errors[f"HTTP {status}"] += 1
        pause = sent + interval - loop.time()
        if pause > 0:
            await asyncio.sleep(pause)


async def run_trainers(url: str, tokens: dict[str, str], interval: float, seconds: float) -> tuple[Outcome, float]:
    out = Outcome()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    # One connection per report, as the client library's urllib sender makes them.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        loop = asyncio.get_running_loop()
        began = loop.time()
        until = began + seconds
        await asyncio.gather(
            *(trainer(session, url, job, token, interval, until, out) for job, token in tokens.items())
        )
        return out, loop.time() - began


def create_burst(cluster: Cluster, names: list[str], replicas: int, done: dict[str, float]) -> None:
    time.sleep(BURST_AT_S)
    start = time.monotonic()
    with ThreadPoolExecutor(BURST_THREADS) as pool:
        list(pool.map(lambda name: cluster.create_job(name, replicas), names))
    done["applied_s"] = time.monotonic() - start


# ---- the operator's own view ------------------------------------------------------------------------------


def scrape(cluster: Cluster) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The operator's /metrics as {sample name: [(labels, value)]}; empty when not served."""
    if not cluster.operator.metrics_base:
        return {}
    with urllib.request.urlopen(cluster.operator.metrics_base + "/metrics", timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = defaultdict(list)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = dict(
            (pair.split("=", 1)[0], pair.split("=", 1)[1].strip('"')) for pair in rest.rstrip("}").split(",") if pair
        )
        samples[name].append((labels, float(value)))
    return samples


def histogram_summary(
    before: dict[str, list[tuple[dict[str, str], float]]],
    after: dict[str, list[tuple[dict[str, str], float]]],
    name: str,
    match: dict[str, str],
) -> str | None:
    """p50/p99 upper bounds (bucket edges) and the count of a histogram's observations between two scrapes."""

    def buckets(samples: dict[str, list[tuple[dict[str, str], float]]]) -> dict[float, float]:
        return {
            float(labels["le"]): value
            for labels, value in samples.get(name + "_bucket", [])
            if all(labels.get(k) == v for k, v in match.items())
        }

    now, then = buckets(after), buckets(before)
    if not now:
        return None
    delta = sorted((le, count - then.get(le, 0.0)) for le, count in now.items())
    total = delta[-1][1]
    if total <= 0:
        return None

    def quantile(q: float) -> str:
        le = next(le for le, count in delta if count >= q * total)
        return "> largest bucket" if le == float("inf") else f"<= {ms(le)}"

    return f"p50 {quantile(0.5)}, p99 {quantile(0.99)}, max {quantile(1.0)} ({total:.0f} samples)"


# ---- the phases -------------------------------------------------------------------------------------------


def phase(cluster: Cluster, label: str, tokens: dict[str, str], interval: float, seconds: float, burst: int) -> int:
    names = [f"burst-{label}-{i:04d}" for i in range(burst)]
    applied: dict[str, float] = {}
    creator = threading.Thread(target=create_burst, args=(cluster, names, 2, applied), daemon=True)
    before = scrape(cluster)
    profiler = None
    if os.environ.get("BENCH_PYSPY"):  # where to write py-spy's raw stacks of the operator during the phase
        assert cluster.operator.process is not None
        profiler = subprocess.Popen(
            [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(cluster.operator.process.pid),
             "--duration", str(int(seconds)), "--rate", "100", "--format", "raw", "--threads", "--nonblocking",
             "--output", f"{os.environ['BENCH_PYSPY']}-{label}.txt"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
    creator.start()
    out, elapsed = asyncio.run(run_trainers(cluster.operator.report_base + "/v1/reports", tokens, interval, seconds))
    creator.join(120)
    if profiler is not None:
        profiler.wait(60)
    cluster.operator.check()
    after = scrape(cluster)
    offered = f"1 report / {interval:g} s each" if interval > 0 else "closed loop, no pause"
    errors = sum(out.errors.values())
    worst_second = max(out.by_second, key=lambda s: percentile(out.by_second[s], 99), default=0)
    print(
        f"{label}: {len(tokens)} trainers ({offered}) for {seconds:.0f} s, {burst} jobs x 2 replicas created at "
        f"t={BURST_AT_S:g} s by {BURST_THREADS} threads (applied in {applied.get('applied_s', float('nan')):.1f} s)\n"
        f"  {out.accepted / elapsed:.0f} reports/s accepted ({out.accepted} in {elapsed:.1f} s); latency p50 "
        f"{ms(percentile(out.latencies, 50))}, p95 {ms(percentile(out.latencies, 95))}, p99 "
        f"{ms(percentile(out.latencies, 99))}, max {ms(max(out.latencies, default=0.0))}\n"
        f"  worst second (t={worst_second} s): p99 {ms(percentile(out.by_second.get(worst_second, []), 99))} over "
        f"{len(out.by_second.get(worst_second, []))} reports\n"
        f"  errors: {errors}" + (f" ({dict(out.errors)})" if errors else "") + " (goal 0)",
        flush=True,
    )
    for title, name, match in (
        ("operator: report handling", "trainsmart_report_handling_seconds", {}),
        ("operator: token reads (Secret GET)", "trainsmart_report_token_read_seconds", {}),
        ("operator: controller event-loop lag", "trainsmart_event_loop_lag_seconds", {"loop": "controller"}),
        ("operator: report event-loop lag", "trainsmart_event_loop_lag_seconds", {"loop": "reports"}),
        ("operator: reconcile", "trainsmart_reconcile_duration_seconds", {"kind": "TrainingJob"}),
    ):
        summary = histogram_summary(before, after, name, match)
        if summary is not None:
            print(f"  {title}: {summary}", flush=True)
    return errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", type=int, default=200, help="simulated trainers, each its own job (200)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each phase (30)")
    parser.add_argument("--burst", type=int, default=200, help="jobs created at once during each phase (200)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a paced trainer's reports")
    parser.add_argument("--phases", default="paced,saturated", help="which of paced, saturated (both)")
    args = parser.parse_args()
    phases = args.phases.split(",")
    if not set(phases) <= {"paced", "saturated"}:
        parser.error(f"unknown phase(s): {sorted(set(phases) - {'paced', 'saturated'})}")
    print(
        f"report load bench: real control plane, operator in a subprocess, no nodes; {os.cpu_count()} CPUs "
        f"shared by the control plane, the operator and these {args.trainers} trainers",
        flush=True,
    )
    began = time.monotonic()
    failures = 0
    with tempfile.TemporaryDirectory(prefix="trainsmart-bench-reports-") as tmp, environment(Path(tmp)) as cluster:
        jobs = [f"trainer-{i:04d}" for i in range(args.trainers)]
        with ThreadPoolExecutor(BURST_THREADS) as pool:
            list(pool.map(lambda name: cluster.create_job(name, 1), jobs))
        tokens = cluster.tokens(jobs, timeout=120.0 + args.trainers)
        time.sleep(3.0)  # the trainers' own jobs settle (pods created, Pending status written)
        try:
            for name in phases:
                interval = args.interval if name == "paced" else 0.0
                failures += phase(cluster, name, tokens, interval, args.seconds, args.burst)
        except (TimeoutError, RuntimeError) as exc:
            print(f"bench failed: {exc}", file=sys.stderr, flush=True)
            return 1
    print(f"done in {time.monotonic() - began:.0f} s", flush=True)
    return 0 if failures == 0 else 2


if __name__ == "__main__":
    sys.exit(main())
