"""Optimizers, learning-rate schedules, early-stopping bookkeeping (pure parts of the loop).

Pins:
- each optimizer name builds that torch optimizer with the configured momentum / weight decay;
- schedules as functions of the step: step decays per step_epochs, warmup ramps then holds, cosine ends at
  minLearningRate, onecycle peaks at maxLearningRate ~30% in and ends far below the start;
- the LambdaLR applies them per optimizer step; `none` builds no scheduler at all;
- BestTracker: min/max modes, min_delta, patience, non-finite values count as no improvement;
- the config's `min`/`max` mode maps onto the contract's ObjectiveDirection, and BestTracker in directions
  decides "improved" exactly as the former min/max comparison did (min: below best - minDelta; max: above
  best + minDelta).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from trainsmart_trainer.config import EarlyStoppingConfig, LrScheduleConfig, MetricMode, TrainerConfig
from trainsmart_trainer.contract import ObjectiveDirection
from trainsmart_trainer.objective import BestTracker, objective_direction, objective_metric, should_stop_early
from trainsmart_trainer.optimizers import build_optimizer, build_scheduler, l1_term, lr_factor


def params() -> list[nn.Parameter]:
    return list(nn.Linear(3, 2).parameters())


@pytest.mark.parametrize(
    ("optimizer", "cls", "momentum"),
    [
        ({"name": "sgd"}, torch.optim.SGD, 0.9),
        ({"name": "sgd", "momentum": 0.5, "nesterov": True}, torch.optim.SGD, 0.5),
        ({"name": "adam"}, torch.optim.Adam, None),
        ({"name": "adamw"}, torch.optim.AdamW, None),
        ({"name": "rmsprop", "momentum": 0.3}, torch.optim.RMSprop, 0.3),
    ],
)
def test_optimizers(optimizer: dict[str, object], cls: type, momentum: float | None) -> None:
    config = TrainerConfig.model_validate({"optimizer": optimizer, "weightDecay": 0.01, "learningRate": 0.2})
    built = build_optimizer(config, params())
    assert type(built) is cls
    group = built.param_groups[0]
    assert (group["lr"], group["weight_decay"]) == (0.2, 0.01)
    if momentum is not None:
        assert group["momentum"] == momentum


def schedule(**fields: object) -> LrScheduleConfig:
    return LrScheduleConfig.model_validate(fields)


def test_step_schedule_decays_every_step_epochs() -> None:
    s = schedule(name="step", stepEpochs=2, gamma=0.5)
    factors = [lr_factor(s, 0.1, step, steps_per_epoch=10, epochs=6) for step in (0, 19, 20, 39, 40)]
    assert factors == [1.0, 1.0, 0.5, 0.5, 0.25]


def test_warmup_ramps_linearly_then_holds() -> None:
    s = schedule(name="warmup", warmupEpochs=1)
    assert lr_factor(s, 0.1, 0, 4, 3) == 0.25
    assert lr_factor(s, 0.1, 3, 4, 3) == 1.0
    assert lr_factor(s, 0.1, 11, 4, 3) == 1.0


def test_cosine_ends_at_the_minimum() -> None:
    s = schedule(name="cosine", minLearningRate=0.01)
    assert lr_factor(s, 0.1, 0, 10, 5) == pytest.approx(1.0)
    assert lr_factor(s, 0.1, 49, 10, 5) == pytest.approx(0.1)
    assert 0.1 < lr_factor(s, 0.1, 25, 10, 5) < 1.0


def test_onecycle_peaks_then_anneals() -> None:
    s = schedule(name="onecycle", maxLearningRate=1.0)
    values = [lr_factor(s, 0.1, step, 10, 10) for step in range(100)]
    peak = max(range(100), key=values.__getitem__)
    assert 25 <= peak <= 35 and values[peak] == pytest.approx(10.0, rel=1e-3)
    assert values[0] == pytest.approx(10.0 / 25) and values[-1] == pytest.approx(values[0] / 1e4)


def test_scheduler_steps_per_optimizer_step_and_none_means_no_scheduler() -> None:
    config = TrainerConfig.model_validate({"lrSchedule": {"name": "warmup", "warmupEpochs": 1}, "learningRate": 0.4})
    optimizer = build_optimizer(config, params())
    scheduler = build_scheduler(config, optimizer, steps_per_epoch=4)
    assert scheduler is not None and optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.2)
    assert build_scheduler(TrainerConfig(), optimizer, 4) is None


def test_l1_term_covers_weights_only() -> None:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, -2.0]]))
        layer.bias.fill_(100.0)
    assert float(l1_term(layer).detach()) == 3.0


def test_objective_defaults_and_modes() -> None:
    assert objective_metric(TrainerConfig(), has_validation=True) == "val_loss"
    assert objective_metric(TrainerConfig(validation_split=0), has_validation=False) == "train_loss"
    config = TrainerConfig.model_validate({"earlyStopping": {"metric": "val_accuracy", "mode": "max"}})
    assert (
        objective_metric(config, True) == "val_accuracy"
        and objective_direction("val_accuracy", config) == ObjectiveDirection.MAXIMIZE
    )
    assert objective_direction("val_rmse", TrainerConfig()) == ObjectiveDirection.MINIMIZE
    assert objective_direction("val_macro_f1", TrainerConfig()) == ObjectiveDirection.MAXIMIZE


def test_best_tracker_patience_and_min_delta() -> None:
    config = TrainerConfig.model_validate({"earlyStopping": {"patience": 2, "minDelta": 0.1}})
    tracker = BestTracker()
    for epoch, value in enumerate([1.0, 0.95, 0.85, math.nan], start=1):
        tracker = tracker.update(value, epoch, ObjectiveDirection.MINIMIZE, 0.1)
    assert (tracker.best, tracker.best_epoch, tracker.bad_epochs) == (0.85, 3, 1)
    assert not should_stop_early(tracker, config)
    tracker = tracker.update(0.80, 5, ObjectiveDirection.MINIMIZE, 0.1)
    assert should_stop_early(tracker, config)
    assert BestTracker.from_dict(tracker.to_dict()) == tracker
    up = BestTracker().update(0.5, 1, ObjectiveDirection.MAXIMIZE).update(0.7, 2, ObjectiveDirection.MAXIMIZE)
    assert up.best == 0.7 and not should_stop_early(up, TrainerConfig())


def test_metric_mode_names_the_contract_direction_and_keeps_its_spelling() -> None:
    assert MetricMode.MIN.direction is ObjectiveDirection.MINIMIZE
    assert MetricMode.MAX.direction is ObjectiveDirection.MAXIMIZE
    stopping = EarlyStoppingConfig.model_validate({"metric": "val_accuracy", "mode": "max"})
    assert stopping.mode is MetricMode.MAX and stopping.model_dump(mode="json")["mode"] == "max"
    explicit_min = TrainerConfig.model_validate({"earlyStopping": {"metric": "val_accuracy", "mode": "min"}})
    assert objective_direction("val_accuracy", explicit_min) is ObjectiveDirection.MINIMIZE


def test_min_delta_applies_in_the_maximizing_direction_too() -> None:
    tracker = BestTracker().update(0.5, 1, ObjectiveDirection.MAXIMIZE, 0.1)
    tracker = tracker.update(0.55, 2, ObjectiveDirection.MAXIMIZE, 0.1)
    assert (tracker.best, tracker.best_epoch, tracker.bad_epochs) == (0.5, 1, 1)
    tracker = tracker.update(0.65, 3, ObjectiveDirection.MAXIMIZE, 0.1)
    assert (tracker.best, tracker.best_epoch, tracker.bad_epochs) == (0.65, 3, 0)


_FINITE = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@given(best=_FINITE, value=_FINITE, min_delta=st.floats(min_value=0, max_value=10), mode=st.sampled_from(MetricMode))
def test_improvement_in_directions_matches_the_min_max_rule(
    best: float, value: float, min_delta: float, mode: MetricMode
) -> None:
    expected = value < best - min_delta if mode == MetricMode.MIN else value > best + min_delta
    updated = BestTracker(best=best, best_epoch=1).update(value, 2, mode.direction, min_delta)
    assert (updated.best_epoch == 2) == expected
