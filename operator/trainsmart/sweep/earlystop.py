"""Early stopping: which running trials to stop and which paused ones to resume, from their learning curves.

A pure function of the curves, so the controller can call it on every reconcile: the same curves always give
the same decision, a paused trial is never stopped again, and nothing is remembered between calls. A curve's
score at epoch e is its best objective value over epochs 1..e ("best so far"), so a noisy dip does not count
against a trial.

Each trial is judged against its own epochs (`TrialCurve.max_epochs`: a parameter may set
`trainer.config.epochs`), the sweep's template epochs when it has none.

median: the usual median stopping rule (Google Vizier's). A running trial at epoch e (min_epochs <= e < its
  epochs) is stopped when its score at e is worse than the median, over the other running or finished
  trials that have reached epoch e, of their running average (mean value over epochs 1..e). Paused trials
  are not among those others: they were stopped for being bad, and counting them would pull the median
  down and let more poor trials through. A trial stopped now leaves the others at once (the rule is
  applied until it stops nothing more), so the next reconcile does not stop more on the same curves. At
  least MEDIAN_MIN_OTHERS others are needed: a median of one trial is just that trial.
asha: asynchronous successive halving. Rungs sit at min_epochs * eta**k epochs (eta = reductionFactor),
  below the trial's own epochs (so a trial that runs longer than the template meets rungs the template
  does not have, and a shorter one is not paused at its last epoch). Each trial that has reached a rung is
  recorded there with its score at that rung; of n recorded trials, the top floor(n / eta) may go on
  (ties: the lower trial number ranks first). A running trial at or past a rung (and before the next) that
  is not in its rung's top is paused, so with fewer than eta trials at a rung the first ones wait there, as
  in async ASHA. A paused trial is promoted (resumed from
  its checkpoint) as soon as later arrivals make it part of the top of its rung.
  When the sweep creates no more trials (`draining`), the top is at least one trial per rung, so the best
  configuration still trains to max_epochs instead of waiting for arrivals that will never come.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from trainsmart.api.sweep_spec import EarlyStoppingRule, Goal, SweepEarlyStopping

MEDIAN_MIN_OTHERS: Final = 2

CurveState = Literal["running", "paused", "finished"]


@dataclass(frozen=True)
class TrialCurve:
    """A trial's objective per completed epoch (values[0] is epoch 1) and where it stands.

    paused: stopped early or suspended by the sweep (ASHA may promote it); finished: ran to its last
    epoch, or failed.
    """

    name: str
    number: int
    values: Sequence[float]
    state: CurveState
    max_epochs: int | None = None
    """The epochs this trial runs when not stopped (its parameters may set them); None: the sweep's."""


@dataclass(frozen=True)
class EarlyStopDecision:
    """Trials to stop (name -> reason) and paused trials to resume from their checkpoint (name -> reason)."""

    stop: dict[str, str] = field(default_factory=dict)
    promote: dict[str, str] = field(default_factory=dict)


def early_stopping_decisions(
    settings: SweepEarlyStopping,
    goal: Goal,
    max_epochs: int,
    curves: Sequence[TrialCurve],
    *,
    metric: str = "objective",
    draining: bool = False,
) -> EarlyStopDecision:
    """What to stop and what to promote now; `metric` names the objective in the reasons."""
    ordered = sorted(curves, key=lambda curve: curve.number)
    if settings.rule == EarlyStoppingRule.MEDIAN:
        return _median(settings.min_epochs, goal, max_epochs, ordered, metric)
    if settings.rule == EarlyStoppingRule.ASHA:
        return _asha(settings, goal, max_epochs, ordered, metric, draining)
    return EarlyStopDecision()


def best_so_far(values: Sequence[float], epochs: int, goal: Goal) -> float:
    """The best value over the first `epochs` epochs (NaN when none is a number)."""
    finite = [value for value in values[:epochs] if not math.isnan(value)]
    if not finite:
        return math.nan
    return goal.best(finite)


def _badness(score: float, goal: Goal) -> float:
    """Sort key: lower is better whatever the goal; NaN is the worst."""
    if math.isnan(score):
        return math.inf
    return goal.as_loss(score)


def _own_epochs(curve: TrialCurve, max_epochs: int) -> int:
    return curve.max_epochs if curve.max_epochs is not None else max_epochs


def _judgeable(curve: TrialCurve, min_epochs: int, max_epochs: int) -> bool:
    """Whether a decision about the trial can save anything: past the grace period, before its last epoch."""
    return min_epochs <= len(curve.values) < _own_epochs(curve, max_epochs)


def running_average(values: Sequence[float], epochs: int) -> float:
    """The mean value over the first `epochs` epochs (NaN when none is a number): the median rule's view of
    another trial, which credits steady progress rather than one lucky epoch."""
    finite = [value for value in values[:epochs] if not math.isnan(value)]
    return statistics.fmean(finite) if finite else math.nan


def _median(min_epochs: int, goal: Goal, max_epochs: int, curves: list[TrialCurve], metric: str) -> EarlyStopDecision:
    # A stopped trial leaves the others, which can move the median past another running trial: repeat until
    # nothing more is stopped, so that the decision, once applied, is final (the next reconcile adds nothing).
    stop: dict[str, str] = {}
    while found := _median_round(min_epochs, goal, max_epochs, curves, metric, frozenset(stop)):
        stop.update(found)
    return EarlyStopDecision(stop=stop)


def _median_round(
    min_epochs: int, goal: Goal, max_epochs: int, curves: list[TrialCurve], metric: str, stopped: frozenset[str]
) -> dict[str, str]:
    stop: dict[str, str] = {}
    for curve in curves:
        if curve.state != "running" or curve.name in stopped or not _judgeable(curve, min_epochs, max_epochs):
            continue
        epoch = len(curve.values)
        mine = best_so_far(curve.values, epoch, goal)
        others = [
            running_average(other.values, epoch)
            for other in curves
            if other.name != curve.name
            and other.state != "paused"
            and other.name not in stopped
            and len(other.values) >= epoch
        ]
        others = [score for score in others if not math.isnan(score)]
        if len(others) < MEDIAN_MIN_OTHERS:
            continue
        median = statistics.median(others)
        if _badness(mine, goal) > _badness(median, goal):
            stop[curve.name] = (
                f"median rule: best {metric} {mine:.4g} by epoch {epoch} is worse than the median {median:.4g} "
                f"of the running averages of {len(others)} other running or finished trials at that epoch"
            )
    return stop


def asha_rungs(min_epochs: int, reduction_factor: int, max_epochs: int) -> list[int]:
    """The epochs at which ASHA compares trials: min_epochs * reduction_factor**k, below max_epochs."""
    rungs, rung = [], min_epochs
    while rung < max_epochs:
        rungs.append(rung)
        rung *= reduction_factor
    return rungs


@dataclass(frozen=True)
class _Rung:
    epochs: int
    ranking: list[tuple[float, int, str, float]]  # (badness, number, name, score), best first
    top: frozenset[str]
    keep: int


def _rung(epochs: int, curves: list[TrialCurve], goal: Goal, eta: int, draining: bool) -> _Rung:
    ranking = []
    for curve in curves:
        if len(curve.values) >= epochs:
            score = best_so_far(curve.values, epochs, goal)
            ranking.append((_badness(score, goal), curve.number, curve.name, score))
    ranking.sort()
    keep = len(ranking) // eta
    if draining:
        keep = max(keep, 1)
    return _Rung(epochs, ranking, frozenset(name for _, _, name, _ in ranking[:keep]), keep)


def _asha(
    settings: SweepEarlyStopping,
    goal: Goal,
    max_epochs: int,
    curves: list[TrialCurve],
    metric: str,
    draining: bool,
) -> EarlyStopDecision:
    eta = settings.reduction_factor
    # Every trial's rungs are a prefix of the one ladder min_epochs * eta**k: rank each rung once.
    longest = max((_own_epochs(curve, max_epochs) for curve in curves), default=max_epochs)
    rung_epochs = asha_rungs(settings.min_epochs, eta, longest)
    rungs = {epochs: _rung(epochs, curves, goal, eta, draining) for epochs in rung_epochs}
    stop: dict[str, str] = {}
    promote: dict[str, str] = {}
    for curve in curves:
        if curve.state == "finished" or not _judgeable(curve, settings.min_epochs, max_epochs):
            continue
        rung = rungs[max(epochs for epochs in rung_epochs if epochs <= len(curve.values))]
        population = len(rung.ranking)
        if curve.state == "running" and curve.name not in rung.top:
            stop[curve.name] = _pause_reason(curve, rung, goal, metric, eta)
        elif curve.state == "paused" and curve.name in rung.top:
            promote[curve.name] = (
                f"ASHA: now among the top {rung.keep} of {population} trials at the {rung.epochs}-epoch rung; "
                "resuming from its checkpoint"
            )
    return EarlyStopDecision(stop=stop, promote=promote)


def _pause_reason(curve: TrialCurve, rung: _Rung, goal: Goal, metric: str, eta: int) -> str:
    population = len(rung.ranking)
    if rung.keep == 0:
        return (
            f"ASHA: {population} of the {eta} trials needed have reached the {rung.epochs}-epoch rung; "
            "paused until later trials show whether it belongs in the top 1/" + str(eta)
        )
    mine = best_so_far(curve.values, rung.epochs, goal)
    cutoff = rung.ranking[rung.keep - 1][3]
    return (
        f"ASHA: best {metric} {mine:.4g} by epoch {rung.epochs} is not among the top {rung.keep} of "
        f"{population} trials at that rung (the last of them has {cutoff:.4g}); paused"
    )
