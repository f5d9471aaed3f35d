"""What goes into a checkpoint and how a run picks up from one.

Kept apart from `checkpoint.py` (files, atomicity, validity) so that the file format knows nothing about
training, and from `loop.py` so the list of saved fields sits in one short place: model, optimizer,
scheduler, AMP scaler, position (epochs done, steps into the next epoch, global step), best objective and
early-stopping counters, diagnostics history, last metrics, and every rank's RNG states. The loop hands
over a `RunState` and its `Trainee` and gets a `RunState` back; nothing here touches the loop itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

import torch

from trainsmart_trainer import checkpoint, ddp
from trainsmart_trainer.checkpoint import restore_rng
from trainsmart_trainer.components import PermanentError
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import BestCheckpointInfo, CheckpointInfo, ObjectiveDirection
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.diagnostics import DiagnosticsTracker
from trainsmart_trainer.epoch import Trainee
from trainsmart_trainer.objective import BestTracker, objective_direction
from trainsmart_trainer.run_state import RunState
from trainsmart_trainer.settings import RuntimeSettings

log = logging.getLogger(__name__)

# Changing these between attempts is legitimate: a sweep promotes a trial by raising its epochs; the rest
# do not shape the run.
_MAY_CHANGE_ON_RESUME = {"epochs", "checkpoint_every_epochs", "data_loader_workers", "tensorboard"}


def config_fingerprint(config: TrainerConfig) -> str:
    """Hash of the hyperparameters that shape the run, to warn when a checkpoint came from another config."""
    fingerprinted = config.model_dump(mode="json", exclude=_MAY_CHANGE_ON_RESUME)
    return hashlib.sha256(json.dumps(fingerprinted, sort_keys=True).encode()).hexdigest()[:16]


def build_checkpoint_state(
    state: RunState, trainee: Trainee, config: TrainerConfig, world_size: int, rank_rngs: list[Any]
) -> dict[str, Any]:
    """The checkpoint payload for the run's current position (rank 0 calls this)."""
    return {
        "epoch": state.epoch,
        "step_in_epoch": state.step_in_epoch,
        "global_step": state.global_step,
        "total_epochs": config.epochs,
        "world_size": world_size,
        "fingerprint": config_fingerprint(config),
        "model": trainee.raw_model.state_dict(),
        "optimizer": trainee.optimizer.state_dict(),
        "scheduler": trainee.scheduler.state_dict() if trainee.scheduler is not None else None,
        "scaler": trainee.scaler.state_dict() if trainee.scaler is not None else None,
        "best": state.best.to_dict(),
        "early_stopped": state.early_stopped,
        "diagnostics": state.diagnostics.state_dict(),
        "metrics": dict(state.last_metrics),
        "epoch_seconds": list(state.epoch_seconds[-20:]),
        "rng_per_rank": rank_rngs,
    }


def restore_run_state(payload: dict[str, Any], trainee: Trainee, dist: DistInfo, seed: int) -> RunState:
    """Load `payload` into the trainee and return the run's state (every rank, before DDP wraps the model).

    Raises RuntimeError/KeyError/ValueError when the payload does not fit (another model): the caller turns
    that into a permanent failure instead of silently starting over and overwriting the old checkpoints.
    """
    trainee.raw_model.load_state_dict(payload["model"])
    trainee.optimizer.load_state_dict(payload["optimizer"])
    if trainee.scheduler is not None and payload.get("scheduler") is not None:
        trainee.scheduler.load_state_dict(payload["scheduler"])
    if trainee.scaler is not None and payload.get("scaler") is not None:
        trainee.scaler.load_state_dict(payload["scaler"])
    diagnostics = DiagnosticsTracker()
    diagnostics.load_state_dict(payload.get("diagnostics") or {})
    epoch, step_in_epoch = int(payload["epoch"]), int(payload["step_in_epoch"])
    state = RunState(
        epoch=epoch,
        step_in_epoch=step_in_epoch,
        global_step=int(payload["global_step"]),
        best=BestTracker.from_dict(payload.get("best") or {}),
        early_stopped=bool(payload.get("early_stopped", False)),
        diagnostics=diagnostics,
        last_metrics={str(name): float(value) for name, value in (payload.get("metrics") or {}).items()},
        epoch_seconds=[float(seconds) for seconds in payload.get("epoch_seconds", [])],
        saved_at=(epoch, step_in_epoch),
    )
    rank_rngs = payload.get("rng_per_rank") or []
    if len(rank_rngs) == dist.world_size:
        restore_rng(rank_rngs[dist.rank])
    else:
        # Another world size: the per-rank streams cannot be matched up; a fresh, still deterministic seed.
        torch.manual_seed(seed + 7919 * state.global_step + dist.rank)
    return state


def resume_run(trainee: Trainee, config: TrainerConfig, settings: RuntimeSettings, dist: DistInfo) -> RunState | None:
    """Rank 0 finds the newest valid checkpoint and broadcasts it; every rank loads it (before DDP wraps the
    model). None: nothing to resume. A checkpoint that does not fit the model is a PermanentError, not a
    silent fresh start."""
    directory = settings.checkpoint_dir
    if directory is None:
        return None
    payload: dict[str, Any] | None = None
    source = ""
    if dist.is_main:
        checkpoint.remove_stale_temp_files(directory)
        newest = checkpoint.load_newest_valid(directory)
        if newest is not None:
            source, payload = str(newest[0]), newest[1]
    payload, source = ddp.broadcast_object((payload, source))
    if payload is None:
        if dist.is_main:
            log.info("no checkpoint in %s: starting from epoch 0", directory)
        return None
    try:
        state = restore_run_state(payload, trainee, dist, config.seed)
    except (RuntimeError, KeyError, ValueError) as error:
        raise PermanentError(
            f"checkpoint {source} does not fit this model/optimizer ({error}); it was written by a different "
            "config: use an empty checkpoint directory"
        ) from error
    if payload.get("fingerprint") != config_fingerprint(config) and dist.is_main:
        log.warning("checkpoint %s was written with different hyperparameters; resuming anyway", source)
    if dist.is_main:
        log.info("resumed from %s: %d epochs done, step %d", source, state.epoch, state.global_step)
    return state


def save_run_checkpoint(
    state: RunState, trainee: Trainee, config: TrainerConfig, settings: RuntimeSettings, dist: DistInfo
) -> None:
    """Save the run's position (a collective: every rank contributes its RNG state; rank 0 writes) and record
    it in `state`. A failed write is logged, and training goes on: losing progress is worse than losing one
    checkpoint."""
    directory = settings.checkpoint_dir
    if directory is None:
        return
    rank_rngs = ddp.gather_objects(checkpoint.capture_rng())  # a collective: every rank takes part
    # Every rank records the attempt, success or not: whether to save again on SIGTERM must be decided the
    # same way on all ranks, or rank 0 would wait in the gather above for peers that never join.
    state.saved_at = state.position
    if not dist.is_main:
        return
    payload = build_checkpoint_state(state, trainee, config, dist.world_size, rank_rngs or [])
    try:
        path = checkpoint.save(directory, payload, settings.checkpoint_keep)
    except OSError as error:
        log.error("checkpoint NOT saved to %s: %s; training continues", directory, error)
        return
    state.last_checkpoint = CheckpointInfo(path=str(path), epoch=state.epoch, time=datetime.now(UTC))
    log.info("checkpoint saved: %s", path)


def read_best_checkpoint(settings: RuntimeSettings, dist: DistInfo) -> BestCheckpointInfo | None:
    """The best checkpoint a previous attempt left (rank 0 only: it alone saves one). Read from the file, not
    from the resumed position, whose best-so-far may predate it (issue 15)."""
    if settings.checkpoint_dir is None or not dist.is_main:
        return None
    return checkpoint.read_best(settings.checkpoint_dir)


def best_objective(
    settings: RuntimeSettings, config: TrainerConfig, objective: str, direction: ObjectiveDirection
) -> tuple[str, ObjectiveDirection]:
    """(metric, direction) the best checkpoint follows: a sweep trial's objective when the pod was given one
    (so bestTrial's value and model agree), else the run's own objective."""
    metric = settings.objective_metric
    if not metric:
        return objective, direction
    return metric, settings.objective_goal or objective_direction(metric, config)


def save_best_checkpoint(
    state: RunState,
    trainee: Trainee,
    config: TrainerConfig,
    settings: RuntimeSettings,
    dist: DistInfo,
    objective: tuple[str, ObjectiveDirection],
) -> bool:
    """After an epoch: rank 0 saves the state as the best checkpoint when `objective`'s metric improved on
    `state.best_checkpoint` and records it there. No collective, so other ranks need not take part. A failed
    write is logged and training goes on. True when a new best checkpoint was written."""
    directory = settings.checkpoint_dir
    metric, direction = objective
    value = state.last_metrics.get(metric)
    if directory is None or not dist.is_main or value is None:
        return False
    if not checkpoint.improves_on(state.best_checkpoint, metric, value, direction):
        return False
    payload = build_checkpoint_state(state, trainee, config, dist.world_size, [])
    try:
        state.best_checkpoint = checkpoint.save_best(directory, payload, metric, value)
    except OSError as error:
        log.error("best checkpoint NOT saved to %s: %s; training continues", directory, error)
        return False
    log.info("best checkpoint saved: %s (%s=%.4g at epoch %d)", state.best_checkpoint.path, metric, value, state.epoch)
    return True
