"""What a checkpoint carries between attempts, as `resume.py` writes it and rebuilds a `RunState` from it.

Pins:
- the payload keeps the keys checkpoints have always had, so files written before `RunState` existed still
  load, and files written now load in a trainer that predates it;
- such a payload (a best value, early-stopping counters, diagnostics history, metrics, epoch times) comes
  back as a RunState field by field, the model/optimizer/scheduler states land in the trainee, and the run
  counts as saved at the resumed position;
- saving and restoring through a real file round-trips every checkpointed field; the fields that are not
  checkpointed (history, last checkpoint) start empty;
- a checkpoint from another world size reseeds deterministically instead of restoring a foreign RNG stream.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainsmart_trainer import checkpoint
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.diagnostics import DiagnosticsTracker
from trainsmart_trainer.epoch import Trainee, build_trainee
from trainsmart_trainer.objective import BestTracker
from trainsmart_trainer.resume import build_checkpoint_state, restore_run_state, resume_run, save_run_checkpoint
from trainsmart_trainer.run_state import RunState
from trainsmart_trainer.settings import RuntimeSettings

CONFIG = TrainerConfig.model_validate({"lrSchedule": {"name": "cosine"}, "epochs": 4})
PAYLOAD_KEYS = {
    "epoch",
    "step_in_epoch",
    "global_step",
    "total_epochs",
    "world_size",
    "fingerprint",
    "model",
    "optimizer",
    "scheduler",
    "scaler",
    "best",
    "early_stopped",
    "diagnostics",
    "metrics",
    "epoch_seconds",
    "rng_per_rank",
}


def trainee(seed: int = 0) -> Trainee:
    torch.manual_seed(seed)
    model = nn.Linear(4, 3)
    return build_trainee(CONFIG, model, nn.CrossEntropyLoss(), torch.device("cpu"), 5, classification=True)


def earlier_payload(source: Trainee) -> dict[str, Any]:
    """A payload spelled key by key as trainers wrote them before the run state had its own object."""
    return {
        "epoch": 2,
        "step_in_epoch": 3,
        "global_step": 13,
        "total_epochs": 4,
        "world_size": 1,
        "fingerprint": "0123456789abcdef",
        "model": source.raw_model.state_dict(),
        "optimizer": source.optimizer.state_dict(),
        "scheduler": source.scheduler.state_dict() if source.scheduler is not None else None,
        "scaler": None,
        "best": {"best": 0.25, "best_epoch": 1, "bad_epochs": 1},
        "early_stopped": False,
        "diagnostics": {"train_losses": [0.9, 0.5], "val_losses": [0.3, 0.4], "reported": ["Overfitting"]},
        "metrics": {"val_loss": 0.4, "train_loss": 0.5},
        "epoch_seconds": [1.5, 2.5],
        "rng_per_rank": [checkpoint.capture_rng()],
    }


def test_a_payload_in_the_earlier_format_comes_back_field_by_field() -> None:
    source, target = trainee(seed=1), trainee(seed=2)
    assert source.scheduler is not None
    source.optimizer.step()  # before the scheduler's step, or torch warns about the order
    source.scheduler.step()
    state = restore_run_state(earlier_payload(source), target, DistInfo(), seed=0)
    assert (state.epoch, state.step_in_epoch, state.global_step) == (2, 3, 13)
    assert state.best == BestTracker(best=0.25, best_epoch=1, bad_epochs=1) and not state.early_stopped
    assert state.diagnostics.val_losses == [0.3, 0.4] and state.diagnostics.reported == {"Overfitting"}
    assert state.last_metrics == {"val_loss": 0.4, "train_loss": 0.5} and state.epoch_seconds == [1.5, 2.5]
    assert state.saved_at == (2, 3) and state.saved_now
    assert torch.equal(target.raw_model.state_dict()["weight"], source.raw_model.state_dict()["weight"])
    assert target.scheduler is not None and target.scheduler.last_epoch == 1


def test_saving_writes_the_same_keys_and_round_trips_through_a_file(tmp_path: Path) -> None:
    saved_state = RunState(
        epoch=3,
        global_step=15,
        best=BestTracker(best=0.1, best_epoch=3),
        early_stopped=True,
        diagnostics=DiagnosticsTracker(train_losses=[0.2], val_losses=[0.1], reported={"Underfitting"}),
        last_metrics={"val_loss": 0.1},
        epoch_seconds=[1.0, 2.0, 3.0],
        history=[{"epoch": 3.0, "val_loss": 0.1}],
    )
    assert set(build_checkpoint_state(saved_state, trainee(), CONFIG, 1, [])) == PAYLOAD_KEYS
    settings = RuntimeSettings(checkpoint_dir=tmp_path)
    save_run_checkpoint(saved_state, trainee(seed=3), CONFIG, settings, DistInfo())
    assert saved_state.saved_at == (3, 0) and saved_state.last_checkpoint is not None
    assert saved_state.last_checkpoint.path == str(tmp_path / "checkpoint-000003-0000000.pt")
    resumed = resume_run(trainee(seed=4), CONFIG, settings, DistInfo())
    assert resumed == dataclasses.replace(saved_state, history=[], last_checkpoint=None)


def test_another_world_size_reseeds_from_the_position() -> None:
    payload = earlier_payload(trainee())
    payload["rng_per_rank"] = [checkpoint.capture_rng(), checkpoint.capture_rng()]
    restore_run_state(payload, trainee(), DistInfo(), seed=7)
    drawn = torch.rand(3)
    torch.manual_seed(7 + 7919 * 13)
    assert torch.equal(drawn, torch.rand(3))
