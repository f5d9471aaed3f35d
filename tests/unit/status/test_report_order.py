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
- through `derive_trainingjob_status`, a late report in a later reconcile changes nothing;
- reports that carry their attempt are ordered by it first: an earlier attempt's report is stale however far
  in training or late in time it is (also before any progress of the current attempt), a newer attempt's
  is folded however far back it starts; without an attempt, the clock and (epoch, step) order them.
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


# ---- attempts (the pods' TRAINSMART_ATTEMPT, sent in every report's identity) ---------------------------------


def attempt_report(attempt: int, epoch: int, seconds: float, **extra: Any) -> TrainerReport:
    job = {"namespace": "ml", "name": "mnist", "attempt": attempt}
    return report(epoch=epoch, seconds=seconds, job=job, **({"metrics": {"val_loss": 1.0 / epoch}} | extra))


def test_a_late_report_of_an_earlier_attempt_moves_nothing_even_further_in_training_and_time() -> None:
    """The case the clock and (epoch, step) alone could not order: attempt 0's report for epoch 6, sent
    after attempt 1 had reported epoch 5, arrives last. Attempt 1 is the run that counts."""
    restarted = TrainingJobStatus(restarts=1)
    status = fold_report(restarted, attempt_report(1, epoch=5, seconds=600), NOW)
    late = fold_report(status, attempt_report(0, epoch=6, seconds=660, metrics={"val_loss": 0.01}), NOW)
    assert late.progress == status.progress
    assert late.progress is not None and (late.progress.epoch, late.progress.attempt) == (5, 1)
    assert late.metrics is not None and status.metrics is not None
    assert late.metrics.latest == status.metrics.latest
    assert (6, 0.01) in history(late)  # an epoch the history lacked: filled, and it competes for best


def test_an_earlier_attempts_report_is_stale_once_the_job_restarted_even_with_no_progress_yet() -> None:
    late = fold_report(TrainingJobStatus(restarts=2), attempt_report(1, epoch=4, seconds=400), NOW)
    assert late.progress is None


def test_a_newer_attempts_report_is_folded_although_it_is_behind_in_epochs_and_clock() -> None:
    """Attempt 1 runs on a node whose clock is an hour behind and starts over (no checkpoint)."""
    first = fold_report(TrainingJobStatus(), attempt_report(0, epoch=5, seconds=3600), NOW)
    second = fold_report(first.model_copy(update={"restarts": 1}), attempt_report(1, epoch=1, seconds=60), NOW)
    assert second.progress is not None and (second.progress.epoch, second.progress.attempt) == (1, 1)


def test_reports_of_two_attempts_folded_in_one_reconcile_end_at_the_newer_attempt() -> None:
    reports = [attempt_report(1, epoch=2, seconds=100), attempt_report(0, epoch=7, seconds=200)]
    for order in (reports, reports[::-1]):
        status = fold_reports(TrainingJobStatus(restarts=1), order, NOW)
        assert status.progress is not None and (status.progress.epoch, status.progress.attempt) == (2, 1)


def test_reports_without_an_attempt_keep_the_clock_and_epoch_order() -> None:
    status = epochs(1, 2, 3)
    assert status.progress is not None and status.progress.attempt is None
    late = fold_report(status.model_copy(update={"restarts": 1}), report(epoch=2, seconds=150), NOW)
    assert late.progress == status.progress
