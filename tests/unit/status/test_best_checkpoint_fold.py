"""The trainer's best checkpoint in the TrainingJob status (`status.checkpoint.best`, issue 15).

Pins:
- an epoch report's best checkpoint lands in status.checkpoint.best (path, epoch, metric, value), also
  without a newest checkpoint in that report, and a later newest checkpoint keeps it;
- the trainer's newest word stands (it replaces its best only on improvement); a stale report (sent before
  what status reflects) only fills a best that status lacks; folding twice changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from trainsmart.api import TrainingJobStatus
from trainsmart.status.report_fold import fold_report, fold_reports
from trainsmart_trainer.contract import TrainerReport

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)


def report(epoch: int, best_epoch: int | None, value: float = 0.9, **extra: Any) -> TrainerReport:
    body: dict[str, Any] = {
        "job": {"namespace": "ml", "name": "mnist", "attempt": 0},
        "kind": "epoch",
        "time": (T0 + timedelta(seconds=epoch)).isoformat(),
        "epoch": epoch,
        "step": epoch * 100,
        "totalEpochs": 10,
        "metrics": {"val_accuracy": value},
        "device": {"type": "cpu"},
    }
    if best_epoch is not None:
        body["bestCheckpoint"] = {
            "path": "/checkpoints/best/checkpoint.pt",
            "epoch": best_epoch,
            "metric": "val_accuracy",
            "value": value,
        }
    return TrainerReport.model_validate(body | extra)


def test_the_best_checkpoint_lands_in_status_and_survives_newer_checkpoints() -> None:
    status = fold_report(TrainingJobStatus(), report(4, best_epoch=4, value=0.969), NOW)
    assert status.checkpoint is not None and status.checkpoint.best is not None
    best = status.checkpoint.best
    assert (best.path, best.epoch, best.metric, best.value) == (
        "/checkpoints/best/checkpoint.pt",
        4,
        "val_accuracy",
        0.969,
    )
    assert status.checkpoint.latest_epoch is None  # no newest checkpoint reported yet
    newest = {
        "path": "/checkpoints/checkpoint-000005-0000000.pt",
        "epoch": 5,
        "time": (T0 + timedelta(seconds=5)).isoformat(),
    }
    later = fold_report(status, report(5, best_epoch=None, value=0.944, checkpoint=newest), NOW)
    assert later.checkpoint is not None and later.checkpoint.latest_epoch == 5 and later.checkpoint.best == best


def test_the_newest_report_decides_and_a_stale_one_only_fills_a_gap() -> None:
    first, second = report(2, best_epoch=2, value=0.95), report(4, best_epoch=4, value=0.97)
    status = fold_reports(TrainingJobStatus(), [first, second], NOW)
    assert status.checkpoint is not None and status.checkpoint.best is not None
    assert status.checkpoint.best.epoch == 4
    assert fold_report(status, first, NOW) == status  # late and stale: the newer best stays
    assert fold_report(status, second, NOW) == status  # idempotent
    alone = fold_report(fold_report(TrainingJobStatus(), report(5, best_epoch=None), NOW), first, NOW)
    assert alone.checkpoint is not None and alone.checkpoint.best is not None and alone.checkpoint.best.epoch == 2
