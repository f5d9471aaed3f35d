"""The best checkpoint by the objective, kept apart from the newest ones (issue 15).

Pins:
- a value replaces the best only when finite and strictly better under the direction; a best of another
  metric (the objective changed) is always replaced;
- `best/checkpoint.pt` is a full checkpoint (it loads like any other) that records its metric, value and
  epoch, is never one of the newest checkpoints a run resumes from, and an unreadable one counts as none;
- after each epoch rank 0 saves the state as the best only when the objective improved: a worse later
  epoch leaves the best epoch's weights in place, and a restarted run, which reads the recorded value from
  the file, does not overwrite it with a worse epoch either;
- the best follows a sweep trial's objective (OBJECTIVE_METRIC/GOAL) when the pod has one, else the run's own;
- a real run saves the best at the objective's best epoch even on epochs without a regular checkpoint, and
  reports it in its epoch and final reports.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from trainsmart_trainer import checkpoint, contract
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import BestCheckpointInfo, ObjectiveDirection, ReportKind, TrainerReport
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.epoch import Trainee, build_trainee
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.resume import best_objective, read_best_checkpoint, save_best_checkpoint
from trainsmart_trainer.run_state import RunState
from trainsmart_trainer.settings import RuntimeSettings, runtime_settings

CONFIG = TrainerConfig.model_validate({"epochs": 4})
MAXIMIZE, MINIMIZE = ObjectiveDirection.MAXIMIZE, ObjectiveDirection.MINIMIZE
ACCURACY = ("val_accuracy", MAXIMIZE)


def best(value: float, metric: str = "val_accuracy", epoch: int = 2) -> BestCheckpointInfo:
    return BestCheckpointInfo(path="/ckpt/best/checkpoint.pt", epoch=epoch, metric=metric, value=value)


@pytest.mark.parametrize(
    ("current", "metric", "value", "direction", "replaces"),
    [
        (None, "val_accuracy", 0.5, MAXIMIZE, True),
        (best(0.9), "val_accuracy", 0.95, MAXIMIZE, True),
        (best(0.9), "val_accuracy", 0.9, MAXIMIZE, False),  # a tie keeps the earlier epoch
        (best(0.9), "val_accuracy", 0.8, MAXIMIZE, False),
        (best(0.3, "val_loss"), "val_loss", 0.2, MINIMIZE, True),
        (best(0.3, "val_loss"), "val_loss", 0.4, MINIMIZE, False),
        (best(0.3, "val_loss"), "val_accuracy", 0.1, MAXIMIZE, True),  # the recorded best is of another metric
        (None, "val_accuracy", math.nan, MAXIMIZE, False),
    ],
)
def test_only_a_strictly_better_finite_value_replaces_the_best(
    current: BestCheckpointInfo | None, metric: str, value: float, direction: ObjectiveDirection, replaces: bool
) -> None:
    assert checkpoint.improves_on(current, metric, value, direction) is replaces


def trainee(seed: int = 0) -> Trainee:
    torch.manual_seed(seed)
    return build_trainee(CONFIG, nn.Linear(4, 3), nn.CrossEntropyLoss(), torch.device("cpu"), 5, classification=True)


def state_after(epoch: int, value: float) -> RunState:
    return RunState(epoch=epoch, global_step=5 * epoch, last_metrics={"val_accuracy": value, "val_loss": 1 - value})


def test_the_best_file_is_a_full_checkpoint_that_records_what_it_is_the_best_of(tmp_path: Path) -> None:
    run = state_after(2, 0.97)
    assert save_best_checkpoint(run, trainee(), CONFIG, RuntimeSettings(checkpoint_dir=tmp_path), DistInfo(), ACCURACY)
    path = tmp_path / contract.BEST_CHECKPOINT_DIR / "checkpoint.pt"
    assert run.best_checkpoint == BestCheckpointInfo(path=str(path), epoch=2, metric="val_accuracy", value=0.97)
    assert checkpoint.read_best(tmp_path) == run.best_checkpoint
    assert checkpoint.load_file(path)["epoch"] == 2  # loads like any checkpoint
    assert checkpoint.list_checkpoints(tmp_path) == []  # never resumed from as the newest


def test_an_unreadable_best_counts_as_none_and_stale_temp_files_go(tmp_path: Path) -> None:
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "checkpoint.pt").write_bytes(b"cut short")
    (tmp_path / "best" / ".checkpoint-tmp-123").write_bytes(b"half")
    assert checkpoint.read_best(tmp_path) is None
    checkpoint.remove_stale_temp_files(tmp_path)
    assert [p.name for p in (tmp_path / "best").iterdir()] == ["checkpoint.pt"]


def test_a_worse_later_epoch_keeps_the_best_epochs_weights_also_after_a_restart(tmp_path: Path) -> None:
    settings = RuntimeSettings(checkpoint_dir=tmp_path)
    model = trainee()
    run = RunState()
    saved: dict[int, dict[str, torch.Tensor]] = {}
    for epoch, value in enumerate([0.90, 0.969, 0.944], start=1):
        with torch.no_grad():
            for parameter in model.raw_model.parameters():
                parameter.add_(1.0)  # "training": every epoch's weights differ
        saved[epoch] = {k: v.clone() for k, v in model.raw_model.state_dict().items()}
        run.epoch, run.last_metrics = epoch, {"val_accuracy": value}
        save_best_checkpoint(run, model, CONFIG, settings, DistInfo(), ACCURACY)
    payload = checkpoint.load_file(checkpoint.best_path(tmp_path))
    assert payload["best_checkpoint"] == {"metric": "val_accuracy", "value": 0.969, "epoch": 2}
    assert torch.equal(payload["model"]["weight"], saved[2]["weight"])
    # A restart resumed from an older position (its own best-so-far predates epoch 2) reads the file.
    restarted = state_after(3, 0.95)
    restarted.best_checkpoint = read_best_checkpoint(settings, DistInfo())
    assert not save_best_checkpoint(restarted, model, CONFIG, settings, DistInfo(), ACCURACY)
    assert checkpoint.read_best(tmp_path) == restarted.best_checkpoint and restarted.best_checkpoint is not None
    assert restarted.best_checkpoint.epoch == 2


def test_only_rank_zero_saves_and_nothing_without_a_directory_or_the_metric(tmp_path: Path) -> None:
    run = state_after(1, 0.9)
    worker = DistInfo(rank=1, world_size=2)
    assert not save_best_checkpoint(run, trainee(), CONFIG, RuntimeSettings(checkpoint_dir=tmp_path), worker, ACCURACY)
    assert not save_best_checkpoint(run, trainee(), CONFIG, RuntimeSettings(), DistInfo(), ACCURACY)
    missing = ("test_accuracy", MAXIMIZE)
    assert not save_best_checkpoint(
        run, trainee(), CONFIG, RuntimeSettings(checkpoint_dir=tmp_path), DistInfo(), missing
    )
    assert not (tmp_path / "best").exists()


def test_the_best_follows_a_trials_objective_when_the_pod_has_one() -> None:
    env = {contract.OBJECTIVE_METRIC: "val_accuracy", contract.OBJECTIVE_GOAL: "maximize"}
    trial = runtime_settings(env, config=CONFIG)
    assert best_objective(trial, CONFIG, "val_loss", MINIMIZE) == ("val_accuracy", MAXIMIZE)
    no_goal = runtime_settings({contract.OBJECTIVE_METRIC: "val_rmse"}, config=CONFIG)
    assert best_objective(no_goal, CONFIG, "val_loss", MINIMIZE) == ("val_rmse", MINIMIZE)
    assert best_objective(RuntimeSettings(), CONFIG, "val_loss", MINIMIZE) == ("val_loss", MINIMIZE)


CPU = resolve_device(simulated=False, visible_devices=None, cuda=CudaProbe(available=False))
SYNTHETIC = {"dataset": {"name": "synthetic", "numSamples": 300, "numFeatures": 8}, "model": {"hiddenSizes": [16]}}


class Recorded:
    """Stands in for the report sender: keeps every report the run sends."""

    def __init__(self) -> None:
        self.reports: list[TrainerReport] = []

    def submit(self, report: dict[str, Any]) -> None:
        self.reports.append(TrainerReport.model_validate(report))

    submit_progress = submit

    def close(self, timeout_s: float) -> bool:
        return True


def test_a_run_keeps_the_objectives_best_epoch_between_regular_checkpoints(tmp_path: Path) -> None:
    config = TrainerConfig.model_validate({**SYNTHETIC, "epochs": 4, "learningRate": 0.3})
    settings = RuntimeSettings(
        checkpoint_dir=tmp_path, checkpoint_interval_epochs=3, objective_metric="val_accuracy", objective_goal=MAXIMIZE
    )
    run = TrainingRun(config, settings, DistInfo(), CPU)
    sender = Recorded()
    run.reporter.sender = sender  # type: ignore[assignment]
    outcome = run.execute()
    values = {int(h["epoch"]): h["val_accuracy"] for h in outcome.history}
    top = max(values.values())
    expected_epoch = min(epoch for epoch, value in values.items() if value == top)
    recorded = checkpoint.read_best(tmp_path)
    assert recorded is not None and (recorded.metric, recorded.epoch, recorded.value) == (
        "val_accuracy",
        expected_epoch,
        top,
    )
    epoch_reports = [r for r in sender.reports if r.kind == ReportKind.EPOCH]
    assert epoch_reports[-1].best_checkpoint == recorded
    assert next(r for r in sender.reports if r.kind == ReportKind.FINAL).best_checkpoint == recorded
