"""Which metric a run optimises, which direction is better, and the early-stopping bookkeeping (pure).

Directions are the contract's `ObjectiveDirection`, the encoding the operator's sweeps use too, so "better"
means the same on both sides; the config's `min`/`max` is converted once, in `objective_direction`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import ObjectiveDirection

_LOWER_IS_BETTER = ("loss", "rmse", "mae", "error")


def objective_metric(config: TrainerConfig, has_validation: bool) -> str:
    """The early-stopping metric when configured, else val_loss (train_loss without validation data): the
    same default the operator's status documents for its history."""
    if config.early_stopping is not None:
        return config.early_stopping.metric
    return "val_loss" if has_validation else "train_loss"


def objective_direction(metric: str, config: TrainerConfig) -> ObjectiveDirection:
    """The configured mode for the early-stopping metric; otherwise inferred from the metric's name."""
    if config.early_stopping is not None and config.early_stopping.metric == metric:
        return config.early_stopping.mode.direction
    lower_is_better = any(word in metric for word in _LOWER_IS_BETTER)
    return ObjectiveDirection.MINIMIZE if lower_is_better else ObjectiveDirection.MAXIMIZE


@dataclass(frozen=True)
class BestTracker:
    """The best objective value so far and how many epochs have passed without beating it.

    The direction is not stored: it comes from the config on every update, so checkpoints only ever held
    `best`, `best_epoch` and `bad_epochs` and stay readable whichever way a direction is spelled.
    """

    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, value: float, epoch: int, direction: ObjectiveDirection, min_delta: float = 0.0) -> BestTracker:
        """A new tracker after `epoch` produced `value`; an improvement must beat best by more than min_delta."""
        if not math.isfinite(value):
            return BestTracker(self.best, self.best_epoch, self.bad_epochs + 1)
        if self.best is None:
            return BestTracker(value, epoch, 0)
        # In loss terms (lower is better either way) the margin is always subtracted.
        if direction.as_loss(value) < direction.as_loss(self.best) - min_delta:
            return BestTracker(value, epoch, 0)
        return BestTracker(self.best, self.best_epoch, self.bad_epochs + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> BestTracker:
        return cls(
            best=fields.get("best"), best_epoch=fields.get("best_epoch"), bad_epochs=int(fields.get("bad_epochs", 0))
        )


def should_stop_early(tracker: BestTracker, config: TrainerConfig) -> bool:
    return config.early_stopping is not None and tracker.bad_epochs >= config.early_stopping.patience
