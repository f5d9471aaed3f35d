"""Diagnostic checks on plain numbers (thresholds and messages); the real-training provocations live in
test_trainer_diagnostics_training.py.

Pins:
- non-finite loss is an Error naming the step and suggesting a lower learning rate / clipping;
- exploding: above EXPLODING_GRAD_NORM or non-finite; vanishing: a layer below VANISHING_GRAD_NORM while the
  loss is not ~0;
- overfitting needs OVERFIT_EPOCHS consecutive rises of val loss with falling train loss;
- underfitting needs UNDERFIT_MIN_EPOCHS and accuracy within UNDERFIT_MARGIN of the majority class;
- imbalance: Warning without class weights, Info with them, nothing for balanced data;
- the tracker reports each kind once per run, and its state survives a checkpoint.
"""

from __future__ import annotations

import math

from trainsmart_trainer import diagnostics as d
from trainsmart_trainer.contract import DiagnosticType, Severity


def test_non_finite_loss_names_step_and_fix() -> None:
    found = d.non_finite_loss(math.nan, step=17, epoch=1, learning_rate=5.0, clip=None)
    assert (found.type, found.severity, found.step, found.epoch) == (
        DiagnosticType.NON_FINITE_LOSS,
        Severity.ERROR,
        17,
        1,
    )
    assert "step 17" in found.message and "lower learningRate (now 5)" in found.suggestion
    assert "gradClipNorm" in found.suggestion
    assert "gradClipNorm" not in d.non_finite_loss(math.inf, step=1, epoch=1, learning_rate=1, clip=1.0).suggestion


def test_exploding_gradients_threshold() -> None:
    assert d.exploding_gradients(d.EXPLODING_GRAD_NORM, step=1, epoch=1, clip=None) is None
    found = d.exploding_gradients(d.EXPLODING_GRAD_NORM * 10, step=4, epoch=2, clip=1.0)
    assert found is not None and found.step == 4 and "clipped to 1" in found.message
    assert d.exploding_gradients(math.inf, step=1, epoch=1, clip=None) is not None


def test_vanishing_gradients_needs_a_dead_layer_and_a_live_loss() -> None:
    norms = {"layers.0.weight": 1e-12, "layers.9.weight": 0.3}
    found = d.vanishing_gradients(norms, 2.3, epoch=1)
    assert found is not None and "layers.0.weight" in found.message
    assert d.vanishing_gradients(norms, 1e-5, epoch=1) is None  # fitted perfectly: tiny gradients are fine
    assert d.vanishing_gradients({"w": 1e-3}, 2.3, epoch=1) is None


def test_overfitting_needs_consecutive_rises_and_falling_train_loss() -> None:
    train = [1.0, 0.8, 0.6, 0.4, 0.2]
    assert d.overfitting(train, [1.0, 0.9, 1.0, 1.1, 1.2], epoch=5) is not None
    assert d.overfitting(train, [1.0, 0.9, 1.0, 0.95, 1.2], epoch=5) is None  # a dip breaks the streak
    assert d.overfitting([0.2, 0.3, 0.4, 0.5], [1.0, 1.1, 1.2, 1.3], epoch=4) is None  # both rising: diverging
    assert d.overfitting(train[:2], [1.0, 1.1], epoch=2) is None


def test_underfitting_near_majority_class_accuracy() -> None:
    chance = d.chance_accuracy([50, 30, 20])
    assert chance == 0.5
    assert d.underfitting(0.52, chance, epoch=d.UNDERFIT_MIN_EPOCHS, learning_rate=1e-6) is not None
    assert d.underfitting(0.52, chance, epoch=d.UNDERFIT_MIN_EPOCHS - 1, learning_rate=1e-6) is None
    assert d.underfitting(0.9, chance, epoch=5, learning_rate=1e-3) is None


def test_class_imbalance_warns_or_notes_weights() -> None:
    assert d.class_imbalance([100, 90, 110], "none") is None
    warning = d.class_imbalance([950, 50], "none")
    assert warning is not None and warning.severity == Severity.WARNING
    assert "classWeights.mode: balanced" in warning.suggestion and "class 1" in warning.message
    note = d.class_imbalance([950, 50], "balanced")
    assert note is not None and note.severity == Severity.INFO and "balanced class weights" in note.message
    empty_class = d.class_imbalance([10, 0], "none")
    assert empty_class is not None and "inf" in empty_class.message


def test_tracker_reports_each_kind_once_and_checkpoints_its_memory() -> None:
    tracker = d.DiagnosticsTracker()
    found = []
    for epoch, (train, val) in enumerate([(1.0, 1.0), (0.8, 1.1), (0.6, 1.2), (0.4, 1.3), (0.2, 1.4)], start=1):
        found += tracker.after_epoch(
            epoch=epoch,
            train_loss=train,
            val_loss=val,
            train_accuracy=None,
            chance=None,
            layer_grad_norms={"w": 0.1},
            learning_rate=0.1,
        )
    assert [item.type for item in found] == [DiagnosticType.OVERFITTING]
    assert found[0].epoch == 4
    restored = d.DiagnosticsTracker()
    restored.load_state_dict(tracker.state_dict())
    assert restored.reported == {"Overfitting"} and restored.val_losses == tracker.val_losses
