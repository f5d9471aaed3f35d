"""The operator's Prometheus metrics, read back through the text format Prometheus scrapes.

Pins:
- a TrainingJob's status becomes per-job gauges (phase, GPUs, progress, objective, loss/accuracy per split,
  restarts, GPU seconds) labelled namespace/job, plus sweep/trial for a sweep's trials (from the sweep's
  labels, else its owner reference);
- a sweep's status becomes trials-by-state, phase and best-so-far series;
- objects by kind and phase count every known phase, zeros included;
- a phase change moves the job to the new phase series; no stale series stays behind;
- suspended and finished jobs request no GPUs; a spec or status of the wrong shape gives fewer series, never
  an exception in the watch handler;
- deleting many jobs removes every one of their series (no unbounded label growth), and 1,000 snapshots
  stay small;
- reconciles are counted by kind and outcome, errors by exception type (and re-raised), latency observed;
- the report endpoint's answers are counted by code, refusals by reason, through its real aiohttp app;
- `/metrics` is served over HTTP with Prometheus' content type; a taken port is not fatal;
- separate OperatorMetrics instances do not share a registry.
"""

from __future__ import annotations

import socket
import tracemalloc
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from trainsmart.api import (
    BestTrial,
    HyperparamSweepStatus,
    SweepPhase,
    TrainingJobPhase,
    TrainingJobStatus,
    TrialCounts,
)
from trainsmart.api.trainingjob_status import MetricsStatus, Progress, ReplicaCounts
from trainsmart.observability import METRICS_PATH, OperatorMetrics, start_metrics_server
from trainsmart.observability.snapshots import job_snapshot
from trainsmart.report_endpoint import ReportInbox, TokenVerifier, build_report_app

Sample = tuple[str, dict[str, str], float]


def samples(metrics: OperatorMetrics) -> list[Sample]:
    text = metrics.exposition().decode()
    return [(s.name, dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def values(metrics: OperatorMetrics, name: str, **labels: str) -> list[float]:
    return [v for n, lab, v in samples(metrics) if n == name and labels.items() <= lab.items()]


def job_body(name: str, namespace: str = "team-a", **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": namespace, "name": name, "labels": {}},
        "spec": {"replicas": 2, "gpusPerReplica": 4},
        "status": status,
    }


# Built with the status models (not hand-written camelCase) so a renamed status field fails here.
RUNNING = TrainingJobStatus(
    phase=TrainingJobPhase.RUNNING,
    replicas=ReplicaCounts(running=2),
    restarts=1,
    gpu_seconds=120.5,
    progress=Progress(epoch=2, total_epochs=4, percent=50.0, samples_per_second=1500.0),
    metrics=MetricsStatus(
        objective="val_loss",
        latest={"val_loss": 0.41, "train_loss": 0.3, "test_loss": 0.5, "val_accuracy": 0.88, "custom": 7.0},
        best={"val_loss": 0.39},
    ),
).to_api()


def event(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": body}


def test_running_job_status_becomes_labelled_gauges() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.observe_trainingjob(event("ADDED", job_body("mnist", **RUNNING)))
    job = {"namespace": "team-a", "job": "mnist"}
    assert values(metrics, "trainsmart_job_phase", **job) == [1.0]
    assert [lab["phase"] for n, lab, _ in samples(metrics) if n == "trainsmart_job_phase"] == ["Running"]
    assert values(metrics, "trainsmart_job_gpus_requested", **job) == [8.0]
    assert values(metrics, "trainsmart_job_gpus_running", **job) == [8.0]
    assert values(metrics, "trainsmart_job_restarts_total", **job) == [1.0]
    assert values(metrics, "trainsmart_job_gpu_seconds_total", **job) == [120.5]
    assert values(metrics, "trainsmart_job_epoch", **job) == [2.0]
    assert values(metrics, "trainsmart_job_total_epochs", **job) == [4.0]
    assert values(metrics, "trainsmart_job_progress_ratio", **job) == [0.5]
    assert values(metrics, "trainsmart_job_samples_per_second", **job) == [1500.0]
    assert values(metrics, "trainsmart_job_objective", metric="val_loss", **job) == [0.41]
    assert values(metrics, "trainsmart_job_objective_best", metric="val_loss", **job) == [0.39]
    assert values(metrics, "trainsmart_job_loss", split="train", **job) == [0.3]
    assert values(metrics, "trainsmart_job_loss", split="test", **job) == [0.5]
    assert values(metrics, "trainsmart_job_accuracy", split="val", **job) == [0.88]
    # A standalone job has no sweep/trial (empty labels, which Prometheus drops).
    phase_labels = next(lab for n, lab, _ in samples(metrics) if n == "trainsmart_job_phase")
    assert phase_labels["sweep"] == "" and phase_labels["trial"] == ""
    # Free-form metric names never become label values: only the fixed splits do.
    assert {lab["split"] for n, lab, _ in samples(metrics) if n == "trainsmart_job_loss"} == {"train", "val", "test"}


def test_trial_labels_come_from_the_sweep_labels_or_the_owner_reference() -> None:
    labelled = job_body("search-3", **RUNNING)
    labelled["metadata"]["labels"] = {"trainsmart.dev/sweep-name": "search", "trainsmart.dev/trial-number": "3"}
    owned = job_body("search-4", **RUNNING)
    owned["metadata"]["ownerReferences"] = [
        {"apiVersion": "trainsmart.dev/v1alpha1", "kind": "HyperparamSweep", "name": "search", "controller": True}
    ]
    assert (job_snapshot(labelled).sweep, job_snapshot(labelled).trial) == ("search", "3")
    assert (job_snapshot(owned).sweep, job_snapshot(owned).trial) == ("search", "4")
    metrics = OperatorMetrics(process=False)
    metrics.observe_trainingjob(event("ADDED", labelled))
    assert values(metrics, "trainsmart_job_objective", sweep="search", trial="3", job="search-3") == [0.41]


def test_sweep_status_becomes_trials_by_state_and_best_so_far() -> None:
    metrics = OperatorMetrics(process=False)
    body = {
        "metadata": {"namespace": "team-a", "name": "search"},
        "spec": {"objective": {"metric": "val_accuracy", "goal": "maximize"}},
        "status": HyperparamSweepStatus(
            phase=SweepPhase.RUNNING,
            counts=TrialCounts(total=6, running=2, succeeded=3, early_stopped=1, planned=20),
            best_trial=BestTrial(name="search-2", metric_value=0.97),
        ).to_api(),
    }
    metrics.observe_sweep(event("ADDED", body))
    sweep = {"namespace": "team-a", "sweep": "search"}
    by_state = {lab["state"]: v for n, lab, v in samples(metrics) if n == "trainsmart_sweep_trials"}
    assert by_state == {"Pending": 0, "Running": 2, "Succeeded": 3, "Failed": 0, "EarlyStopped": 1}
    assert values(metrics, "trainsmart_sweep_trials_planned", **sweep) == [20.0]
    assert values(metrics, "trainsmart_sweep_best_objective", metric="val_accuracy", **sweep) == [0.97]
    assert values(metrics, "trainsmart_sweep_phase", phase="Running", **sweep) == [1.0]
    assert values(metrics, "trainsmart_objects", kind="HyperparamSweep", phase="Running") == [1.0]
    metrics.observe_sweep(event("DELETED", body))
    assert not [n for n, lab, _ in samples(metrics) if lab.get("sweep") == "search"]


def test_objects_by_kind_and_phase_include_zeros_and_unreconciled_jobs() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.observe_trainingjob(event("ADDED", job_body("new")))
    metrics.observe_trainingjob(event("ADDED", job_body("busy", **RUNNING)))
    counts = {
        lab["phase"]: v for n, lab, v in samples(metrics) if n == "trainsmart_objects" and lab["kind"] == "TrainingJob"
    }
    assert counts == {
        "Pending": 0,
        "Running": 1,
        "Restarting": 0,
        "Succeeded": 0,
        "Failed": 0,
        "Suspended": 0,
        "Unknown": 1,
    }


def test_a_phase_change_leaves_no_stale_phase_series() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.observe_trainingjob(event("ADDED", job_body("mnist", **RUNNING)))
    metrics.observe_trainingjob(event("MODIFIED", job_body("mnist", **{**RUNNING, "phase": "Succeeded"})))
    phases = [(lab["phase"], v) for n, lab, v in samples(metrics) if n == "trainsmart_job_phase"]
    assert phases == [("Succeeded", 1.0)]


def test_unreadable_spec_and_status_give_fewer_series_not_an_exception() -> None:
    metrics = OperatorMetrics(process=False)
    body = {
        "metadata": {"namespace": "team-a", "name": "odd", "labels": None, "ownerReferences": "x"},
        "spec": {"replicas": "two", "gpusPerReplica": True},
        "status": {"phase": 3, "progress": [], "metrics": {"objective": "val_loss", "latest": {"val_loss": "low"}}},
    }
    metrics.observe_trainingjob(event("ADDED", body))
    assert values(metrics, "trainsmart_job_phase", job="odd", phase="Unknown") == [1.0]
    assert values(metrics, "trainsmart_job_gpus_requested", job="odd") == [0.0]
    assert values(metrics, "trainsmart_job_objective", job="odd") == []


@pytest.mark.parametrize("phase", ["Suspended", "Succeeded", "Failed"])
def test_suspended_and_finished_jobs_request_no_gpus(phase: str) -> None:
    metrics = OperatorMetrics(process=False)
    metrics.observe_trainingjob(event("MODIFIED", job_body("done", phase=phase)))
    assert values(metrics, "trainsmart_job_gpus_requested", job="done") == [0.0]


def test_deleted_jobs_leave_no_series_behind() -> None:
    metrics = OperatorMetrics(process=False)
    for round_ in range(3):
        bodies = [job_body(f"job-{round_}-{i}", namespace=f"ns-{i % 7}", **RUNNING) for i in range(400)]
        for body in bodies:
            metrics.observe_trainingjob(event("ADDED", body))
        assert len(values(metrics, "trainsmart_job_phase")) == 400
        for body in bodies:
            metrics.observe_trainingjob(event("DELETED", body))
        leftover = [(n, lab) for n, lab, _ in samples(metrics) if "job" in lab or "sweep" in lab]
        assert leftover == []
        assert sum(values(metrics, "trainsmart_objects")) == 0
    assert metrics.store.jobs == {}


def test_a_thousand_job_snapshots_stay_small() -> None:
    """The operator's RSS budget is 200 MiB with 1,000 jobs; the snapshots must be a sliver of it."""
    bodies = [job_body(f"job-{i}", namespace=f"ns-{i % 20}", **RUNNING) for i in range(1000)]
    metrics = OperatorMetrics(process=False)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for body in bodies:
            metrics.observe_trainingjob(event("ADDED", body))
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename"))
    finally:
        tracemalloc.stop()
    assert grown < 4 * 1024 * 1024, f"1,000 snapshots take {grown / 1024:.0f} KiB"


@pytest.mark.asyncio
async def test_reconciles_are_counted_and_timed_and_errors_reraised() -> None:
    metrics = OperatorMetrics(process=False)

    async def reconcile(key: str) -> float | None:
        if key == "bad":
            raise ConnectionError("apiserver gone")
        return None

    counted = metrics.timed_reconcile("TrainingJob", reconcile)
    assert await counted("good") is None
    with pytest.raises(ConnectionError):
        await counted("bad")
    assert values(metrics, "trainsmart_reconciles_total", kind="TrainingJob", outcome="success") == [1.0]
    assert values(metrics, "trainsmart_reconciles_total", kind="TrainingJob", outcome="error") == [1.0]
    assert values(metrics, "trainsmart_reconcile_errors_total", kind="TrainingJob", error="ConnectionError") == [1.0]
    assert values(metrics, "trainsmart_reconcile_duration_seconds_count", kind="TrainingJob") == [2.0]


@pytest.mark.asyncio
async def test_report_endpoint_answers_are_counted_by_code_and_reason() -> None:
    metrics = OperatorMetrics(process=False)

    async def read_token(namespace: str, name: str) -> str | None:
        return "right" if (namespace, name) == ("team-a", "mnist") else None

    app = build_report_app(
        TokenVerifier(read_token), ReportInbox(), lambda key: None, on_response=metrics.report_response
    )
    async with TestClient(TestServer(app)) as http:
        url = "/v1/reports/team-a/mnist"
        assert (await http.post(url, data=b"{}")).status == 401
        assert (await http.post(url, data=b"{}", headers={"Authorization": "Bearer wrong"})).status == 401
        other = {"namespace": "team-a", "name": "other"}
        body = {"kind": "epoch", "time": "2025-01-01T12:00:00+00:00", "epoch": 1, "totalEpochs": 3, "job": other}
        body["device"] = {"type": "cpu"}
        assert (await http.post(url, json=body, headers={"Authorization": "Bearer right"})).status == 403
        assert (await http.post(url, data=b"{", headers={"Authorization": "Bearer right"})).status == 400
        assert (await http.get("/healthz")).status == 200
    codes = {lab["code"]: v for n, lab, v in samples(metrics) if n == "trainsmart_report_requests_total"}
    assert codes == {"401": 2.0, "403": 1.0, "400": 1.0}
    reasons = {lab["reason"]: v for n, lab, v in samples(metrics) if n == "trainsmart_report_rejections_total"}
    assert reasons == {"unauthenticated": 2.0, "forbidden": 1.0, "invalid": 1.0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_metrics_are_served_over_http_and_a_taken_port_is_not_fatal() -> None:
    metrics = OperatorMetrics()
    metrics.observe_trainingjob(event("ADDED", job_body("mnist", **RUNNING)))
    port = _free_port()
    runner = await start_metrics_server(metrics, "127.0.0.1", port)
    assert runner is not None
    try:
        async with ClientSession() as http, http.get(f"http://127.0.0.1:{port}{METRICS_PATH}") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await response.text()
        assert 'trainsmart_job_phase{job="mnist",namespace="team-a",phase="Running"' in text
        assert "process_resident_memory_bytes" in text
        assert await start_metrics_server(OperatorMetrics(process=False), "127.0.0.1", port) is None
    finally:
        await runner.cleanup()


def test_each_operator_metrics_has_its_own_registry() -> None:
    first, second = OperatorMetrics(process=False), OperatorMetrics(process=False)
    first.observe_trainingjob(event("ADDED", job_body("only-in-first", **RUNNING)))
    first.report_response(202)
    assert values(second, "trainsmart_job_phase") == []
    assert values(second, "trainsmart_report_requests_total") == []
