"""Weights & Biases from the packaged trainer, in W&B's offline mode, read back from the run's own files.

Pins:
- with WANDB_MODE=offline the trainer writes a W&B run under WANDB_DIR whose identity is the one the
  operator gives a job (WANDB_RUN_ID, WANDB_NAME, WANDB_RUN_GROUP), with the hyperparameters as its config,
  one history row per epoch (step = epoch) holding every per-epoch metric, and the final test metrics and
  status in its summary;
- without WANDB_API_KEY or WANDB_MODE nothing is written, and WANDB_MODE=disabled turns it off;
- a W&B that cannot start (an unreachable server) costs a warning, not the run: training succeeds, within
  the bounded init time, and the API key never appears in the log.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wandb

from support.wandb_records import item_key, read_records
from trainsmart_trainer import wandb_log
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
    "learningRate": 0.02,
    "epochs": 2,
}
RUN_ID = "6f1c2a0e93b44d218c5e0b7d9e4f1a23"
FAKE_KEY = "local-" + "0123456789abcdef" * 3  # the shape of a W&B key; no server ever sees it


def train(settings: RuntimeSettings) -> RunOutcome:
    return TrainingRun(TrainerConfig.model_validate(SYNTHETIC), settings, DistInfo(), CPU).execute()


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """WANDB_* as a trial's pod has them (minus the key), everything W&B writes under tmp_path. wandb reads
    the environment once per process: its teardown afterwards lets the next test start from scratch."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    directory = tmp_path / "wandb-dir"
    directory.mkdir()
    for name, value in {
        "WANDB_DIR": str(directory),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb-data"),
        "WANDB_RUN_ID": RUN_ID,
        "WANDB_RESUME": "allow",
        "WANDB_NAME": "tune-1",
        "WANDB_RUN_GROUP": "tune",
        "WANDB_SILENT": "true",
        # wandb-core is a service process; on a loaded 2-core machine its start can pass the 30 s default
        "WANDB__SERVICE_WAIT": "120",
    }.items():
        monkeypatch.setenv(name, value)
    yield directory
    wandb.teardown()


def test_an_offline_run_holds_the_config_every_epoch_and_the_final_metrics(
    wandb_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    outcome = train(RuntimeSettings())
    assert outcome.exit_code == ExitCode.SUCCESS
    [run_file] = wandb_env.glob(f"wandb/offline-run-*-{RUN_ID}/run-{RUN_ID}.wandb")
    records = read_records(run_file)

    [run] = [record.run for record in records if record.HasField("run")]
    assert (run.run_id, run.display_name, run.run_group) == (RUN_ID, "tune-1", "tune")
    config = {item.key: json.loads(item.value_json) for item in run.config.update}
    for record in records:
        if record.HasField("config"):
            config.update({item.key: json.loads(item.value_json) for item in record.config.update})
    assert config["learningRate"] == 0.02 and config["model.name"] == "mlp" and config["model.hiddenSizes"] == "[16]"

    steps = [record.history.step.num for record in records if record.HasField("history")]
    history = [
        {item_key(item): json.loads(item.value_json) for item in record.history.item}
        for record in records
        if record.HasField("history")
    ]
    assert steps == [1, 2]
    for row, epoch in zip(history, outcome.history, strict=True):
        assert row["val_loss"] == pytest.approx(epoch["val_loss"])
        assert row["learning_rate"] == pytest.approx(epoch["learning_rate"])
        assert row["samples_per_second"] == pytest.approx(epoch["samples_per_second"])

    summary: dict[str, Any] = {}
    for record in records:
        if record.HasField("summary"):
            summary.update({item_key(item): json.loads(item.value_json) for item in record.summary.update})
    assert summary["test_accuracy"] == pytest.approx(outcome.final.metrics["test_accuracy"])
    assert summary["status"] == "succeeded"
    assert any(record.HasField("exit") and record.exit.exit_code == 0 for record in records)


@pytest.mark.parametrize("mode", [None, "disabled"])
def test_nothing_is_written_unless_asked_for(
    wandb_env: Path, monkeypatch: pytest.MonkeyPatch, mode: str | None
) -> None:
    if mode is not None:
        monkeypatch.setenv("WANDB_MODE", mode)
    assert train(RuntimeSettings()).exit_code == ExitCode.SUCCESS
    assert not list(wandb_env.iterdir())


def test_an_unreachable_wandb_is_a_warning_and_never_shows_the_key(
    wandb_env: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setattr(wandb_log, "INIT_TIMEOUT_S", 5.0)
    caplog.set_level(logging.INFO)
    started = time.monotonic()
    outcome = train(RuntimeSettings())
    assert outcome.exit_code == ExitCode.SUCCESS and outcome.final.epochs_completed == 2
    assert time.monotonic() - started < 30
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("trainsmart_trainer.tracking")]
    assert warnings and "Weights & Biases" in warnings[0] and "training continues" in warnings[0]
    assert FAKE_KEY not in caplog.text
