"""Experiment tracking from the packaged trainer: TensorBoard event files and Weights & Biases, rank 0 only.

The loop talks to one `Tracking` object with three calls (an attempt starts at epoch k, an epoch ended
with these metrics, the run ended with this result) and knows nothing about the backends. Tracking is a
courtesy, not the job: a backend that raises is logged once and dropped, and training goes on. (The
operator's status, Prometheus and MLflow are fed from the reports, not from here.)

Both backends get the same hyperparameters (`hyperparams.py`) and use the epoch as the step, so an
attempt that resumes after epoch k continues the curve at k + 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

from trainsmart_trainer import tensorboard_log, wandb_log
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import FinalResult
from trainsmart_trainer.hyperparams import hyperparameters
from trainsmart_trainer.settings import RuntimeSettings

log = logging.getLogger(__name__)


class Tracker(Protocol):
    """One tracking backend, driven by `Tracking`; any method may raise (the backend is then dropped)."""

    name: str

    def start(self, epoch: int) -> None: ...
    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None: ...
    def finish(self, final: FinalResult) -> None: ...
    def close(self) -> None: ...


class Tracking:
    """Fans the loop's calls out to the active trackers; none active: every call is a no-op."""

    def __init__(self, trackers: list[Tracker] | None = None) -> None:
        self.trackers: list[Tracker] = list(trackers or [])

    def _each(self, what: str, call: str, *args: Any) -> None:
        for tracker in list(self.trackers):
            try:
                getattr(tracker, call)(*args)
            except Exception as error:
                log.warning("%s: %s failed (%s: %s); training continues without it", tracker.name, what,
                            type(error).__name__, _redact(str(error)))  # fmt: skip
                self.trackers.remove(tracker)
                _close_quietly(tracker)

    def start(self, epoch: int) -> None:
        """An attempt starts after `epoch` completed epochs (0: a fresh run)."""
        self._each("starting", "start", epoch)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self._each("logging an epoch", "log_epoch", epoch, metrics)

    def finish(self, final: FinalResult) -> None:
        self._each("finishing the run", "finish", final)

    def close(self) -> None:
        """Release everything (idempotent; runs in the loop's teardown, after success or failure)."""
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            _close_quietly(tracker)


def _close_quietly(tracker: Tracker) -> None:
    try:
        tracker.close()
    except Exception as error:
        log.warning("%s: closing failed (%s: %s)", tracker.name, type(error).__name__, _redact(str(error)))


def _redact(message: str) -> str:
    """`message` without the W&B API key, should a library ever echo it back in an error."""
    key = os.environ.get("WANDB_API_KEY", "")
    return message.replace(key, "***") if len(key) >= 8 else message


def start_tracking(
    config: TrainerConfig, settings: RuntimeSettings, epoch: int, env: Mapping[str, str] | None = None
) -> Tracking:
    """The trackers this run asked for, started for an attempt that resumes after `epoch` epochs (rank 0
    calls this once per attempt): TensorBoard unless `tensorboard: false` or there is no checkpoint
    volume; W&B when the pod sets WANDB_API_KEY or WANDB_MODE and wandb is installed."""
    env = os.environ if env is None else env
    hparams = hyperparameters(config, env)
    trackers: list[Tracker] = []
    board = tensorboard_log.from_settings(config, settings, hparams)
    if board is not None:
        trackers.append(board)
    weights = wandb_log.from_env(env, settings, hparams)
    if weights is not None:
        trackers.append(weights)
    tracking = Tracking(trackers)
    tracking.start(epoch)
    return tracking
