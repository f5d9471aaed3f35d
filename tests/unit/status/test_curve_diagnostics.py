"""The operator's own findings from reported curves, on synthetic curves.

Pins:
- divergence: a training loss climbing back far above its best is LossDiverged at the first epoch it
  held, naming the best; a loss fitted to nearly 0 that wobbles, or a few percent of noise, is not;
- overfitting: validation loss rising OVERFIT_EPOCHS consecutive epochs while training loss falls, at the
  epoch the rule first held; not across a gap in the epochs, not for a flat noisy curve, not while the
  training loss rises too;
- underfitting: an objective (either direction) no better than its first value after UNDERFIT_EPOCHS
  epochs; not before;
- plateau: no improvement of the best objective for PLATEAU_EPOCHS epochs after it had improved, as Info;
  a run that never learnt is Underfitting only;
- a healthy run (losses falling, accuracy rising) gives no finding; an objective whose direction is
  unknown gives no objective finding;
- an ongoing episode gives the same finding (epoch, message, evidence start) as more epochs arrive;
- the loss curve: losses picked by name, merged per epoch (training and validation on separate reports),
  idempotent, bounded to the newest LOSS_CURVE_MAX_ITEMS;
- which epochs a finding the trainer reported covers (episode_start).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from trainsmart.api import DiagnosticSeverity
from trainsmart.api.trainingjob_status import LOSS_CURVE_MAX_ITEMS, HistoryPoint, LossPoint
from trainsmart.status.curve_diagnostics import (
    LOSS_DIVERGED,
    OVERFIT_EPOCHS,
    OVERFITTING,
    PLATEAU,
    PLATEAU_EPOCHS,
    UNDERFIT_EPOCHS,
    UNDERFITTING,
    curve_findings,
    diverged,
    episode_start,
    loss_point,
    overfitting,
    plateau,
    record_losses,
    underfitting,
)
from trainsmart_trainer.contract import ObjectiveDirection

MIN, MAX = ObjectiveDirection.MINIMIZE, ObjectiveDirection.MAXIMIZE


def losses(train: Sequence[float | None], val: Sequence[float | None] | None = None, first: int = 1) -> list[LossPoint]:
    val = val if val is not None else [None] * len(train)
    return [
        LossPoint(epoch=first + index, train=t, validation=v)
        for index, (t, v) in enumerate(zip(train, val, strict=True))
    ]


def history(values: Sequence[float], first: int = 1) -> list[HistoryPoint]:
    return [HistoryPoint(epoch=first + index, value=value) for index, value in enumerate(values)]


HEALTHY_TRAIN = [2.3 * 0.85**epoch for epoch in range(30)]
HEALTHY_VAL = [2.4 * 0.88**epoch + 0.05 for epoch in range(30)]
HEALTHY_ACCURACY = [0.95 - 0.85 * 0.8**epoch for epoch in range(30)]


def test_a_training_loss_far_above_its_best_is_divergence_from_the_first_epoch_it_held() -> None:
    found = diverged(losses([2.3, 1.0, 0.5, 0.4, 1.5, 3.0, 9.0]))
    assert found is not None
    assert (found.diagnostic.type, found.diagnostic.epoch, found.since) == (LOSS_DIVERGED, 5, 4)
    assert found.diagnostic.severity == DiagnosticSeverity.WARNING
    assert "1.5 at epoch 5" in found.diagnostic.message and "0.4 at epoch 4" in found.diagnostic.message
    assert found.diagnostic.suggestion


@pytest.mark.parametrize(
    "train",
    [
        [2.3, 0.01, 0.001, 0.002, 0.003],  # fitted to ~0: doubling is noise there
        [2.3, 1.2, 0.8, 0.84, 0.79, 0.83],  # a few percent of wobble
        [2.3, 1.2, 0.8, 1.5],  # climbing back, but not yet to twice its best
        HEALTHY_TRAIN,
    ],
)
def test_noise_and_a_healthy_loss_are_not_divergence(train: list[float]) -> None:
    assert diverged(losses(train)) is None


def test_validation_rising_while_training_falls_is_overfitting_at_the_epoch_the_rule_first_held() -> None:
    curve = losses([1.0, 0.8, 0.6, 0.5, 0.4, 0.3], [1.0, 0.8, 0.7, 0.75, 0.8, 0.9])
    found = overfitting(curve)
    assert found is not None
    assert (found.diagnostic.type, found.diagnostic.epoch, found.since) == (OVERFITTING, 6, 6 - OVERFIT_EPOCHS)
    assert "0.7 at epoch 3 -> 0.9 at epoch 6" in found.diagnostic.message


@pytest.mark.parametrize(
    ("train", "val", "first_epochs"),
    [
        ([1.0, 0.8, 0.6, 0.5, 0.4], [1.0, 0.7, 0.8, 0.9, 1.0], [1, 2, 3, 5, 6]),  # epoch 4 missing
        ([1.0, 0.9, 0.8, 0.7, 0.6], [0.700, 0.701, 0.702, 0.703, 0.704], None),  # flat, noise rising by 0.6%
        ([1.0, 1.1, 1.2, 1.3, 1.4], [1.0, 1.1, 1.2, 1.3, 1.4], None),  # both rise: not overfitting
        ([1.0, 0.8, 0.6, 0.5, 0.4], [1.0, 0.9, 1.0, None, 1.2], None),  # a missing validation value
    ],
)
def test_no_overfitting_across_gaps_in_noise_or_when_training_loss_rises_too(
    train: list[float], val: list[float | None], first_epochs: list[int] | None
) -> None:
    curve = losses(train, val)
    if first_epochs is not None:
        curve = [point.model_copy(update={"epoch": epoch}) for point, epoch in zip(curve, first_epochs, strict=True)]
    assert overfitting(curve) is None


@pytest.mark.parametrize(
    ("values", "goal"),
    [([2.30, 2.31, 2.30, 2.29, 2.30], MIN), ([0.10, 0.10, 0.1005, 0.099, 0.10], MAX)],
)
def test_an_objective_no_better_than_its_first_value_is_underfitting(
    values: list[float], goal: ObjectiveDirection
) -> None:
    assert len(values) == UNDERFIT_EPOCHS
    assert underfitting(history(values[:-1]), "m", goal) is None
    found = underfitting(history(values), "m", goal)
    assert found is not None
    assert (found.diagnostic.type, found.diagnostic.epoch, found.since) == (UNDERFITTING, UNDERFIT_EPOCHS, 1)
    assert found.diagnostic.message.startswith("m has not improved on its first value")
    assert plateau(history(values * 3), "m", goal) is None, "a run that never learnt is not also a plateau"


def test_no_improvement_for_plateau_epochs_after_learning_is_a_plateau_as_info() -> None:
    values = [1.0, 0.8, 0.6, 0.5, *([0.5, 0.502, 0.499, 0.501] * 3)]  # best 0.5 at epoch 4, then flat
    found = plateau(history(values), "val_loss", MIN)
    assert found is not None
    assert (found.diagnostic.type, found.diagnostic.severity) == (PLATEAU, DiagnosticSeverity.INFO)
    assert (found.diagnostic.epoch, found.since) == (4 + PLATEAU_EPOCHS, 5)
    assert plateau(history(values[: 3 + PLATEAU_EPOCHS]), "val_loss", MIN) is None
    assert underfitting(history(values), "val_loss", MIN) is None


@pytest.mark.parametrize(
    ("objective", "values", "goal"), [("val_loss", HEALTHY_VAL, MIN), ("val_accuracy", HEALTHY_ACCURACY, MAX)]
)
def test_a_healthy_run_has_no_finding(objective: str, values: list[float], goal: ObjectiveDirection) -> None:
    curve = losses(HEALTHY_TRAIN, HEALTHY_VAL)
    for end in range(1, len(curve) + 1):
        assert curve_findings(curve[:end], history(values[:end]), objective, goal) == [], f"after epoch {end}"


def test_an_objective_of_unknown_direction_gives_no_objective_finding() -> None:
    flat = history([1.0] * 20)
    assert curve_findings([], flat, "score", None) == []
    assert [found.diagnostic.type for found in curve_findings([], flat, "score", MIN)] == [UNDERFITTING]


def test_an_ongoing_episode_keeps_giving_the_same_finding() -> None:
    train = [2.0 - 0.1 * epoch for epoch in range(12)]
    val = [1.0, 0.8, 0.7, 0.75, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
    first = overfitting(losses(train[:6], val[:6]))
    assert first is not None
    assert all(overfitting(losses(train[:end], val[:end])) == first for end in range(7, 13))
    blowup = [2.3, 1.0, 0.5, 0.4, 1.5, 3.0, 9.0, 20.0, 50.0]
    onset = diverged(losses(blowup[:5]))
    assert onset is not None and all(diverged(losses(blowup[:end])) == onset for end in range(6, 10))


def test_the_loss_curve_picks_losses_by_name_merges_per_epoch_and_is_bounded() -> None:
    assert loss_point(3, {"val_accuracy": 0.9}) is None
    assert loss_point(3, {"loss": 0.5, "eval_loss": 0.6}) == LossPoint(epoch=3, train=0.5, validation=0.6)
    assert loss_point(3, {"train_loss": 0.4, "loss": 0.5}) == LossPoint(epoch=3, train=0.4)
    curve = record_losses([], LossPoint(epoch=2, train=0.5))
    curve = record_losses(curve, LossPoint(epoch=1, train=0.9, validation=1.0))
    curve = record_losses(curve, LossPoint(epoch=2, validation=0.7))
    assert curve == [LossPoint(epoch=1, train=0.9, validation=1.0), LossPoint(epoch=2, train=0.5, validation=0.7)]
    assert record_losses(curve, curve[1]) == curve
    for epoch in range(3, LOSS_CURVE_MAX_ITEMS + 10):
        curve = record_losses(curve, LossPoint(epoch=epoch, train=1.0 / epoch))
    assert len(curve) == LOSS_CURVE_MAX_ITEMS and curve[-1].epoch == LOSS_CURVE_MAX_ITEMS + 9


@pytest.mark.parametrize(
    ("type_", "epoch", "start"),
    [
        ("NonFiniteLoss", 7, 0),
        ("Underfitting", 3, 0),
        ("Overfitting", 7, 7 - OVERFIT_EPOCHS),
        ("Overfitting", 1, 0),
        ("ExplodingGradients", 7, None),
        ("Overfitting", None, None),
    ],
)
def test_the_epochs_a_trainer_finding_covers(type_: str, epoch: int | None, start: int | None) -> None:
    assert episode_start(type_, epoch) == start
