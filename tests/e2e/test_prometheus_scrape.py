"""A real Prometheus (Debian's `prometheus` binary, started here with its own config and data dir on a free
loopback port) scrapes the real operator while the packaged trainer runs a job on digits.

Pins:
- PromQL for the job's objective gauge returns the value the job's status holds, labelled with the
  objective's name; the phase gauge returns the job's final phase, and showed Running while it trained;
- progress reaches 1, and the operator counted successful reconciles and accepted (202) reports;
- every query of the chart's Grafana dashboard parses and runs on this Prometheus;
- jobs created and deleted leave no series behind, in /metrics and in Prometheus (no label growth).

`make test` installs the binary (scripts/install-prometheus.sh); without it these tests skip and say why.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from support.manifests import (
    FAST_DIGITS,
    GPU_TOLERATIONS,
    ONE_THREAD_ENV,
    random_lr_sweep_spec,
    sweep_body,
    trainingjob_body,
)
from support.paths import REPO
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.controlplane import free_port

pytestmark = pytest.mark.e2e

PROMETHEUS = shutil.which("prometheus")
DASHBOARD = REPO / "charts" / "trainsmart" / "dashboards" / "trainsmart.json"


class Prometheus:
    """A Prometheus server process and its HTTP query API."""

    def __init__(self, base: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.base, self.process, self.log = base, process, log

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on an error answer, e.g. a parse error)."""
        url = f"{self.base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback http
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            raise AssertionError(f"{promql!r}: HTTP {error.code} {error.read().decode()[:500]}") from error
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def values(self, promql: str) -> list[tuple[dict[str, str], float]]:
        return [(item["metric"], float(item["value"][1])) for item in self.query(promql)]

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:]) if self.log.exists() else ""


@pytest.fixture(scope="module")
def prometheus(operator_process: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    if PROMETHEUS is None:
        pytest.skip(
            "Debian's prometheus binary is not installed (`make test` installs it: scripts/install-prometheus.sh)"
        )
    assert operator_process.metrics_base, "the session operator serves no /metrics"
    work = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "trainsmart-operator",
                # As the chart's ServiceMonitor: the operator's `namespace`/`job` labels name TrainingJobs.
                "honor_labels": True,
                "static_configs": [{"targets": [operator_process.metrics_base.removeprefix("http://")]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port("127.0.0.1")
    log = work / "prometheus.log"
    argv = [
        PROMETHEUS,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:

        def ready() -> bool:
            assert process.poll() is None, f"prometheus exited with {process.returncode}:\n{server.tail()}"
            try:
                with urllib.request.urlopen(f"{server.base}/-/ready", timeout=1) as response:  # noqa: S310
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_for(ready, 30, "Prometheus to be ready", server.tail)
        wait_for(
            lambda: [value for _, value in server.values('up{job="trainsmart-operator"}')] == [1.0],
            30,
            "the operator target to be up",
            server.tail,
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def objects(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def create_job(objects: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]) -> None:
    body = trainingjob_body(name, {"tolerations": GPU_TOLERATIONS, **spec})
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, body)


def status_of(objects: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    job = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, name)
    return dict(job.get("status") or {})


def scrape(base: str) -> str:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:  # noqa: S310 - loopback http
        return str(response.read().decode())


def test_prometheus_reads_a_real_jobs_objective_and_phase(
    prometheus: Prometheus, objects: client.CustomObjectsApi, namespace: str
) -> None:
    # Batch size 1: about a second per epoch, so the job is Running for several scrapes.
    trainer = {"config": {**FAST_DIGITS, "batchSize": 1, "epochs": 3}, "env": ONE_THREAD_ENV}
    create_job(objects, namespace, "scraped", {"trainer": trainer})
    job = f'namespace="{namespace}", job="scraped"'
    # Prometheus saw it Running while the trainer ran.
    wait_for(
        lambda: prometheus.values(f'max_over_time(trainsmart_job_phase{{{job}, phase="Running"}}[10m])'),
        120,
        "Prometheus to see the job Running",
        lambda: (
            f"{status_of(objects, namespace, 'scraped')}\nscrapes ok/total: "
            f"{prometheus.values('sum_over_time(up[10m])')}/{prometheus.values('count_over_time(up[10m])')}"
        ),
    )
    status = wait_for(
        lambda: (s := status_of(objects, namespace, "scraped")).get("phase") in ("Succeeded", "Failed") and s,
        120,
        "the job to finish",
        lambda: str(status_of(objects, namespace, "scraped")),
    )
    assert status["phase"] == "Succeeded", status
    metric = status["metrics"]["objective"]
    expected = status["metrics"]["latest"][metric]

    def objective() -> list[tuple[dict[str, str], float]] | None:
        found = prometheus.values(f"trainsmart_job_objective{{{job}}}")
        return found if found and found[0][1] == pytest.approx(expected, rel=1e-12) else None

    found = wait_for(
        objective, 30, f"the objective {metric}={expected} in Prometheus", lambda: str(prometheus.values(f"{{{job}}}"))
    )
    assert len(found) == 1 and found[0][0]["metric"] == metric
    phase = wait_for(
        lambda: (p := prometheus.values(f"trainsmart_job_phase{{{job}}}")) and p[0][0]["phase"] == "Succeeded" and p,
        30,
        "the Succeeded phase in Prometheus",
        lambda: str(prometheus.values(f"trainsmart_job_phase{{{job}}}")),
    )
    assert [value for _, value in phase] == [1.0]  # one phase series per job, never a stale one beside it
    assert prometheus.values(f"trainsmart_job_progress_ratio{{{job}}}")[0][1] == 1.0
    assert prometheus.values(f"trainsmart_job_epoch{{{job}}}")[0][1] == 3.0
    reconciles = prometheus.values('sum(trainsmart_reconciles_total{kind="TrainingJob", outcome="success"})')
    assert reconciles and reconciles[0][1] > 0
    accepted = prometheus.values('trainsmart_report_requests_total{code="202"}')
    assert accepted and accepted[0][1] > 0


def test_prometheus_reads_a_sweeps_best_so_far_and_its_trials(
    prometheus: Prometheus, objects: client.CustomObjectsApi, namespace: str
) -> None:
    template = {
        "tolerations": GPU_TOLERATIONS,
        "trainer": {"env": ONE_THREAD_ENV, "config": {**FAST_DIGITS, "epochs": 1}},
    }
    spec = random_lr_sweep_spec(template)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, sweep_body("pick", spec))

    def sweep_status() -> dict[str, Any]:
        return dict(
            objects.get_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, "pick").get("status") or {}
        )

    status = wait_for(
        lambda: (s := sweep_status()).get("phase") in ("Succeeded", "Failed") and s,
        120,
        "the sweep to finish",
        lambda: str(sweep_status()),
    )
    assert status["phase"] == "Succeeded", status
    sweep = f'namespace="{namespace}", sweep="pick"'
    best = status["bestTrial"]["metricValue"]
    found = wait_for(
        lambda: (
            (v := prometheus.values(f"trainsmart_sweep_best_objective{{{sweep}}}"))
            and v[0][1] == pytest.approx(best)
            and v
        ),
        30,
        f"the best-so-far {best} in Prometheus",
        lambda: str(prometheus.values(f"{{{sweep}}}")),
    )
    assert found[0][0]["metric"] == "val_accuracy"
    wait_for(
        lambda: [v for _, v in prometheus.values(f'trainsmart_sweep_trials{{{sweep}, state="Succeeded"}}')] == [2.0],
        30,
        "two succeeded trials in Prometheus",
    )
    # The trials' own gauges carry the sweep and trial labels.
    trial_objectives = prometheus.values(f"trainsmart_job_objective{{{sweep}}}")
    assert sorted((labels["job"], labels["trial"]) for labels, _ in trial_objectives) == [
        ("pick-0", "0"),
        ("pick-1", "1"),
    ]
    assert max(value for _, value in trial_objectives) == pytest.approx(best)


def test_every_dashboard_query_runs_on_prometheus(prometheus: Prometheus) -> None:
    board = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [
        re.sub(r"^label_values\((.*),\s*\w+\)$", r"\1", v["query"]["query"])
        for v in board["templating"]["list"]
        if v["type"] == "query"
    ]
    assert len(exprs) > 10
    for expr in exprs:
        # Grafana's substitutions: "All" for the variables, a few scrape intervals for $__rate_interval.
        promql = re.sub(r"\$\{?(namespace|job|sweep)\}?", ".*", expr).replace("$__rate_interval", "1m")
        prometheus.query(promql)  # raises with Prometheus' own message on a parse or evaluation error
    running = prometheus.values('sum(trainsmart_objects{kind="TrainingJob"})')
    assert running and running[0][1] >= 0


def test_deleted_jobs_leave_no_series(
    operator_process: Any, prometheus: Prometheus, objects: client.CustomObjectsApi, namespace: str
) -> None:
    # Suspended jobs get status and series but no pods: many jobs, no training load.
    names = [f"churn-{i}" for i in range(20)]
    for name in names:
        create_job(objects, namespace, name, {"suspend": True, "trainer": {"config": {**FAST_DIGITS, "epochs": 1}}})
    selector = f'trainsmart_job_phase{{namespace="{namespace}"}}'

    def series_in_scrape() -> set[str]:
        return set(
            re.findall(
                rf'trainsmart_\w+{{job="(churn-\d+)",namespace="{namespace}"', scrape(operator_process.metrics_base)
            )
        )

    wait_for(lambda: series_in_scrape() == set(names), 60, "all 20 jobs in /metrics", lambda: str(series_in_scrape()))
    wait_for(lambda: len(prometheus.values(selector)) == 20, 30, "all 20 jobs in Prometheus")
    for name in names:
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, name)
    wait_for(
        lambda: not series_in_scrape(), 60, "every series of the deleted jobs to go", lambda: str(series_in_scrape())
    )
    # Prometheus marks the vanished series stale at its next scrape: they drop out of instant queries at once.
    wait_for(
        lambda: not prometheus.query(f'{{namespace="{namespace}", __name__=~"trainsmart_.*"}}'),
        30,
        "no series in Prometheus",
    )
