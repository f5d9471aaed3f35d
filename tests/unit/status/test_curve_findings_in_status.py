"""The operator's curve findings in the TrainingJob status, next to the trainer's.

Pins:
- epoch reports whose validation loss rises while training loss falls (any code: no diagnostic sent)
  put Overfitting, with its epoch, into status; the TrainingWarning condition and one Warning Event
  follow, and deriving again from the result announces nothing new;
- folding the same reports twice, or in another order, gives the same status (loss curve included);
- one episode is one entry whoever saw it first: the trainer's Overfitting before the curve shows it, or
  after the operator found it; a later, separate episode replaces the earlier one (a new Event);
- a client's NonFiniteLoss for several losses and epochs is one entry, the first, with its epoch;
- an identical finding folded again stays in place (the newest finding, and so the condition, is kept);
- the loss curve is in status as `lossCurve` and the final result keeps it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from support import models
from trainsmart.api import TrainingJobConditionType, TrainingJobStatus
from trainsmart.api.conditions import find_condition
from trainsmart.settings import OperatorSettings
from trainsmart.status import derive_trainingjob_status, diagnostic_events
from trainsmart.status.report_fold import fold_final_result, fold_reports
from trainsmart_trainer.contract import FinalResult, TrainerReport

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
JOB = models.make_job({"replicas": 1})
pod = partial(models.replica_pod, settings=OperatorSettings(), started=T0, now=NOW)

TRAIN = [1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2]
VAL = [1.0, 0.8, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1]  # rising from epoch 3: the rule holds first at epoch 6


def report(kind: str, epoch: int, **extra: Any) -> TrainerReport:
    body: dict[str, Any] = {
        "job": {"namespace": "ml", "name": "mnist"},
        "kind": kind,
        "time": (T0 + timedelta(seconds=10 * epoch + (1 if kind == "epoch" else 0))).isoformat(),
        "epoch": epoch,
        "step": epoch * 10,
        "totalEpochs": 20,
        "device": {"type": "cpu"},
    }
    return TrainerReport.model_validate(body | extra)


def epochs(train: list[float], val: list[float], first: int = 1) -> list[TrainerReport]:
    return [
        report("epoch", first + index, metrics={"train_loss": t, "val_loss": v})
        for index, (t, v) in enumerate(zip(train, val, strict=True))
    ]


def finding(type_: str, epoch: int, message: str, severity: str = "Warning") -> dict[str, Any]:
    return {"type": type_, "severity": severity, "message": message, "epoch": epoch}


def kinds(status: TrainingJobStatus) -> list[tuple[str, int | None]]:
    return [(item.type, item.epoch) for item in status.diagnostics]


def test_a_curve_that_overfits_gets_the_finding_the_condition_and_one_event() -> None:
    status = derive_trainingjob_status(JOB, [pod(JOB, 0)], None, epochs(TRAIN, VAL), NOW)
    assert kinds(status) == [("Overfitting", 6)]
    warning = find_condition(status.conditions, TrainingJobConditionType.TRAINING_WARNING)
    assert warning is not None and (warning.status.value, warning.reason) == ("True", "Overfitting")
    assert "validation loss rose for 3 epochs" in (warning.message or "")
    (event,) = diagnostic_events(None, status)
    assert (event.type, event.reason) == ("Warning", "Overfitting")
    again = derive_trainingjob_status(JOB, [pod(JOB, 0)], status, epochs(TRAIN, VAL), NOW)
    assert again == status
    assert diagnostic_events(status, again) == []


def test_folding_twice_or_in_another_order_gives_the_same_status() -> None:
    reports = epochs(TRAIN, VAL)
    once = fold_reports(TrainingJobStatus(), reports, NOW)
    assert once.metrics is not None and [point.epoch for point in once.metrics.loss_curve] == list(range(1, 9))
    assert fold_reports(once, reports, NOW) == once
    assert fold_reports(TrainingJobStatus(), list(reversed(reports)), NOW) == once


def test_the_trainers_finding_first_leaves_one_entry() -> None:
    trainer = report("diagnostic", 6, diagnostics=[finding("Overfitting", 6, "the trainer saw it")])
    status = fold_reports(TrainingJobStatus(), [*epochs(TRAIN[:5], VAL[:5]), trainer, *epochs(TRAIN, VAL)[5:]], NOW)
    assert kinds(status) == [("Overfitting", 6)]
    assert status.diagnostics[0].message == "the trainer saw it"


def test_the_operators_finding_first_leaves_one_entry() -> None:
    status = fold_reports(TrainingJobStatus(), epochs(TRAIN[:6], VAL[:6]), NOW)
    late = report("diagnostic", 7, diagnostics=[finding("Overfitting", 7, "the trainer saw it later")])
    status = fold_reports(status, [late, *epochs(TRAIN, VAL)[6:]], NOW)
    assert kinds(status) == [("Overfitting", 6)]
    assert status.diagnostics[0].message.startswith("validation loss rose")


def test_a_separate_later_episode_replaces_the_earlier_one_with_a_new_event() -> None:
    first = fold_reports(TrainingJobStatus(), epochs(TRAIN, VAL), NOW)
    recovery = epochs([0.18, 0.16, 0.14, 0.12], [0.9, 0.8, 0.7, 0.6], first=9)
    relapse = epochs([0.11, 0.10, 0.09, 0.08], [0.65, 0.7, 0.75, 0.8], first=13)
    later = fold_reports(first, [*recovery, *relapse], NOW)
    assert kinds(later) == [("Overfitting", 15)]
    assert [event.reason for event in diagnostic_events(first, later)] == ["Overfitting"]


def test_a_clients_non_finite_losses_are_one_entry_the_first() -> None:
    nan_losses = [
        report(
            "diagnostic",
            epoch,
            diagnostics=[finding("NonFiniteLoss", epoch, f"{name} is nan at epoch {epoch}", "Error") for name in names],
        )
        for epoch, names in ((3, ("train_loss", "val_loss")), (4, ("train_loss",)))
    ]
    status = fold_reports(TrainingJobStatus(), [*epochs(TRAIN[:2], VAL[:2]), *nan_losses], NOW)
    assert kinds(status) == [("NonFiniteLoss", 3)]
    assert status.diagnostics[0].message == "train_loss is nan at epoch 3"


def test_an_identical_finding_folded_again_stays_in_place() -> None:
    gradients = report("diagnostic", 2, diagnostics=[finding("ExplodingGradients", 2, "norm 1e6")])
    imbalance = report("diagnostic", 3, diagnostics=[finding("ClassImbalance", 3, "class 3 is rare")])
    status = fold_reports(TrainingJobStatus(), [gradients, imbalance], NOW)
    assert fold_reports(status, [gradients], NOW).diagnostics == status.diagnostics
    assert kinds(status) == [("ExplodingGradients", 2), ("ClassImbalance", 3)]


def test_the_loss_curve_is_in_status_and_the_final_result_keeps_it() -> None:
    status = fold_reports(TrainingJobStatus(), epochs(TRAIN[:2], VAL[:2]), NOW)
    assert status.to_api()["metrics"]["lossCurve"] == [
        {"epoch": 1, "train": 1.0, "validation": 1.0},
        {"epoch": 2, "train": 0.8, "validation": 0.8},
    ]
    final = FinalResult.model_validate({"status": "succeeded", "exitCode": 0, "epochsCompleted": 2})
    finished = fold_final_result(status, final)
    assert finished.metrics is not None and status.metrics is not None
    assert finished.metrics.loss_curve == status.metrics.loss_curve
