"""Folding trainer reports into status: progress, latest/best metrics, history, checkpoint, diagnostics.

Pins:
- progress comes from the newest report (epoch, total, percent, throughput, eta; 0 eta once final);
- latest metrics merge; best follows each metric's direction (loss down, accuracy up, unknown: none),
  and the early-stopping mode overrides the guess;
- history: the objective per epoch, keyed by epoch (a re-run epoch after a restart replaces its point),
  sorted, bounded to the newest HISTORY_MAX_ITEMS; the headline shows the objective's latest value;
- checkpoint: the newest by time, capped at `now` (a clock running ahead cannot freeze it);
- diagnostics: the newest finding per type, bounded; folding is idempotent; arrival order does not matter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trainsmart.api import TrainingJobStatus
from trainsmart.api.trainingjob_status import DIAGNOSTICS_MAX_ITEMS, HISTORY_MAX_ITEMS, METRICS_MAX_PROPERTIES
from trainsmart.status.report_fold import fold_report, fold_reports, metric_goal
from trainsmart_trainer.contract import ObjectiveDirection, TrainerReport

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def report(kind: str = "epoch", epoch: int = 1, seconds: int = 0, **extra: Any) -> TrainerReport:
    body: dict[str, Any] = {
        "job": {"namespace": "ml", "name": "mnist"},
        "kind": kind,
        "time": (T0 + timedelta(seconds=seconds)).isoformat(),
        "epoch": epoch,
        "step": epoch * 100,
        "totalEpochs": 10,
        "objectiveMetric": "val_loss",
        "device": {"type": "cpu"},
    }
    return TrainerReport.model_validate(body | extra)


@pytest.mark.parametrize(
    ("name", "goal"),
    [
        ("val_loss", "min"),
        ("train_loss", "min"),
        ("val_accuracy", "max"),
        ("test_macro_f1", "max"),
        ("samples_per_second", "max"),
        ("epoch_time_seconds", "min"),
        ("learning_rate", None),
        ("grad_norm", None),
    ],
)
def test_metric_goal(name: str, goal: str | None) -> None:
    assert metric_goal(name) == (ObjectiveDirection.of(goal) if goal is not None else None)


def test_progress_and_metrics() -> None:
    status = fold_report(
        TrainingJobStatus(),
        report(epoch=3, metrics={"val_loss": 0.5, "val_accuracy": 0.8}, samplesPerSecond=1200.0, etaSeconds=70.0),
        NOW,
    )
    assert status.progress is not None and status.metrics is not None
    assert (status.progress.epoch, status.progress.total_epochs, status.progress.percent) == (3, 10, 30.0)
    assert (status.progress.samples_per_second, status.progress.eta_seconds) == (1200.0, 70.0)
    assert status.metrics.latest == {"val_loss": 0.5, "val_accuracy": 0.8}
    assert status.metrics.headline == "val_loss=0.5"
    assert [(p.epoch, p.value) for p in status.metrics.history] == [(3, 0.5)]


def test_best_follows_direction_and_overrides() -> None:
    reports = [
        report(epoch=1, seconds=1, metrics={"val_loss": 0.9, "val_accuracy": 0.6, "learning_rate": 0.1, "score": 5}),
        report(epoch=2, seconds=2, metrics={"val_loss": 0.4, "val_accuracy": 0.5, "learning_rate": 0.01, "score": 3}),
        report(epoch=3, seconds=3, metrics={"val_loss": 0.7, "val_accuracy": 0.9, "score": 9}),
    ]
    status = fold_reports(TrainingJobStatus(), reports, NOW)
    assert status.metrics is not None
    assert status.metrics.best == {"val_accuracy": 0.9, "val_loss": 0.4}
    assert status.metrics.latest["learning_rate"] == 0.01
    overridden = fold_reports(TrainingJobStatus(), reports, NOW, goals={"score": ObjectiveDirection.MINIMIZE})
    assert overridden.metrics is not None and overridden.metrics.best["score"] == 3


def test_history_is_keyed_by_epoch_sorted_and_bounded() -> None:
    status = TrainingJobStatus()
    for epoch in (1, 2, 3):
        status = fold_report(status, report(epoch=epoch, seconds=epoch, metrics={"val_loss": 1.0 / epoch}), NOW)
    # A restart from the epoch-2 checkpoint runs epoch 3 again.
    status = fold_report(status, report(epoch=3, seconds=10, metrics={"val_loss": 0.25}), NOW)
    assert status.metrics is not None
    assert [(p.epoch, p.value) for p in status.metrics.history] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    long = TrainingJobStatus()
    for epoch in range(HISTORY_MAX_ITEMS + 5):
        long = fold_report(long, report(epoch=epoch, metrics={"val_loss": float(epoch)}), NOW)
    assert long.metrics is not None
    assert len(long.metrics.history) == HISTORY_MAX_ITEMS
    assert long.metrics.history[0].epoch == 5


def test_progress_reports_add_no_history() -> None:
    status = fold_report(TrainingJobStatus(), report(kind="progress", metrics={"val_loss": 0.3}), NOW)
    assert status.metrics is not None and status.metrics.history == []


def test_final_report() -> None:
    final = {
        "status": "early_stopped",
        "exitCode": 12,
        "epochsCompleted": 7,
        "objectiveMetric": "val_loss",
        "metrics": {"test_accuracy": 0.93},
    }
    status = fold_report(TrainingJobStatus(), report(kind="final", epoch=7, final=final, etaSeconds=99.0), NOW)
    assert status.progress is not None and status.metrics is not None
    assert (status.progress.epoch, status.progress.percent, status.progress.eta_seconds) == (7, 70.0, 0.0)
    assert status.metrics.latest["test_accuracy"] == 0.93


def test_checkpoint_newest_and_capped_at_now() -> None:
    def ckpt(epoch: int, at: datetime) -> TrainerReport:
        return report(
            epoch=epoch, checkpoint={"path": f"/ckpt/epoch-{epoch}.pt", "epoch": epoch, "time": at.isoformat()}
        )

    status = fold_report(TrainingJobStatus(), ckpt(2, T0 + timedelta(seconds=20)), NOW)
    status = fold_report(status, ckpt(1, T0 + timedelta(seconds=10)), NOW)
    assert status.checkpoint is not None and status.checkpoint.latest_epoch == 2
    future = fold_report(TrainingJobStatus(), ckpt(3, NOW + timedelta(days=1)), NOW)
    assert future.checkpoint is not None and future.checkpoint.time == NOW
    later = fold_report(future, ckpt(4, NOW), NOW)
    assert later.checkpoint is not None and later.checkpoint.latest_epoch == 4


def test_diagnostics_newest_per_type_and_bounded() -> None:
    def diag(kind: str, message: str) -> dict[str, Any]:
        return {"type": kind, "severity": "Warning", "message": message, "suggestion": ""}

    status = fold_report(TrainingJobStatus(), report(diagnostics=[diag("Overfitting", "gap 0.1")]), NOW)
    status = fold_report(status, report(diagnostics=[diag("ExplodingGradients", "norm 1e6")]), NOW)
    status = fold_report(status, report(diagnostics=[diag("Overfitting", "gap 0.3")]), NOW)
    assert [(d.type, d.message) for d in status.diagnostics] == [
        ("ExplodingGradients", "norm 1e6"),
        ("Overfitting", "gap 0.3"),
    ]
    assert status.diagnostics[0].suggestion is None
    assert len(status.diagnostics) <= DIAGNOSTICS_MAX_ITEMS


def test_folding_is_idempotent_and_order_free() -> None:
    reports = [report(epoch=e, seconds=e, metrics={"val_loss": 1.0 / e, "val_accuracy": e / 10}) for e in range(1, 5)]
    once = fold_reports(TrainingJobStatus(), reports, NOW)
    assert fold_reports(once, reports, NOW).metrics == once.metrics
    assert fold_reports(TrainingJobStatus(), list(reversed(reports)), NOW) == once


def test_latest_metrics_are_bounded() -> None:
    many = {f"m{i:03d}": float(i) for i in range(METRICS_MAX_PROPERTIES + 10)}
    status = fold_report(TrainingJobStatus(), report(metrics=many), NOW)
    assert status.metrics is not None
    assert len(status.metrics.latest) == METRICS_MAX_PROPERTIES
