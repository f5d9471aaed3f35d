"""The training loop in one process, with real (tiny) training on the packaged data and models.

Pins:
- a digits/mlp run improves, reports every per-epoch metric the issue lists, and ends with test metrics;
- same seed -> identical metrics (CPU determinism); another seed -> different ones;
- every optimizer and schedule trains; regression reports rmse; mixed precision on the CPU is a logged no-op;
- early stopping ends with EARLY_STOPPED after `patience` epochs without improvement;
- a stop request (what SIGTERM does) checkpoints mid-epoch and exits TERMINATED; resuming from that
  checkpoint, or from an epoch checkpoint with more epochs, ends exactly where an uninterrupted run ends;
- an incompatible checkpoint is a permanent failure, not a silent restart from scratch;
- the result file and termination message hold the final result.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from trainsmart_trainer.components import RunOutcome, StopSignal
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import DiagnosticType, ExitCode, FinalStatus
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.settings import RuntimeSettings

CPU = resolve_device(simulated=False, visible_devices=None, cuda=CudaProbe(available=False))
TIMING = {"samples_per_second", "epoch_time_seconds"}
DIGITS = {"model": {"name": "mlp", "hiddenSizes": [32]}, "batchSize": 32, "learningRate": 0.01}
SYNTHETIC = {"dataset": {"name": "synthetic", "numSamples": 300, "numFeatures": 8}, "model": {"hiddenSizes": [16]}}


def train(config: dict[str, Any], stop: StopSignal | None = None, **settings: Any) -> RunOutcome:
    run = TrainingRun(TrainerConfig.model_validate(config), RuntimeSettings(**settings), DistInfo(), CPU, stop=stop)
    return run.execute()


def without_timing(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in epoch.items() if k not in TIMING} for epoch in history]


def test_a_digits_run_improves_and_reports_every_metric(tmp_path: Path) -> None:
    outcome = train({**DIGITS, "epochs": 2}, result_path=tmp_path / "result.json", termination_log=tmp_path / "term")
    assert outcome.exit_code == ExitCode.SUCCESS and outcome.final.status == FinalStatus.SUCCEEDED
    first, second = outcome.history
    expected = {
        "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "val_precision", "val_recall",
        "samples_per_second", "epoch_time_seconds", "grad_norm", "learning_rate",
    }  # fmt: skip
    assert expected <= set(second)
    assert second["train_loss"] < first["train_loss"] and second["val_accuracy"] > 0.5
    assert outcome.final.metrics["test_accuracy"] > 0.5 and outcome.final.epochs_completed == 2
    assert outcome.final.objective_metric == "val_loss" and outcome.final.best_epoch == 2
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["final"]["metrics"]["test_accuracy"] == outcome.final.metrics["test_accuracy"]
    assert json.loads((tmp_path / "term").read_text())["status"] == "succeeded"


def test_same_seed_same_metrics_other_seed_other_metrics() -> None:
    config = {**SYNTHETIC, "epochs": 2, "dropout": 0.2, "seed": 3}
    first, again = train(config), train(config)
    assert without_timing(first.history) == without_timing(again.history)
    assert first.final.metrics["test_loss"] == again.final.metrics["test_loss"]
    other = train({**config, "seed": 4})
    assert without_timing(other.history) != without_timing(first.history)


@pytest.mark.parametrize(
    "hyper",
    [
        {"optimizer": {"name": "sgd", "nesterov": True}, "lrSchedule": {"name": "step", "stepEpochs": 1}},
        {"optimizer": {"name": "adamw"}, "lrSchedule": {"name": "cosine", "warmupEpochs": 1}, "weightDecay": 0.01},
        {"optimizer": {"name": "rmsprop", "momentum": 0.5}, "lrSchedule": {"name": "onecycle"}},
        {"optimizer": {"name": "adam"}, "lrSchedule": {"name": "warmup"}, "l1Penalty": 1e-4, "gradClipNorm": 1.0},
        {"classWeights": {"mode": "balanced"}, "labelSmoothing": 0.1, "dataLoaderWorkers": 1},
    ],
)
def test_optimizers_and_schedules_train(hyper: dict[str, Any]) -> None:
    outcome = train({**SYNTHETIC, **hyper, "epochs": 2, "learningRate": 0.01})
    assert outcome.exit_code == ExitCode.SUCCESS
    assert all(math.isfinite(epoch["train_loss"]) for epoch in outcome.history)


def test_regression_reports_rmse() -> None:
    dataset = {**SYNTHETIC["dataset"], "task": "regression"}
    outcome = train({**SYNTHETIC, "dataset": dataset, "epochs": 1})
    assert outcome.exit_code == ExitCode.SUCCESS
    assert {"val_rmse", "val_mae", "test_rmse"} <= set(outcome.final.metrics)


def test_mixed_precision_on_the_cpu_is_a_logged_no_op() -> None:
    outcome = train({**SYNTHETIC, "epochs": 1, "mixedPrecision": "bf16"})
    assert outcome.exit_code == ExitCode.SUCCESS
    assert [d.type for d in outcome.diagnostics] == [DiagnosticType.MIXED_PRECISION_IGNORED]


def test_early_stopping_ends_the_run_with_its_own_exit_code() -> None:
    # minDelta 100: nothing after the first epoch counts as an improvement.
    config = {**SYNTHETIC, "epochs": 10, "earlyStopping": {"metric": "val_loss", "patience": 2, "minDelta": 100}}
    outcome = train(config)
    assert outcome.exit_code == ExitCode.EARLY_STOPPED and outcome.final.status == FinalStatus.EARLY_STOPPED
    assert outcome.final.epochs_completed == 3 and outcome.final.best_epoch == 1
    assert "test_accuracy" in outcome.final.metrics


def test_unknown_early_stopping_metric_is_a_permanent_failure() -> None:
    outcome = train({**SYNTHETIC, "epochs": 2, "earlyStopping": {"metric": "val_acc"}})
    assert outcome.exit_code == ExitCode.PERMANENT_FAILURE
    assert "val_acc" in outcome.final.reason and "val_accuracy" in outcome.final.reason


class StopAfter(StopSignal):
    """Asks to stop once `steps` training steps have looked at it (as if SIGTERM arrived then)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.left = steps

    @property
    def requested(self) -> bool:
        self.left -= 1
        if self.left < 0:
            self.reason = "test stop"
        return self.left < 0


def test_stop_checkpoints_mid_epoch_and_resume_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    config = {**SYNTHETIC, "epochs": 2, "batchSize": 16, "dropout": 0.1}  # 12 steps per epoch
    reference = train(config)
    # 16 looks: before epoch 1, its 12 steps, before epoch 2, then 3 steps of epoch 2 -> stop after step 3.
    stopped = train(config, stop=StopAfter(16), checkpoint_dir=tmp_path, result_path=tmp_path / "r.json")
    assert stopped.exit_code == ExitCode.TERMINATED and stopped.final.status == FinalStatus.TERMINATED
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-000001-0000000.pt",
                                                                      "checkpoint-000001-0000003.pt"]  # fmt: skip
    resumed = train(config, checkpoint_dir=tmp_path)
    assert resumed.exit_code == ExitCode.SUCCESS and [h["epoch"] for h in resumed.history] == [2.0]
    assert resumed.final.metrics["val_loss"] == reference.final.metrics["val_loss"]
    assert resumed.final.metrics["test_accuracy"] == reference.final.metrics["test_accuracy"]


def test_more_epochs_continue_from_the_last_checkpoint(tmp_path: Path) -> None:
    config = {**SYNTHETIC, "dropout": 0.1}
    reference = train({**config, "epochs": 3})
    first = train({**config, "epochs": 2}, checkpoint_dir=tmp_path)
    assert first.final.epochs_completed == 2
    more = train({**config, "epochs": 3}, checkpoint_dir=tmp_path)
    assert [h["epoch"] for h in more.history] == [3.0]
    assert without_timing(more.history) == without_timing(reference.history[2:])


def test_an_incompatible_checkpoint_is_a_permanent_failure(tmp_path: Path) -> None:
    train({**SYNTHETIC, "epochs": 1}, checkpoint_dir=tmp_path)
    outcome = train({**SYNTHETIC, "model": {"hiddenSizes": [7]}, "epochs": 2}, checkpoint_dir=tmp_path)
    assert outcome.exit_code == ExitCode.PERMANENT_FAILURE and "empty checkpoint directory" in outcome.final.reason
