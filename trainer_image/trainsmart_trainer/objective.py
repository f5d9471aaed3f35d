"""Which metric a run optimises, which direction is better, and the early-stopping bookkeeping (pure)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from trainsmart_trainer.config import MetricMode, TrainerConfig

_LOWER_IS_BETTER = ("loss", "rmse", "mae", "error")


def objective_metric(config: TrainerConfig, has_validation: bool) -> str:
    """The early-stopping metric when configured, else val_loss (train_loss without validation data): the
    same default the operator's status documents for its history."""
    if config.early_stopping is not None:
        return config.early_stopping.metric
    return "val_loss" if has_validation else "train_loss"


def metric_mode(metric: str, config: TrainerConfig) -> MetricMode:
    """The configured mode for the early-stopping metric; otherwise inferred from the metric's name."""
    if config.early_stopping is not None and config.early_stopping.metric == metric:
        return config.early_stopping.mode
    return MetricMode.MIN if any(word in metric for word in _LOWER_IS_BETTER) else MetricMode.MAX


@dataclass(frozen=True)
class BestTracker:
    """The best objective value so far and how many epochs have passed without beating it."""

    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, value: float, epoch: int, mode: MetricMode, min_delta: float = 0.0) -> BestTracker:
        """A new tracker after `epoch` produced `value`; an improvement must beat best by more than min_delta."""
        if not math.isfinite(value):
            return BestTracker(self.best, self.best_epoch, self.bad_epochs + 1)
        if self.best is None:
            return BestTracker(value, epoch, 0)
        improved = value < self.best - min_delta if mode == MetricMode.MIN else value > self.best + min_delta
        if improved:
            return BestTracker(value, epoch, 0)
        return BestTracker(self.best, self.best_epoch, self.bad_epochs + 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BestTracker:
        return cls(best=data.get("best"), best_epoch=data.get("best_epoch"), bad_epochs=int(data.get("bad_epochs", 0)))


def should_stop_early(tracker: BestTracker, config: TrainerConfig) -> bool:
    return config.early_stopping is not None and tracker.bad_epochs >= config.early_stopping.patience
