"""The estimated cost in the operator's `/metrics`.

Pins:
- a job's status.estimatedCost becomes `trainsmart_job_estimated_cost` with the job labels and `currency`,
  a sweep's becomes `trainsmart_sweep_estimated_cost`;
- without an estimated cost (no price configured) neither series exists (absent, not 0).
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from trainsmart.api import HyperparamSweepStatus, SweepPhase, TrainingJobPhase, TrainingJobStatus
from trainsmart.observability import OperatorMetrics


def series(metrics: OperatorMetrics, name: str) -> list[tuple[dict[str, str], float]]:
    text = metrics.exposition().decode()
    return [
        (dict(s.labels), s.value) for f in text_string_to_metric_families(text) for s in f.samples if s.name == name
    ]


def body(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team-a", "name": name, "labels": {}},
        "spec": {"replicas": 1, "gpusPerReplica": 1, "objective": {"metric": "val_accuracy"}},
        "status": status,
    }


def test_estimated_costs_become_gauges_labelled_with_the_currency() -> None:
    metrics = OperatorMetrics(process=False)
    job = TrainingJobStatus(phase=TrainingJobPhase.RUNNING, estimated_cost=12.5, cost_currency="EUR").to_api()
    sweep = HyperparamSweepStatus(phase=SweepPhase.RUNNING, estimated_cost=40.25, cost_currency="EUR").to_api()
    metrics.observe_trainingjob({"type": "ADDED", "object": body("mnist", job)})
    metrics.observe_sweep({"type": "ADDED", "object": body("search", sweep)})
    [(labels, value)] = series(metrics, "trainsmart_job_estimated_cost")
    assert (labels["job"], labels["namespace"], labels["currency"], value) == ("mnist", "team-a", "EUR", 12.5)
    [(labels, value)] = series(metrics, "trainsmart_sweep_estimated_cost")
    assert (labels["sweep"], labels["currency"], value) == ("search", "EUR", 40.25)


def test_without_a_price_no_cost_series_exists() -> None:
    metrics = OperatorMetrics(process=False)
    metrics.observe_trainingjob({"type": "ADDED", "object": body("mnist", TrainingJobStatus(gpu_seconds=60).to_api())})
    metrics.observe_sweep({"type": "ADDED", "object": body("search", HyperparamSweepStatus().to_api())})
    assert series(metrics, "trainsmart_job_estimated_cost") == []
    assert series(metrics, "trainsmart_sweep_estimated_cost") == []
