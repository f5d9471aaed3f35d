"""The MLflow sync's health in the operator's `/metrics`.

Pins:
- `trainsmart_tracking_points_dropped_total{kind}` counts the points the sync reports dropped, by kind only
  (no job names), zero for both kinds from the start;
- `trainsmart_tracking_runs_not_ready{kind, reason}` counts objects whose TrackingReady is False, from their
  status (so it survives an operator restart), by kind and reason; True/Unknown/absent count for nothing; an
  unknown reason counts as Other; a deleted object leaves the count.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from trainsmart.api import SWEEP_KIND, TRAININGJOB_KIND
from trainsmart.observability import OperatorMetrics
from trainsmart.tracking.mlflow_sync import TrackedKind


def series(metrics: OperatorMetrics, name: str) -> dict[tuple[str, ...], float]:
    text = metrics.exposition().decode()
    return {
        tuple(v for _, v in sorted(s.labels.items())): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }


def body(name: str, ready: str | None, reason: str = "TrackingUnreachable") -> dict[str, Any]:
    conditions = [{"type": "Created", "status": "True", "reason": "Created", "message": ""}]
    if ready is not None:
        conditions.append({"type": "TrackingReady", "status": ready, "reason": reason, "message": "m"})
    return {
        "metadata": {"namespace": "team-a", "name": name, "labels": {}},
        "spec": {"replicas": 1, "gpusPerReplica": 1},
        "status": {"phase": "Running", "conditions": conditions},
    }


def test_dropped_points_are_counted_by_kind_only() -> None:
    metrics = OperatorMetrics(process=False)
    name = "trainsmart_tracking_points_dropped_total"
    assert series(metrics, name) == {(TRAININGJOB_KIND,): 0.0, (SWEEP_KIND,): 0.0}
    metrics.tracking_dropped(TrackedKind.JOB, 3)
    metrics.tracking_dropped(TrackedKind.JOB, 2)
    assert series(metrics, name) == {(TRAININGJOB_KIND,): 5.0, (SWEEP_KIND,): 0.0}


def test_objects_whose_tracking_is_not_ready_are_counted_by_kind_and_reason() -> None:
    metrics = OperatorMetrics(process=False)
    for name, ready, reason in [
        ("a", "False", "TrackingUnreachable"),
        ("b", "False", "TrackingUnreachable"),
        ("c", "False", "TrackingCredentialsMissing"),
        ("d", "False", "SomethingEditedByHand"),
        ("e", "True", "TrackingSynced"),
        ("f", "Unknown", "TrackingPending"),
        ("g", None, ""),
    ]:
        metrics.observe_trainingjob({"type": "ADDED", "object": body(name, ready, reason)})
    metrics.observe_sweep({"type": "ADDED", "object": body("s", "False", "TrackingRefused")})
    found = series(metrics, "trainsmart_tracking_runs_not_ready")
    assert found[(TRAININGJOB_KIND, "TrackingUnreachable")] == 2.0
    assert found[(TRAININGJOB_KIND, "TrackingCredentialsMissing")] == 1.0
    assert found[(TRAININGJOB_KIND, "Other")] == 1.0
    assert found[(TRAININGJOB_KIND, "TrackingRefused")] == 0.0
    assert found[(SWEEP_KIND, "TrackingRefused")] == 1.0
    assert sum(found.values()) == 5.0

    metrics.observe_trainingjob({"type": "DELETED", "object": body("a", "False")})
    metrics.observe_trainingjob({"type": "MODIFIED", "object": body("b", "True", "TrackingSynced")})
    assert series(metrics, "trainsmart_tracking_runs_not_ready")[(TRAININGJOB_KIND, "TrackingUnreachable")] == 0.0
