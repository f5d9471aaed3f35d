"""Reports that arrive late or out of order never move status backwards; a restart shows where it resumes.

Pins:
- status remembers the newest report it reflects (`progress.step`, `progress.reportTime`); a report that is
  older by the trainer's clock *and* not ahead in (epoch, step) is stale: it moves neither progress nor the
  latest metrics or headline, and it does not rewrite a history point (it only fills an epoch the history
  lacks, kept sorted, no duplicates); folding the same report again changes nothing;
- a report ahead in (epoch, step) is folded even when its clock is behind (a new attempt on another node);
- after a restart, the new attempt's first report (nothing done yet: epoch 0, step 0, sent before the
  checkpoint is loaded) does not drop progress below the newest checkpoint's epoch; without a checkpoint
  the restart from epoch 0 shows; a report with work done below the checkpoint (the trainer did not
  resume from it) shows as it is;
- through `derive_trainingjob_status`, a late report in a later reconcile changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from support import models
from trainsmart.api import TrainingJobStatus
from trainsmart.status import derive_trainingjob_status
from trainsmart.status.report_fold import fold_report, fold_reports
from trainsmart_trainer.contract import TrainerReport

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
STEPS_PER_EPOCH = 100


def report(kind: str = "epoch", epoch: int = 1, seconds: float = 0, **extra: Any) -> TrainerReport:
    body: dict[str, Any] = {
        "job": {"namespace": "ml", "name": "mnist"},
        "kind": kind,
        "time": (T0 + timedelta(seconds=seconds)).isoformat(),
        "epoch": epoch,
        "step": epoch * STEPS_PER_EPOCH,
        "totalEpochs": 10,
        "objectiveMetric": "val_loss",
        "device": {"type": "cpu"},
    }
    return TrainerReport.model_validate(body | extra)


def epochs(*numbers: int, checkpoint: bool = False) -> TrainingJobStatus:
    """Status after epoch reports for `numbers` (val_loss 1/epoch), one a minute, each reconcile separate."""
    status = TrainingJobStatus()
    for epoch in numbers:
        extra: dict[str, Any] = {"metrics": {"val_loss": 1.0 / epoch}}
        if checkpoint:
            saved = (T0 + timedelta(minutes=epoch)).isoformat()
            extra["checkpoint"] = {"path": f"/ckpt/epoch-{epoch}.pt", "epoch": epoch, "time": saved}
        status = fold_report(status, report(epoch=epoch, seconds=60 * epoch, **extra), NOW)
    return status


def history(status: TrainingJobStatus) -> list[tuple[int, float]]:
    assert status.metrics is not None
    return [(point.epoch, point.value) for point in status.metrics.history]


def test_a_late_report_for_an_older_epoch_moves_nothing_back() -> None:
    status = epochs(1, 2, 3, 4, 5)
    late = fold_report(status, report(epoch=3, seconds=180, metrics={"val_loss": 9.0, "val_accuracy": 0.1}), NOW)
    assert late.progress == status.progress
    assert late.progress is not None and (late.progress.epoch, late.progress.percent) == (5, 50.0)
    assert late.metrics is not None and status.metrics is not None
    assert late.metrics.latest == status.metrics.latest
    assert late.metrics.headline == "val_loss=0.2"
    assert history(late) == history(status)


def test_a_late_progress_report_does_not_rewind_progress() -> None:
    status = epochs(1, 2, 3)
    late = fold_report(status, report(kind="progress", epoch=2, seconds=150, samplesPerSecond=10.0), NOW)
    assert late.progress == status.progress


def test_a_late_epoch_report_fills_only_an_epoch_the_history_lacks() -> None:
    status = epochs(1, 2, 4, 5)
    late = fold_report(status, report(epoch=3, seconds=180, metrics={"val_loss": 0.3}), NOW)
    assert history(late) == [(1, 1.0), (2, 0.5), (3, 0.3), (4, 0.25), (5, 0.2)]
    assert late.progress == status.progress
    assert fold_report(late, report(epoch=3, seconds=180, metrics={"val_loss": 0.3}), NOW) == late


def test_progress_records_the_newest_report_it_reflects() -> None:
    status = epochs(1, 2)
    assert status.progress is not None
    assert status.progress.step == 2 * STEPS_PER_EPOCH
    assert status.progress.report_time == T0 + timedelta(minutes=2)
    assert fold_report(status, report(epoch=2, seconds=120, metrics={"val_loss": 0.5}), NOW) == status


def test_a_report_ahead_in_training_is_folded_even_if_its_clock_is_behind() -> None:
    status = epochs(1, 2, 3)
    behind = fold_report(status, report(epoch=4, seconds=30, metrics={"val_loss": 0.25}), NOW)
    assert behind.progress is not None and behind.progress.epoch == 4
    assert history(behind)[-1] == (4, 0.25)


def test_a_restart_does_not_drop_progress_below_the_checkpoint_it_resumes_from() -> None:
    status = epochs(1, 2, 3, checkpoint=True)
    # The new attempt's first report says where it runs, before it loaded the checkpoint.
    started = fold_report(status, report(kind="progress", epoch=0, seconds=600), NOW)
    assert started.progress is not None
    assert (started.progress.epoch, started.progress.percent) == (3, 30.0)
    assert history(started) == history(status)
    resumed = fold_report(started, report(kind="progress", epoch=3, seconds=620, step=310), NOW)
    assert resumed.progress is not None and (resumed.progress.epoch, resumed.progress.step) == (3, 310)


def test_the_floor_is_the_checkpoint_not_the_last_progress() -> None:
    status = epochs(1, 2, checkpoint=True)
    status = fold_report(status, report(epoch=3, seconds=180, metrics={"val_loss": 0.3}), NOW)  # not saved
    started = fold_report(status, report(kind="progress", epoch=0, seconds=600), NOW)
    assert started.progress is not None and started.progress.epoch == 2


def test_without_a_checkpoint_a_restart_shows_from_epoch_zero() -> None:
    status = epochs(1, 2, 3)
    started = fold_report(status, report(kind="progress", epoch=0, seconds=600), NOW)
    assert started.progress is not None and (started.progress.epoch, started.progress.percent) == (0, 0.0)
    again = fold_report(started, report(epoch=1, seconds=660, metrics={"val_loss": 0.9}), NOW)
    assert again.progress is not None and again.progress.epoch == 1
    assert history(again)[0] == (1, 0.9)


def test_a_trainer_that_did_not_resume_shows_where_it_really_is() -> None:
    status = epochs(1, 2, 3, checkpoint=True)
    fresh = fold_report(status, report(kind="progress", epoch=0, seconds=600, step=40), NOW)
    assert fresh.progress is not None and (fresh.progress.epoch, fresh.progress.step) == (0, 40)


def test_one_batch_in_any_order_equals_the_reports_one_by_one() -> None:
    reports = [report(epoch=e, seconds=60 * e, metrics={"val_loss": 1.0 / e}) for e in (1, 2, 3)]
    assert fold_reports(TrainingJobStatus(), list(reversed(reports)), NOW) == epochs(1, 2, 3)


def test_a_late_report_in_a_later_reconcile_changes_nothing() -> None:
    job = models.make_job({"replicas": 1})
    pods = [models.replica_pod(job, 0, started=T0, now=NOW)]
    newer = [report(epoch=e, seconds=60 * e, metrics={"val_loss": 1.0 / e}) for e in (4, 5)]
    first = derive_trainingjob_status(job, pods, None, newer, NOW)
    late = [report(epoch=3, seconds=180, metrics={"val_loss": 7.0})]
    second = derive_trainingjob_status(job, pods, first, late, NOW)
    assert second.progress == first.progress
    assert history(second) == [(3, 7.0), (4, 0.25), (5, 0.2)]
    assert second.metrics is not None and second.metrics.latest == {"val_loss": 0.2}
