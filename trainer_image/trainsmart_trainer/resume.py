"""What goes into a checkpoint and how a run picks up from one.

Kept apart from `checkpoint.py` (files, atomicity, validity) so that the file format knows nothing about
training, and from `loop.py` so the list of saved fields sits in one short place: model, optimizer,
scheduler, AMP scaler, position (epochs done, steps into the next epoch, global step), best objective and
early-stopping counters, diagnostics history, last metrics, and every rank's RNG states.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import torch

from trainsmart_trainer import checkpoint, ddp
from trainsmart_trainer.checkpoint import restore_rng
from trainsmart_trainer.components import PermanentError
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import CheckpointInfo
from trainsmart_trainer.objective import BestTracker

if TYPE_CHECKING:
    from trainsmart_trainer.loop import TrainingRun

log = logging.getLogger(__name__)

# Changing these between attempts is legitimate: a sweep promotes a trial by raising its epochs.
_MAY_CHANGE_ON_RESUME = {"epochs", "checkpoint_every_epochs", "data_loader_workers"}


def config_fingerprint(config: TrainerConfig) -> str:
    """Hash of the hyperparameters that shape the run, to warn when a checkpoint came from another config."""
    data = config.model_dump(mode="json", exclude=_MAY_CHANGE_ON_RESUME)
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_checkpoint_state(run: TrainingRun, rank_rngs: list[Any]) -> dict[str, Any]:
    """The checkpoint payload for the run's current position (rank 0 calls this)."""
    t = run.t
    return {
        "epoch": run.epoch,
        "step_in_epoch": run.step_in_epoch,
        "global_step": run.global_step,
        "total_epochs": run.config.epochs,
        "world_size": run.dist.world_size,
        "fingerprint": config_fingerprint(run.config),
        "model": t.raw_model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict() if t.scheduler is not None else None,
        "scaler": t.scaler.state_dict() if t.scaler is not None else None,
        "best": run.best.to_dict(),
        "early_stopped": run.early_stopped,
        "diagnostics": run.tracker.state_dict(),
        "metrics": dict(run.last_metrics),
        "epoch_seconds": list(run.epoch_seconds[-20:]),
        "rng_per_rank": rank_rngs,
    }


def apply_resume_state(run: TrainingRun, state: dict[str, Any]) -> None:
    """Load `state` into the run (every rank, before the model is wrapped in DDP).

    Raises RuntimeError/KeyError/ValueError when the state does not fit (another model): the caller turns
    that into a permanent failure instead of silently starting over and overwriting the old checkpoints.
    """
    t = run.t
    t.raw_model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    if t.scheduler is not None and state.get("scheduler") is not None:
        t.scheduler.load_state_dict(state["scheduler"])
    if t.scaler is not None and state.get("scaler") is not None:
        t.scaler.load_state_dict(state["scaler"])
    run.epoch = int(state["epoch"])
    run.step_in_epoch = int(state["step_in_epoch"])
    run.global_step = int(state["global_step"])
    run.best = BestTracker.from_dict(state.get("best") or {})
    run.early_stopped = bool(state.get("early_stopped", False))
    run.tracker.load_state_dict(state.get("diagnostics") or {})
    run.last_metrics = {str(k): float(v) for k, v in (state.get("metrics") or {}).items()}
    run.epoch_seconds = [float(v) for v in state.get("epoch_seconds", [])]
    run.saved_at = (run.epoch, run.step_in_epoch)
    rngs = state.get("rng_per_rank") or []
    if len(rngs) == run.dist.world_size:
        restore_rng(rngs[run.dist.rank])
    else:
        # Another world size: the per-rank streams cannot be matched up; a fresh, still deterministic seed.
        torch.manual_seed(run.config.seed + 7919 * run.global_step + run.dist.rank)


def resume_run(run: TrainingRun) -> None:
    """Rank 0 finds the newest valid checkpoint and broadcasts it; every rank loads it (before DDP wraps the
    model). A checkpoint that does not fit the model is a PermanentError, not a silent fresh start."""
    directory = run.settings.checkpoint_dir
    if directory is None:
        return
    payload: dict[str, Any] | None = None
    source = ""
    if run.dist.is_main:
        checkpoint.remove_stale_temp_files(directory)
        found = checkpoint.load_newest_valid(directory)
        if found is not None:
            source, payload = str(found[0]), found[1]
    payload, source = ddp.broadcast_object((payload, source))
    if payload is None:
        if run.dist.is_main:
            log.info("no checkpoint in %s: starting from epoch 0", directory)
        return
    try:
        apply_resume_state(run, payload)
    except (RuntimeError, KeyError, ValueError) as error:
        raise PermanentError(
            f"checkpoint {source} does not fit this model/optimizer ({error}); it was written by a different "
            "config: use an empty checkpoint directory"
        ) from error
    if payload.get("fingerprint") != config_fingerprint(run.config) and run.dist.is_main:
        log.warning("checkpoint %s was written with different hyperparameters; resuming anyway", source)
    if run.dist.is_main:
        log.info("resumed from %s: %d epochs done, step %d", source, run.epoch, run.global_step)


def save_run_checkpoint(run: TrainingRun) -> None:
    """Save the run's position (a collective: every rank contributes its RNG state; rank 0 writes). A failed
    write is logged, and training goes on: losing progress is worse than losing one checkpoint."""
    directory = run.settings.checkpoint_dir
    if directory is None:
        return
    rngs = ddp.gather_objects(checkpoint.capture_rng())  # a collective: every rank takes part
    # Every rank records the attempt, success or not: whether to save again on SIGTERM must be decided the
    # same way on all ranks, or rank 0 would wait in the gather above for peers that never join.
    run.saved_at = (run.epoch, run.step_in_epoch)
    if not run.dist.is_main:
        return
    state = build_checkpoint_state(run, rngs or [])
    try:
        path = checkpoint.save(directory, state, run.settings.checkpoint_keep)
    except OSError as error:
        log.error("checkpoint NOT saved to %s: %s; training continues", directory, error)
        return
    run.last_checkpoint = CheckpointInfo(path=str(path), epoch=run.epoch, time=datetime.now(UTC))
    log.info("checkpoint saved: %s", path)
