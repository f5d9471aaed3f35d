"""Multi-fidelity TPE (algorithm `bohb`): TPE fitted on the values trials reached at ASHA's rungs.

BOHB (Falkner et al., 2018) replaces Hyperband's random draws with a model, fitted on the largest budget
that has enough observations. Here the budgets are the ASHA rungs the sweep already runs (minEpochs *
reductionFactor**k epochs, below the template's epochs) plus the template's epochs (a trial that ran to the
end), and the observations are the learning curves the trials already report. So a trial that ASHA paused
at a rung still tells the model how good its parameters were at that rung: the cheap low-fidelity results
steer the search long before enough trials have run to the end.

Like `suggest`, a pure function of (spec, trials so far, count, seed), rebuilt on every call; for the next
trial number n:
1. a coin seeded from (seed, n) comes up random with probability `randomFraction` (BOHB keeps some random
   draws so that a model fitted on few points cannot rule a region out for good);
2. otherwise the budget is the largest with at least `minPointsInModel` observations (default: parameters
   + 1, BOHB's); with none, a random draw (the start, while no rung has enough trials);
3. TPE (hyperopt's, the plain `tpe` algorithm's defaults) draws from a `Trials` holding, at that budget:
   - every trial whose curve reached it, with its ASHA score there (best value over epochs 1..budget),
     whatever it does now (running, paused by ASHA, finished); a succeeded trial counts at the full budget
     with its value even when its curve is gone (a deleted trial's row);
   - FAILED and NO_METRIC trials as failures, at every budget (a diverging learning rate is bad at any);
   - active trials that have not reached it as running (pending) trials, steering parallel draws away;
   - finished trials that never reached it (paused below it, or set to fewer epochs) left out: nothing is
     known of them at this budget, and the lower budgets already hold what is.
Random draws are hyperopt's `rand.suggest` seeded with `trial_seed(seed, n)`, the very draw algorithm
`random` makes for trial n. A batch of `count` is drawn one at a time with the earlier ones recorded as
active, so asking for 3 at once equals asking 3 times, and a restarted operator proposes the same points.

Warm start: another sweep's finished trials enter every budget like this sweep's own (with ids -1, -2, ...).
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from trainsmart.api.sweep_spec import BohbSettings, HyperparamSweepSpec, TpeSettings
from trainsmart.sweep.earlystop import asha_rungs, best_so_far
from trainsmart.sweep.lean_hyperopt import import_hyperopt
from trainsmart.sweep.space import ParameterValue, point_from_vals
from trainsmart.sweep.suggest import (
    TPE_PRIOR_WEIGHT,
    TrialOutcome,
    TrialPoint,
    _domain,
    _hyperopt_doc,
    finished_only,
    next_trial_number,
    trial_seed,
)

FAILED_OUTCOMES: Final = frozenset({TrialOutcome.FAILED, TrialOutcome.NO_METRIC})


@dataclass(frozen=True)
class Budget:
    """One fidelity: the epochs it stands for and the trials observed there (their number -> score)."""

    epochs: int
    observed: dict[int, float]


def budget_epochs(spec: HyperparamSweepSpec) -> list[int]:
    """The budgets, lowest first: ASHA's rungs and the template's epochs (a trial run to its end)."""
    full = spec.trial_template.trainer.effective_config().epochs
    stopping = spec.early_stopping
    return [*asha_rungs(stopping.min_epochs, stopping.reduction_factor, full), full]


def observed_at(point: TrialPoint, epochs: int, full: int, spec: HyperparamSweepSpec) -> float | None:
    """The trial's score at `epochs`, in the goal's direction, or None when it has none there."""
    if point.outcome in FAILED_OUTCOMES:
        return None
    if epochs == full and point.outcome == TrialOutcome.SUCCEEDED and _finite(point.value):
        return point.value
    if len(point.curve) < epochs:
        return None
    score = best_so_far(point.curve, epochs, spec.objective.goal)
    return score if _finite(score) else None


def budgets(spec: HyperparamSweepSpec, history: Sequence[TrialPoint]) -> list[Budget]:
    """Every budget with the trials observed there, lowest budget first."""
    ladder = budget_epochs(spec)
    full = ladder[-1]
    out = []
    for epochs in ladder:
        observed = {}
        for point in history:
            score = observed_at(point, epochs, full, spec)
            if score is not None:
                observed[point.number] = score
        out.append(Budget(epochs, observed))
    return out


def min_points(spec: HyperparamSweepSpec) -> int:
    """Observations a budget needs before TPE models it."""
    settings = spec.algorithm.bohb or BohbSettings()
    given = settings.min_points_in_model
    return given if given is not None else len(spec.parameters) + 1


def modelled_budget(spec: HyperparamSweepSpec, history: Sequence[TrialPoint]) -> Budget | None:
    """The largest budget with enough observations to model, or None (draw at random)."""
    needed = min_points(spec)
    enough = [budget for budget in budgets(spec, history) if len(budget.observed) >= needed]
    return enough[-1] if enough else None


def random_coin(seed: int, number: int) -> float:
    """A uniform number in [0, 1) for trial `number`, independent of its draw's seed."""
    digest = hashlib.blake2b(f"trainsmart-bohb-coin:{seed}:{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def multifidelity_points(
    spec: HyperparamSweepSpec,
    history: Sequence[TrialPoint],
    count: int,
    seed: int,
    warm: Sequence[TrialPoint] = (),
) -> list[dict[str, ParameterValue]]:
    """Parameters for the next `count` trials (see the module doc); `history` in trial-number order."""
    seeded = [replace(point, number=-1 - index) for index, point in enumerate(finished_only(warm))]
    known = [*seeded, *history]
    number = next_trial_number(history)
    chosen: list[dict[str, ParameterValue]] = []
    for offset in range(count):
        point = _next_point(spec, known, number + offset, seed)
        chosen.append(point)
        known.append(TrialPoint(number=number + offset, parameters=point, outcome=TrialOutcome.ACTIVE))
    return chosen


def _next_point(
    spec: HyperparamSweepSpec, known: Sequence[TrialPoint], number: int, seed: int
) -> dict[str, ParameterValue]:
    import_hyperopt()
    from hyperopt import Trials, rand

    parameters = spec.parameters
    domain = _domain(tuple(parameter.model_dump_json() for parameter in parameters))
    settings = spec.algorithm.bohb or BohbSettings()
    budget = None if random_coin(seed, number) < settings.random_fraction else modelled_budget(spec, known)
    trials = Trials()
    if budget is None:
        draw: Any = rand.suggest
    else:
        trials.insert_trial_docs(budget_docs(spec, known, budget))
        trials.refresh()
        draw = _tpe()
    (doc,) = draw([number], domain, trials, trial_seed(seed, number))
    return point_from_vals(parameters, doc["misc"]["vals"])


def budget_docs(spec: HyperparamSweepSpec, known: Sequence[TrialPoint], budget: Budget) -> list[dict[str, Any]]:
    """hyperopt documents of the trials as seen at `budget` (see the module doc for who is left out)."""
    goal = spec.objective.goal
    docs = []
    for point in known:
        if point.number in budget.observed:
            seen = replace(point, outcome=TrialOutcome.SUCCEEDED, value=budget.observed[point.number])
        elif point.outcome in FAILED_OUTCOMES or point.outcome == TrialOutcome.ACTIVE:
            seen = point  # suggest's mapping: failure, or a pending trial
        else:
            continue
        docs.append(_hyperopt_doc(seen, spec.parameters, goal))
    return docs


@functools.cache
def _tpe() -> Any:
    import_hyperopt()
    from hyperopt import tpe

    defaults = TpeSettings()
    return functools.partial(
        tpe.suggest,
        prior_weight=TPE_PRIOR_WEIGHT,
        n_startup_jobs=0,  # the budget choice above already decided that there is enough to model
        n_EI_candidates=defaults.ei_candidates,
        gamma=defaults.gamma,
        verbose=False,
    )


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
