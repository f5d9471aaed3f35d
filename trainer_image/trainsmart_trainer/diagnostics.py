"""Findings about a run, from numbers the loop already has: losses, gradient norms, accuracies, label counts.

Each check is a pure function returning a Diagnostic or None, so the thresholds are unit-tested on plain
numbers; `DiagnosticsTracker` only remembers the per-epoch history and which findings were already
reported (each kind once per run: status keeps few diagnostics, and a repeated warning is noise). Thresholds
are deliberately coarse: a false alarm costs a user's attention, a missed divergence costs GPU hours.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from trainsmart_trainer.contract import Diagnostic, DiagnosticType, Severity

# A global gradient norm above this is a step dominated by a blow-up: with inputs and targets on a unit
# scale, cross-entropy and MSE give norms of roughly 0.01-10.
EXPLODING_GRAD_NORM: Final = 1e3
# Some layer learns nothing when its weight gradient stays below this (float32 updates of ~1e-10 vanish).
VANISHING_GRAD_NORM: Final = 1e-7
# ... unless the loss is ~0 anyway: a model that fits its data perfectly has tiny gradients too.
VANISHING_MIN_LOSS: Final = 1e-3
# Overfitting: validation loss rose this many epochs in a row while training loss went down.
OVERFIT_EPOCHS: Final = 3
# Underfitting: after this many epochs the training accuracy is still within this margin of chance.
UNDERFIT_MIN_EPOCHS: Final = 2
UNDERFIT_MARGIN: Final = 0.05
# Class imbalance: the largest training class has at least this many times the samples of the smallest.
IMBALANCE_RATIO: Final = 5.0


def non_finite_loss(
    value: float, *, step: int, epoch: int, learning_rate: float, clip: float | None, split: str = "training"
) -> Diagnostic:
    """The loss became NaN/inf: training cannot recover, so this ends the run (permanent failure)."""
    hints = [f"lower learningRate (now {learning_rate:g})"]
    if clip is None:
        hints.append("set gradClipNorm (e.g. 1.0)")
    hints.append("check the inputs for NaN/inf values; with mixedPrecision fp16 try bf16")
    return Diagnostic(
        type=DiagnosticType.NON_FINITE_LOSS,
        severity=Severity.ERROR,
        message=f"{split} loss became {value} at step {step} (epoch {epoch}); stopping",
        suggestion="; ".join(hints),
        epoch=epoch,
        step=step,
    )


def exploding_gradients(norm: float, *, step: int, epoch: int, clip: float | None) -> Diagnostic | None:
    """One step's global gradient norm (before clipping) is huge, or not finite."""
    if math.isfinite(norm) and norm <= EXPLODING_GRAD_NORM:
        return None
    clipped = f" (clipped to {clip:g})" if clip is not None else ""
    suggestion = "lower learningRate" + ("" if clip is not None else ", set gradClipNorm (e.g. 1.0)")
    return Diagnostic(
        type=DiagnosticType.EXPLODING_GRADIENTS,
        severity=Severity.WARNING,
        message=f"gradient norm {norm:.3g} at step {step} exceeds {EXPLODING_GRAD_NORM:g}{clipped}",
        suggestion=suggestion + ", and normalise inputs and regression targets",
        epoch=epoch,
        step=step,
    )


def vanishing_gradients(layer_norms: dict[str, float], train_loss: float, *, epoch: int) -> Diagnostic | None:
    """Some weight's gradient norm (mean over the epoch's samples) is ~0 while the loss is not."""
    if not layer_norms or not math.isfinite(train_loss) or train_loss < VANISHING_MIN_LOSS:
        return None
    name, smallest = min(layer_norms.items(), key=lambda name_and_norm: name_and_norm[1])
    if smallest >= VANISHING_GRAD_NORM:
        return None
    return Diagnostic(
        type=DiagnosticType.VANISHING_GRADIENTS,
        severity=Severity.WARNING,
        message=f"gradient norm of {name} is {smallest:.2g} (< {VANISHING_GRAD_NORM:g}) in epoch {epoch} while "
        f"the training loss is {train_loss:.4g}: that layer has stopped learning",
        suggestion="use ReLU-family activations or normalisation layers, a shallower model, or a larger "
        "learningRate; check that the weights did not collapse (weightDecay, l1Penalty)",
        epoch=epoch,
    )


def overfitting(train_losses: Sequence[float], val_losses: Sequence[float], *, epoch: int) -> Diagnostic | None:
    """Validation loss rose OVERFIT_EPOCHS epochs in a row while training loss fell over the same span."""
    span = OVERFIT_EPOCHS
    if len(val_losses) < span + 1 or len(train_losses) < span + 1:
        return None
    val, train = list(val_losses[-(span + 1) :]), list(train_losses[-(span + 1) :])
    rising = all(later > earlier for earlier, later in itertools.pairwise(val))
    if not rising or not train[-1] < train[0]:
        return None
    return Diagnostic(
        type=DiagnosticType.OVERFITTING,
        severity=Severity.WARNING,
        message=f"validation loss rose for {span} epochs ({val[0]:.4g} -> {val[-1]:.4g}) while training loss fell "
        f"({train[0]:.4g} -> {train[-1]:.4g})",
        suggestion="add regularisation (weightDecay, dropout), use a smaller model or more data, or set "
        "earlyStopping on val_loss",
        epoch=epoch,
    )


def chance_accuracy(class_counts: Sequence[int]) -> float:
    """Accuracy of always predicting the most frequent training class."""
    total = sum(class_counts)
    return max(class_counts) / total if total else 0.0


def underfitting(train_accuracy: float, chance: float, *, epoch: int, learning_rate: float) -> Diagnostic | None:
    """Training accuracy still near what always guessing the majority class gets."""
    if epoch < UNDERFIT_MIN_EPOCHS or train_accuracy >= chance + UNDERFIT_MARGIN:
        return None
    return Diagnostic(
        type=DiagnosticType.UNDERFITTING,
        severity=Severity.WARNING,
        message=f"training accuracy {train_accuracy:.3f} after {epoch} epochs is near chance ({chance:.3f}): "
        "the model is not learning the training data",
        suggestion=f"tune learningRate (now {learning_rate:g}: too small learns nothing, too large kills units), "
        "train longer or use a bigger model; check that the labels match the inputs (random labels cannot be "
        "learned)",
        epoch=epoch,
    )


def class_imbalance(class_counts: Sequence[int], weights_mode: str) -> Diagnostic | None:
    """The training labels are skewed; a warning when nothing compensates, a note when weights do."""
    if len(class_counts) < 2 or sum(class_counts) == 0:
        return None
    largest, smallest = max(class_counts), min(class_counts)
    if smallest and largest / smallest < IMBALANCE_RATIO:
        return None
    rare = class_counts.index(smallest)
    share = smallest / sum(class_counts)
    ratio = "inf" if smallest == 0 else f"{largest / smallest:.1f}"
    message = (
        f"training labels are imbalanced: class {rare} has {smallest} samples ({share:.1%}), largest/smallest {ratio}"
    )
    if weights_mode != "none":
        return Diagnostic(
            type=DiagnosticType.CLASS_IMBALANCE,
            severity=Severity.INFO,
            message=f"{message}; the loss uses {weights_mode} class weights",
            suggestion="watch val_macro_f1 rather than accuracy",
        )
    return Diagnostic(
        type=DiagnosticType.CLASS_IMBALANCE,
        severity=Severity.WARNING,
        message=message,
        suggestion="set classWeights.mode: balanced (or rebalance the data), and watch val_macro_f1 rather "
        "than accuracy",
    )


def mixed_precision_ignored(precision: str) -> Diagnostic:
    return Diagnostic(
        type=DiagnosticType.MIXED_PRECISION_IGNORED,
        severity=Severity.INFO,
        message=f"mixedPrecision {precision} applies to GPUs only; training on the CPU in float32",
        suggestion="",
    )


@dataclass
class DiagnosticsTracker:
    """Per-run memory for the checks: loss history and which kinds were reported. Checkpointed."""

    train_losses: list[float] = field(default_factory=list)
    val_losses: list[float] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)

    def first(self, finding: Diagnostic | None) -> Diagnostic | None:
        """`finding`, unless its kind was reported before in this run."""
        if finding is None or finding.type.value in self.reported:
            return None
        self.reported.add(finding.type.value)
        return finding

    def unreported(self, candidates: Iterable[Diagnostic | None]) -> list[Diagnostic]:
        """The findings among `candidates` (None: a check that found nothing) whose kind is new in this run."""
        return [finding for finding in map(self.first, candidates) if finding is not None]

    def after_epoch(
        self,
        *,
        epoch: int,
        train_loss: float,
        val_loss: float | None,
        train_accuracy: float | None,
        chance: float | None,
        layer_grad_norms: dict[str, float],
        learning_rate: float,
    ) -> list[Diagnostic]:
        """The epoch-level checks; new findings only."""
        self.train_losses.append(train_loss)
        if val_loss is not None:
            self.val_losses.append(val_loss)
        candidates = [vanishing_gradients(layer_grad_norms, train_loss, epoch=epoch)]
        if val_loss is not None:
            candidates.append(overfitting(self.train_losses, self.val_losses, epoch=epoch))
        if train_accuracy is not None and chance is not None:
            candidates.append(underfitting(train_accuracy, chance, epoch=epoch, learning_rate=learning_rate))
        return self.unreported(candidates)

    def state_dict(self) -> dict[str, Any]:
        keep = 4 * OVERFIT_EPOCHS  # the checks look back a few epochs; the checkpoint need not grow forever
        return {
            "train_losses": self.train_losses[-keep:],
            "val_losses": self.val_losses[-keep:],
            "reported": sorted(self.reported),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.train_losses = [float(loss) for loss in state.get("train_losses", [])]
        self.val_losses = [float(loss) for loss in state.get("val_losses", [])]
        self.reported = {str(kind) for kind in state.get("reported", [])}
