"""Folding the rank-0 trainer's termination message into the TrainingJob status (pure).

Pins:
- what the trainer writes (`results.termination_message`) parses back to the same `FinalResult`; plain
  text, broken JSON, unknown keys, NaN, negative counts and messages over 4096 bytes are ignored, never
  raised;
- folded into a status the result sets the final metrics, progress (100 % with the job's epochs) and the
  objective's best (the result's best value competes for it whatever its direction);
- it never regresses: a result with fewer epochs than status changes nothing; worse best values lose;
- folding is idempotent, and after the real final report it changes nothing;
- the result's objective history fills only epochs the history lacks, and only when status tracks the
  same metric (a sweep trial may track another);
- only the current attempt's rank-0 trainer counts (not rank 1, not an earlier attempt's pod);
- `derive_trainingjob_status`: a job whose reports were all lost ends Succeeded with the metrics from the
  message, and deriving again from that status gives the same status.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support import models
from trainsmart.api import TrainingJob, TrainingJobStatus
from trainsmart.builders import build_worker_pod
from trainsmart.settings import OperatorSettings
from trainsmart.status import derive_trainingjob_status
from trainsmart.status.podview import view_pods
from trainsmart.status.report_fold import fold_final_result, fold_report
from trainsmart.status.termination_fold import fold_termination_message, parse_final_result
from trainsmart_trainer import results
from trainsmart_trainer.contract import EpochValue, FinalResult, FinalStatus, TrainerReport

SETTINGS = OperatorSettings()
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
FINAL = FinalResult(
    status=FinalStatus.SUCCEEDED,
    exit_code=0,
    epochs_completed=2,
    objective_metric="val_accuracy",
    best_value=0.95,
    best_epoch=1,
    metrics={"val_accuracy": 0.93, "val_loss": 0.2, "test_accuracy": 0.94},
    duration_seconds=3.5,
    objective_history=[EpochValue(epoch=1, value=0.95), EpochValue(epoch=2, value=0.93)],
)
MESSAGE = results.termination_message(FINAL)


def make_job() -> TrainingJob:
    return models.make_job({"replicas": 2, "trainer": {"config": {"epochs": 2}}})


def exited_pod(job: TrainingJob, index: int, message: str, *, attempt: int = 0, code: int = 0) -> dict[str, Any]:
    manifest = build_worker_pod(job, index, attempt, SETTINGS)
    terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "message": message}
    terminated |= {"startedAt": "2025-01-01T12:00:00Z", "finishedAt": "2025-01-01T12:05:00Z"}
    status = {"phase": "Succeeded" if code == 0 else "Failed"}
    manifest["status"] = status | {"containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}]}
    return manifest


def status_with(
    epoch: int, latest: dict[str, float], best: dict[str, float] | None = None, history: dict[int, float] | None = None
) -> TrainingJobStatus:
    points = [{"epoch": e, "value": v} for e, v in (history or {}).items()]
    return TrainingJobStatus.model_validate(
        {
            "progress": {
                "epoch": epoch,
                "totalEpochs": 2,
                "percent": min(50.0 * epoch, 100.0),
                "samplesPerSecond": 100.0,
            },
            "metrics": {"latest": latest, "best": best or latest, "objective": "val_accuracy", "history": points},
        }
    )


def test_the_trainers_message_parses_back() -> None:
    assert parse_final_result(MESSAGE) == FINAL
    assert parse_final_result(f"  {MESSAGE}\n") == FINAL


@pytest.mark.parametrize(
    "message",
    [
        "",
        "Traceback (most recent call last):\n  ...\nRuntimeError: boom",
        "{not json",
        "[1, 2]",
        MESSAGE[:-1] + ',"surprise":1}',
        '{"status":"succeeded","exitCode":0,"metrics":{"val_loss":NaN}}',
        '{"status":"succeeded","exitCode":0,"epochsCompleted":-1}',
        '{"status":"exploded","exitCode":0}',
        '{"status":"succeeded","exitCode":0,"reason":"' + "x" * 4100 + '"}',
    ],
    ids=["empty", "log-tail", "broken", "not-object", "unknown-key", "nan", "negative", "bad-enum", "too-long"],
)
def test_anything_but_a_result_is_ignored(message: str) -> None:
    assert parse_final_result(message) is None


@pytest.mark.parametrize(
    ("before", "after_latest", "after_best", "after_epoch"),
    [
        (
            TrainingJobStatus(),
            {"val_accuracy": 0.93, "val_loss": 0.2, "test_accuracy": 0.94},
            {"val_accuracy": 0.95, "val_loss": 0.2, "test_accuracy": 0.94},
            2,
        ),
        (  # the last epoch's report arrived, the final one (test metrics) did not
            status_with(2, {"val_accuracy": 0.93, "val_loss": 0.2}, {"val_accuracy": 0.96, "val_loss": 0.2}),
            {"val_accuracy": 0.93, "val_loss": 0.2, "test_accuracy": 0.94},
            {"val_accuracy": 0.96, "val_loss": 0.2, "test_accuracy": 0.94},
            2,
        ),
        (  # only epoch 1 arrived: the result is newer
            status_with(1, {"val_accuracy": 0.9, "val_loss": 0.3}),
            {"val_accuracy": 0.93, "val_loss": 0.2, "test_accuracy": 0.94},
            {"val_accuracy": 0.95, "val_loss": 0.2, "test_accuracy": 0.94},
            2,
        ),
        (  # status is ahead of the result (a newer run reported epoch 3): nothing changes
            status_with(3, {"val_accuracy": 0.97}),
            {"val_accuracy": 0.97},
            {"val_accuracy": 0.97},
            3,
        ),
    ],
    ids=["nothing-arrived", "final-lost", "result-newer", "status-newer"],
)
def test_fold_final_result(
    before: TrainingJobStatus,
    after_latest: dict[str, float],
    after_best: dict[str, float],
    after_epoch: int,
) -> None:
    folded = fold_final_result(before, FINAL, total_epochs=2)
    assert folded.metrics is not None and folded.progress is not None
    assert folded.metrics.latest == after_latest
    assert folded.metrics.best == after_best
    assert folded.progress.epoch == after_epoch
    assert fold_final_result(folded, FINAL, total_epochs=2) == folded  # idempotent
    if after_epoch == 2:
        assert (folded.progress.percent, folded.progress.eta_seconds) == (100.0, 0.0)
        assert folded.metrics.objective == "val_accuracy"
        assert folded.metrics.headline == "val_accuracy=0.93"


def test_throughput_and_total_epochs_come_from_status() -> None:
    folded = fold_final_result(status_with(1, {"val_accuracy": 0.9}), FINAL, total_epochs=99)
    assert folded.progress is not None
    assert (folded.progress.total_epochs, folded.progress.samples_per_second) == (2, 100.0)


def test_after_the_real_final_report_the_message_changes_nothing() -> None:
    body = {
        "job": {"namespace": "ml", "name": "mnist"},
        "kind": "final",
        "time": T0.isoformat(),
        "epoch": 2,
        "totalEpochs": 2,
        "objectiveMetric": "val_accuracy",
        "metrics": FINAL.metrics,
        "final": FINAL.model_dump(mode="json", by_alias=True),
        "device": {"type": "cpu"},
    }
    before = status_with(2, {"val_accuracy": 0.93}, {"val_accuracy": 0.95}, {1: 0.95, 2: 0.93})  # epochs arrived
    reported = fold_report(before, TrainerReport.model_validate(body), NOW)
    assert fold_final_result(reported, FINAL, total_epochs=2) == reported


@pytest.mark.parametrize(
    ("index", "pod_attempt", "current_attempt", "message", "folds"),
    [
        (0, 0, 0, MESSAGE, True),
        (1, 0, 0, MESSAGE, False),
        (0, 0, 1, MESSAGE, False),
        (0, 0, 0, "RuntimeError: boom", False),
        (0, 0, 0, "", False),
    ],
    ids=["rank-0", "rank-1", "earlier-attempt", "text", "empty"],
)
def test_only_the_current_rank_0_trainer_counts(
    index: int, pod_attempt: int, current_attempt: int, message: str, folds: bool
) -> None:
    job = make_job()
    views = view_pods([exited_pod(job, index, message, attempt=pod_attempt)], "mnist")
    folded = fold_termination_message(TrainingJobStatus(), views, current_attempt, total_epochs=2)
    assert (folded != TrainingJobStatus()) is folds


def test_a_job_whose_reports_were_lost_succeeds_with_the_messages_metrics() -> None:
    job = make_job()
    pods = [exited_pod(job, 0, MESSAGE), exited_pod(job, 1, "")]
    status = derive_trainingjob_status(job, pods, None, [], NOW)
    assert status.phase == "Succeeded"
    assert status.metrics is not None and status.progress is not None
    assert status.metrics.latest["test_accuracy"] == 0.94
    assert status.progress.epoch == 2 and status.progress.percent == 100.0
    assert derive_trainingjob_status(job, pods, status, [], NOW) == status


@pytest.mark.parametrize(
    ("before", "objective", "after"),
    [
        (TrainingJobStatus(), None, {1: 0.95, 2: 0.93}),
        (status_with(1, {"val_accuracy": 0.9}, history={1: 0.9}), None, {1: 0.9, 2: 0.93}),
        (TrainingJobStatus(), "val_loss", {}),
    ],
    ids=["empty", "epoch-1-reported", "other-objective"],
)
def test_history_fills_only_what_status_lacks(
    before: TrainingJobStatus, objective: str | None, after: dict[int, float]
) -> None:
    folded = fold_final_result(before, FINAL, total_epochs=2, objective=objective)
    assert folded.metrics is not None
    assert {point.epoch: point.value for point in folded.metrics.history} == after
    assert fold_final_result(folded, FINAL, total_epochs=2, objective=objective) == folded
