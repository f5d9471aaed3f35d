"""The packaged trainer's TensorBoard event files, read back with the tensorboard package itself.

Pins:
- a run with a checkpoint directory writes one TensorBoard run under `<checkpoint dir>/tensorboard/`: every
  per-epoch metric (train and validation, learning rate, samples/s) with the epoch as the step, the final
  test metrics at the last epoch, the hyperparameters (config and a trial's TRAINSMART_PARAM_*) as an
  HParams session in that same run (no nested run), and a session end that says how the run ended;
- an attempt that resumes from a checkpoint writes into the same directory and continues the curve: an
  epoch an earlier attempt logged but did not checkpoint is run again and shows only its new value, so
  the steps are 1..N once each;
- `tensorboard: false` or no checkpoint directory: no event files, and the run trains as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import api_pb2, metadata

from trainsmart_trainer.components import RunOutcome
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import ExitCode
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.settings import RuntimeSettings

CPU = resolve_device(simulated=False, visible_devices=None, cuda=CudaProbe(available=False))
SYNTHETIC = {
    "dataset": {"name": "synthetic", "numSamples": 300, "numFeatures": 8},
    "model": {"hiddenSizes": [16]},
    "optimizer": {"name": "sgd"},
    "learningRate": 0.05,
}
PER_EPOCH = {"train/train_loss", "train/train_accuracy", "val/val_loss", "val/val_accuracy", "run/learning_rate",
             "run/samples_per_second"}  # fmt: skip


class CrashError(Exception):
    """What kills an attempt between two checkpoints in these tests."""


def train(
    config: dict[str, Any], checkpoint_dir: Path | None, crash_after_epoch: int = 0, **settings: Any
) -> RunOutcome:
    def on_epoch_end(run: TrainingRun) -> None:
        if run.state.epoch == crash_after_epoch:
            raise CrashError(f"killed after epoch {crash_after_epoch}")

    run = TrainingRun(
        TrainerConfig.model_validate({**SYNTHETIC, **config}),
        RuntimeSettings(checkpoint_dir=checkpoint_dir, **settings),
        DistInfo(),
        CPU,
        on_epoch_end=on_epoch_end if crash_after_epoch else None,
    )
    return run.execute()


def read_run(directory: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(directory))
    accumulator.Reload()
    return accumulator


def curve(accumulator: EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def test_a_run_logs_every_epoch_metric_its_hyperparameters_and_final_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINSMART_PARAM_WIDTH", "16")
    outcome = train({"epochs": 2}, tmp_path)
    assert outcome.exit_code == ExitCode.SUCCESS
    board = tmp_path / "tensorboard"
    assert [path.is_file() for path in board.iterdir()] == [True]  # one run: no nested run directory
    events = read_run(board)
    assert set(events.Tags()["scalars"]) >= PER_EPOCH
    for epoch, history in enumerate(outcome.history, start=1):
        for tag in PER_EPOCH:
            name = tag.split("/", 1)[1]
            assert (epoch, pytest.approx(history[name])) in curve(events, tag)
    assert curve(events, "test/test_accuracy") == [(2, pytest.approx(outcome.final.metrics["test_accuracy"]))]

    hparams = events.PluginTagToContent(metadata.PLUGIN_NAME)
    start = metadata.parse_session_start_info_plugin_data(hparams[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["learningRate"].number_value == pytest.approx(0.05)
    assert start.hparams["optimizer.name"].string_value == "sgd"
    assert start.hparams["model.hiddenSizes"].string_value == "[16]"
    assert start.hparams["params.width"].number_value == 16
    assert "tensorboard" not in start.hparams
    end = metadata.parse_session_end_info_plugin_data(hparams[metadata.SESSION_END_INFO_TAG])
    assert end.status == api_pb2.STATUS_SUCCESS
    assert metadata.EXPERIMENT_TAG not in hparams  # TensorBoard derives it, so several jobs compare in one view


def test_a_resumed_attempt_continues_the_same_curve_without_duplicate_steps(tmp_path: Path) -> None:
    # Attempt 0 checkpoints after epoch 2 and dies after logging epoch 3; attempt 1 resumes after epoch 2.
    first = train({"epochs": 4}, tmp_path, crash_after_epoch=3, checkpoint_interval_epochs=2)
    assert first.exit_code == ExitCode.RETRYABLE_FAILURE
    second = train({"epochs": 4}, tmp_path, checkpoint_interval_epochs=2)
    assert second.exit_code == ExitCode.SUCCESS and [epoch["epoch"] for epoch in second.history] == [3.0, 4.0]
    board = tmp_path / "tensorboard"
    assert len(list(board.iterdir())) == 2  # an event file per attempt, in one run
    val_loss = curve(read_run(board), "val/val_loss")
    assert [step for step, _ in val_loss] == [1, 2, 3, 4]
    assert val_loss[:2] == [
        (1, pytest.approx(first.history[0]["val_loss"])),
        (2, pytest.approx(first.history[1]["val_loss"])),
    ]
    assert val_loss[2:] == [
        (3, pytest.approx(second.history[0]["val_loss"])),
        (4, pytest.approx(second.history[1]["val_loss"])),
    ]


@pytest.mark.parametrize(("config", "with_volume"), [({"tensorboard": False}, True), ({}, False)])
def test_no_event_files_when_turned_off_or_without_a_checkpoint_volume(
    tmp_path: Path, config: dict[str, Any], with_volume: bool
) -> None:
    outcome = train({**config, "epochs": 1}, tmp_path / "checkpoints" if with_volume else None)
    assert outcome.exit_code == ExitCode.SUCCESS
    assert not list(tmp_path.rglob("events.out.tfevents.*"))
