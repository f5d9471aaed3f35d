"""Findings the operator computes from the reported curves, so that every job has them, whatever code trains.

Divergence, overfitting, underfitting and a plateau show in numbers every training code reports anyway
(losses and the objective per epoch), so they are derived here rather than in each trainer: a plain script
behind the metrics wrapper gets the same findings as the packaged trainer. Only what needs the model
(gradient norms) stays in the trainer.

A non-finite loss is not derived here: NaN and inf cannot travel in a report (JSON has no such numbers and
the schema refuses them), so only the process that saw the value can say so, and every client of the
report protocol does, with a `NonFiniteLoss` diagnostic. A loss that merely stops appearing is not taken
as non-finite: scripts report validation every few epochs, or training and validation on separate lines,
and a guess would warn on healthy jobs.

Each finding carries the epoch it was first seen at (the start of the trailing run of epochs where its
rule holds, with the numbers of that epoch), so an ongoing episode yields the same finding at every
derivation, and `since`, the first epoch of its evidence: a finding of the same type at or after `since`
(the trainer's, or this one from an earlier derivation) is the same episode and is not repeated.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from trainsmart.api import DiagnosticSeverity
from trainsmart.api.trainingjob_status import LOSS_CURVE_MAX_ITEMS, Diagnostic, HistoryPoint, LossPoint
from trainsmart_trainer.contract import DiagnosticType, ObjectiveDirection

LOSS_DIVERGED: Final = "LossDiverged"
OVERFITTING: Final = DiagnosticType.OVERFITTING.value
UNDERFITTING: Final = DiagnosticType.UNDERFITTING.value
PLATEAU: Final = "Plateau"
NON_FINITE_LOSS: Final = DiagnosticType.NON_FINITE_LOSS.value

# The names training code uses for its losses, in order of preference: the packaged trainer's and the
# convention the docs show first, then what Hugging Face (loss, eval_loss) and common scripts print.
TRAIN_LOSS_NAMES: Final = ("train_loss", "training_loss", "loss")
VALIDATION_LOSS_NAMES: Final = ("val_loss", "validation_loss", "valid_loss", "eval_loss")

# Divergence: the epoch's training loss at least doubled from its best ("far above": an epoch-averaged
# training loss wobbles by a few percent, never by 100%) ...
DIVERGENCE_RISE_OVER_BEST: Final = 1.0
# ... and gave back at least half of what training had gained since the first epoch, so a loss fitted to
# nearly 0 (where doubling is noise: 0.001 -> 0.002) only counts once it is really climbing back.
DIVERGENCE_SHARE_OF_GAIN_LOST: Final = 0.5
# Overfitting: validation loss rose this many epochs in a row while training loss fell (the packaged
# trainer's rule, so both find the same episode at the same epoch) ...
OVERFIT_EPOCHS: Final = 3
# ... by at least 1% in all: a flat validation curve's noise rises three epochs in a row one time in 24.
OVERFIT_MIN_RELATIVE_RISE: Final = 0.01
# Underfitting: after this many epochs the objective is still within MIN_RELATIVE_IMPROVEMENT of its
# first value: the model is not learning (5 epochs: past the first epochs' warm-up wobble).
UNDERFIT_EPOCHS: Final = 5
# Plateau: the best objective of the last this-many epochs is not better than the best before them. Only
# Info: a converged run looks the same; what it costs is GPU time, which early stopping would save.
PLATEAU_EPOCHS: Final = 10
# "Better" means better by more than 1% of the reference value: improvements in the noise do not count.
MIN_RELATIVE_IMPROVEMENT: Final = 0.01
_SCALE_FLOOR: Final = 1e-12

_T = TypeVar("_T")


@dataclass(frozen=True)
class CurveFinding:
    """A finding and the first epoch of its evidence (`since`): same type at or after it, same episode."""

    diagnostic: Diagnostic
    since: int


def _first_of(metrics: Mapping[str, float], names: Sequence[str]) -> float | None:
    return next((metrics[name] for name in names if name in metrics), None)


def loss_point(epoch: int, metrics: Mapping[str, float]) -> LossPoint | None:
    """The losses an epoch report carries, or None when it carries neither."""
    train, validation = _first_of(metrics, TRAIN_LOSS_NAMES), _first_of(metrics, VALIDATION_LOSS_NAMES)
    if train is None and validation is None:
        return None
    return LossPoint(epoch=epoch, train=train, validation=validation)


def record_losses(curve: Sequence[LossPoint], point: LossPoint) -> list[LossPoint]:
    """`curve` with `point` merged in by epoch (a value it lacks keeps the earlier report's: training and
    validation may come on separate lines), sorted, the newest LOSS_CURVE_MAX_ITEMS kept. Idempotent."""
    earlier = next((item for item in curve if item.epoch == point.epoch), None)
    if earlier is not None:
        point = LossPoint(
            epoch=point.epoch,
            train=point.train if point.train is not None else earlier.train,
            validation=point.validation if point.validation is not None else earlier.validation,
        )
    merged = [item for item in curve if item.epoch != point.epoch] + [point]
    return sorted(merged, key=lambda item: item.epoch)[-LOSS_CURVE_MAX_ITEMS:]


def _onset(count: int, holds: Callable[[int], _T | None]) -> _T | None:
    """What `holds` says at the first index of the trailing run of indices where it says something."""
    found: _T | None = None
    for index in range(count - 1, -1, -1):
        value = holds(index)
        if value is None:
            break
        found = value
    return found


def _warning(type_: str, message: str, suggestion: str, epoch: int, since: int) -> CurveFinding:
    return _finding(type_, DiagnosticSeverity.WARNING, message, suggestion, epoch, since)


def _finding(
    type_: str, severity: DiagnosticSeverity, message: str, suggestion: str, epoch: int, since: int
) -> CurveFinding:
    diagnostic = Diagnostic(
        type=type_, severity=severity, message=message[:1024], suggestion=suggestion[:1024], epoch=epoch
    )
    return CurveFinding(diagnostic, since)


def diverged(curve: Sequence[LossPoint]) -> CurveFinding | None:
    """The training loss climbed far above its best (see the DIVERGENCE_* thresholds)."""
    train = [(point.epoch, point.train) for point in curve if point.train is not None]

    def at(index: int) -> CurveFinding | None:
        if index < 1:
            return None
        first = train[0][1]
        best_epoch, best = min(train[: index + 1], key=lambda pair: pair[1])
        epoch, latest = train[index]
        rise = latest - best
        if (
            rise <= 0
            or rise < DIVERGENCE_RISE_OVER_BEST * abs(best)
            or rise < DIVERGENCE_SHARE_OF_GAIN_LOST * (first - best)
        ):
            return None
        return _warning(
            LOSS_DIVERGED,
            f"training loss rose to {latest:.4g} at epoch {epoch} from its best {best:.4g} at epoch {best_epoch}: "
            "training is diverging",
            "lower the learning rate (or add warm-up), clip gradients, and resume from a checkpoint saved "
            f"around epoch {best_epoch} if there is one",
            epoch,
            best_epoch,
        )

    return _onset(len(train), at)


def overfitting(curve: Sequence[LossPoint]) -> CurveFinding | None:
    """Validation loss rose OVERFIT_EPOCHS consecutive epochs while training loss fell over the same span."""

    def at(index: int) -> CurveFinding | None:
        if index < OVERFIT_EPOCHS:
            return None
        window = curve[index - OVERFIT_EPOCHS : index + 1]
        start, end = window[0], window[-1]
        val = [point.validation for point in window if point.validation is not None]
        if end.epoch - start.epoch != OVERFIT_EPOCHS or len(val) != len(window):
            return None
        if start.train is None or end.train is None or not end.train < start.train:
            return None
        rising = all(later > earlier for earlier, later in itertools.pairwise(val))
        if not rising or val[-1] - val[0] < OVERFIT_MIN_RELATIVE_RISE * abs(val[0]):
            return None
        return _warning(
            OVERFITTING,
            f"validation loss rose for {OVERFIT_EPOCHS} epochs ({val[0]:.4g} at epoch {start.epoch} -> "
            f"{val[-1]:.4g} at epoch {end.epoch}) while training loss fell ({start.train:.4g} -> {end.train:.4g})",
            "add regularisation (weight decay, dropout, augmentation), use a smaller model or more data, or stop "
            "early on the validation loss",
            end.epoch,
            start.epoch,
        )

    return _onset(len(curve), at)


def _gain(goal: ObjectiveDirection, reference: float, candidate: float) -> float:
    """How much better `candidate` is than `reference` (negative: worse)."""
    return candidate - reference if goal is ObjectiveDirection.MAXIMIZE else reference - candidate


def _improved(goal: ObjectiveDirection, reference: float, candidate: float) -> bool:
    return _gain(goal, reference, candidate) > MIN_RELATIVE_IMPROVEMENT * max(abs(reference), _SCALE_FLOOR)


def _running_best(values: Sequence[float], goal: ObjectiveDirection) -> list[float]:
    """The best of `values[: i + 1]` for every i: each rule below asks it at every epoch of a run."""
    return list(itertools.accumulate(values, lambda best, value: goal.best((best, value))))


class _ObjectiveCurve:
    """The objective's history with the running bests the rules need, computed once per derivation."""

    def __init__(self, history: Sequence[HistoryPoint], goal: ObjectiveDirection) -> None:
        self.points, self.goal = history, goal
        values = [point.value for point in history]
        self.best_so_far = _running_best(values, goal)
        self.best_after_first = [values[0], *_running_best(values[1:], goal)] if values else []

    def not_learning(self, index: int) -> bool:
        """No epoch after the first is better than the first, UNDERFIT_EPOCHS epochs in."""
        if index + 1 < UNDERFIT_EPOCHS:
            return False
        return not _improved(self.goal, self.points[0].value, self.best_after_first[index])


def underfitting(history: Sequence[HistoryPoint], objective: str, goal: ObjectiveDirection) -> CurveFinding | None:
    """The objective has not improved on its first value after UNDERFIT_EPOCHS epochs."""
    curve = _ObjectiveCurve(history, goal)

    def at(index: int) -> CurveFinding | None:
        if not curve.not_learning(index):
            return None
        first, now = history[0], history[index]
        return _warning(
            UNDERFITTING,
            f"{objective} has not improved on its first value {first.value:.4g} (epoch {first.epoch}) in "
            f"{index + 1} epochs: the model is not learning",
            "tune the learning rate (too small learns nothing, too large stalls), train a bigger model, and check "
            "that the labels match the inputs",
            now.epoch,
            first.epoch,
        )

    return _onset(len(history), at)


def plateau(history: Sequence[HistoryPoint], objective: str, goal: ObjectiveDirection) -> CurveFinding | None:
    """The best objective of the last PLATEAU_EPOCHS epochs is no better than the best before them (a run
    that never learnt is Underfitting instead)."""
    curve = _ObjectiveCurve(history, goal)

    def at(index: int) -> CurveFinding | None:
        start = index - PLATEAU_EPOCHS + 1
        if start < 1 or curve.not_learning(index):
            return None
        before = curve.best_so_far[start - 1]
        recent = goal.best(point.value for point in history[start : index + 1])
        if _improved(goal, before, recent):
            return None
        return _finding(
            PLATEAU,
            DiagnosticSeverity.INFO,
            f"{objective} has not improved by more than {MIN_RELATIVE_IMPROVEMENT:.0%} in the {PLATEAU_EPOCHS} "
            f"epochs up to epoch {history[index].epoch} (best {before:.4g} before them)",
            "stop earlier (early stopping on this metric saves the GPU time), or lower the learning rate or use a "
            "schedule to get past the plateau",
            history[index].epoch,
            history[start].epoch,
        )

    return _onset(len(history), at)


def curve_findings(
    curve: Sequence[LossPoint],
    history: Sequence[HistoryPoint],
    objective: str | None,
    goal: ObjectiveDirection | None,
) -> list[CurveFinding]:
    """Every finding the curves show now, in a fixed order. The objective's findings need its direction
    (`goal`): a metric whose better side cannot be told has no plateau."""
    found = [diverged(curve), overfitting(curve)]
    if objective and goal is not None:
        found += [underfitting(history, objective, goal), plateau(history, objective, goal)]
    return [finding for finding in found if finding is not None]


def episode_start(type_: str, epoch: int | None) -> int | None:
    """For a finding the trainer (or the client) reported at `epoch`: the first epoch of its evidence, so
    that the operator's own finding of the same episode is not repeated; None when no finding of the
    operator's can be the same (the newest of the type then simply replaces the older one).

    A non-finite loss and a model that does not learn are about the whole run (weights that went NaN stay
    NaN), so the first report of either stands for the run; overfitting is about the epochs of its rule.
    """
    if epoch is None:
        return None
    if type_ in (NON_FINITE_LOSS, UNDERFITTING):
        return 0
    if type_ == OVERFITTING:
        return max(epoch - OVERFIT_EPOCHS, 0)
    return None
