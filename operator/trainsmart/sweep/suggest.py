"""The suggester: the next trials' parameters as a pure function of (spec, trials so far, count, seed).

Nothing is kept between calls. hyperopt's `Trials` is rebuilt from the recorded trials every time, so an
operator restart, a deleted trial or an edited maxTrials neither loses nor repeats work, and the same inputs
always give the same points.

How recorded trials reach hyperopt (the same choice hyperopt's own asynchronous fmin makes):
- SUCCEEDED and EARLY_STOPPED trials with a finite value are observations, loss = value for minimize and
  -value for maximize. An early-stopped trial's value is its best before it was stopped: an honest, if
  pessimistic, result of those parameters.
- FAILED and NO_METRIC trials (and a finished trial whose value is missing or not finite) are results with
  status `fail`: hyperopt gives them an infinite loss, so TPE counts their region among the bad ones (a
  learning rate that diverges should not be tried again).
- ACTIVE trials are `running` documents: hyperopt also gives them an infinite loss until they finish, which
  steers parallel suggestions away from points already being evaluated. They count towards
  `startupTrials`, so trial N is a random draw exactly when N < startupTrials, however fast trials finish.
Each new trial's draw is seeded from (seed, trial number) alone, and a batch of `count` is drawn one at a
time with the earlier ones recorded as ACTIVE, so asking for 3 at once equals asking 3 times.

Warm start (issue 15): `warm` holds another sweep's finished trials. They enter hyperopt's `Trials` before
this sweep's own, as the same kind of documents, under their own ids (-1, -2, ...: they never collide with
a trial number and never change `next_trial_number`), so TPE models them from the first suggestion on and
they count towards startupTrials; grid search ignores them.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from trainsmart.api.search_space import Parameter
from trainsmart.api.sweep_spec import AlgorithmName, Goal, HyperparamSweepSpec, TpeSettings
from trainsmart.sweep.grid import grid_points
from trainsmart.sweep.lean_hyperopt import import_hyperopt
from trainsmart.sweep.space import ParameterValue, hyperopt_space, point_from_vals, vals_from_point, value_key

if TYPE_CHECKING:
    from hyperopt import Domain, Trials

# hyperopt (with its scipy/networkx imports) is imported on first use, inside the functions below, and
# without ATPE (`lean_hyperopt`): it costs the operator ~40 MiB of RSS (83 MiB with ATPE), which a
# cluster without sweeps (or with grid sweeps only) never pays.

# hyperopt's default weight of the prior in TPE's Parzen estimators; not a user setting.
TPE_PRIOR_WEIGHT: Final = 1.0


class TrialOutcome(StrEnum):
    """Where a trial stands, as far as the suggester cares."""

    ACTIVE = "active"  # created, not finished: pending, running, or suspended by the user
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EARLY_STOPPED = "earlyStopped"
    NO_METRIC = "noMetric"  # finished without reporting the objective


@dataclass(frozen=True)
class TrialPoint:
    """One trial created so far: its number, parameters, outcome and objective value when known."""

    number: int
    parameters: Mapping[str, ParameterValue]
    outcome: TrialOutcome
    value: float | None = None  # best objective value reported, in the goal's direction
    curve: Sequence[float] = ()  # objective per epoch (curve[0] = epoch 1), for algorithm bohb's rung values
    objective_values: Mapping[str, float] | None = None  # multi-objective: each final-epoch value, by metric


def trial_seed(seed: int, number: int) -> int:
    """The seed of trial `number`'s draw: stable across processes and library versions, distinct per trial."""
    digest = hashlib.blake2b(f"trainsmart-sweep:{seed}:{number}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big")


def next_trial_number(history: Sequence[TrialPoint]) -> int:
    """The number the next trial gets: one past the highest so far (len(history) when none is missing)."""
    return max((point.number for point in history), default=-1) + 1


def suggest(
    spec: HyperparamSweepSpec,
    history: Sequence[TrialPoint],
    count: int,
    seed: int,
    warm: Sequence[TrialPoint] = (),
) -> list[dict[str, ParameterValue]]:
    """Parameters for the next `count` trials, numbered from `next_trial_number(history)` on; `warm`: the
    finished trials of a warm start's sweep (their numbers are ignored, active ones are skipped).

    `history` holds every trial created so far, each number once, in any order. Grid search returns the next
    grid points not yet in the history, in enumeration order, and fewer than `count` once the grid is used up.
    """
    numbers = [point.number for point in history]
    if len(set(numbers)) != len(numbers):
        raise ValueError("history lists a trial number more than once")
    if count <= 0:
        return []
    if spec.algorithm.name == AlgorithmName.GRID:
        return _next_grid_points(spec.parameters, history, count)
    if spec.objectives is not None and spec.algorithm.name in (AlgorithmName.TPE, AlgorithmName.NSGA2):
        from trainsmart.sweep.multiobjective import optuna_points  # Optuna's multi-objective TPE and NSGA-II

        return optuna_points(spec, history, count, seed)
    if spec.algorithm.name == AlgorithmName.BOHB:
        from trainsmart.sweep.multifidelity import multifidelity_points  # it builds on this module's docs

        return multifidelity_points(spec, sorted(history, key=lambda point: point.number), count, seed, warm)
    return _hyperopt_points(spec, sorted(history, key=lambda point: point.number), count, seed, warm)


def _next_grid_points(
    parameters: Sequence[Parameter], history: Sequence[TrialPoint], count: int
) -> list[dict[str, ParameterValue]]:
    names = [parameter.name for parameter in parameters]

    def key(point: Mapping[str, ParameterValue]) -> tuple[Any, ...]:
        return tuple(value_key(point[name]) if name in point else None for name in names)

    tried = {key(point.parameters) for point in history}
    chosen: list[dict[str, ParameterValue]] = []
    for point in grid_points(parameters):
        if key(point) not in tried:
            chosen.append(point)
            if len(chosen) == count:
                break
    return chosen


def _hyperopt_points(
    spec: HyperparamSweepSpec, history: list[TrialPoint], count: int, seed: int, warm: Sequence[TrialPoint] = ()
) -> list[dict[str, ParameterValue]]:
    import_hyperopt()
    from hyperopt import Trials

    parameters = spec.parameters
    domain = _domain(tuple(parameter.model_dump_json() for parameter in parameters))
    draw = _algorithm(spec)
    trials = Trials()
    seeded = [replace(point, number=-1 - index) for index, point in enumerate(finished_only(warm))]
    trials.insert_trial_docs([_hyperopt_doc(point, parameters, spec.objective.goal) for point in seeded])
    trials.insert_trial_docs([_hyperopt_doc(point, parameters, spec.objective.goal) for point in history])
    trials.refresh()
    chosen: list[dict[str, ParameterValue]] = []
    number = next_trial_number(history)
    for offset in range(count):
        (doc,) = draw([number + offset], domain, trials, trial_seed(seed, number + offset))
        point = point_from_vals(parameters, doc["misc"]["vals"])
        chosen.append(point)
        # Recorded exactly as a later call would read it back from the history, so batch == one at a time.
        pending = TrialPoint(number=number + offset, parameters=point, outcome=TrialOutcome.ACTIVE)
        trials.insert_trial_docs([_hyperopt_doc(pending, parameters, spec.objective.goal)])
        trials.refresh()
    return chosen


SuggestFunction = Callable[[list[int], Any, "Trials", int], list[dict[str, Any]]]


def _algorithm(spec: HyperparamSweepSpec) -> SuggestFunction:
    import_hyperopt()
    from hyperopt import anneal, rand, tpe

    match spec.algorithm.name:
        case AlgorithmName.RANDOM:
            return rand.suggest  # type: ignore[no-any-return]
        case AlgorithmName.ANNEAL:
            return anneal.suggest  # type: ignore[no-any-return]
        case AlgorithmName.TPE:
            settings = spec.algorithm.tpe or TpeSettings()
            return functools.partial(
                tpe.suggest,
                prior_weight=TPE_PRIOR_WEIGHT,
                n_startup_jobs=settings.startup_trials,
                n_EI_candidates=settings.ei_candidates,
                gamma=settings.gamma,
                verbose=False,
            )
    raise ValueError(f"algorithm {spec.algorithm.name} is not drawn through hyperopt")


@functools.lru_cache(maxsize=32)
def _domain(parameters_json: tuple[str, ...]) -> Domain:
    """hyperopt's compiled space, cached: building it costs far more than a draw, and it is only read."""
    import_hyperopt()
    from hyperopt import Domain

    parameters = [Parameter.model_validate_json(text) for text in parameters_json]
    return Domain(_never_called, hyperopt_space(parameters))


def _never_called(_: Any) -> None:  # pragma: no cover - trials run as TrainingJobs, not through hyperopt
    raise AssertionError("the sweep evaluates trials as TrainingJobs, not through hyperopt's Domain")


def _hyperopt_doc(point: TrialPoint, parameters: Sequence[Parameter], goal: Goal) -> dict[str, Any]:
    """A hyperopt trial document for a recorded trial (see the module doc for how outcomes map)."""
    import_hyperopt()
    from hyperopt import STATUS_FAIL, STATUS_OK, STATUS_RUNNING
    from hyperopt.base import JOB_STATE_DONE, JOB_STATE_RUNNING

    vals = vals_from_point(parameters, point.parameters)
    misc = {
        "tid": point.number,
        "cmd": None,
        "workdir": None,
        "idxs": {label: [point.number] if values else [] for label, values in vals.items()},
        "vals": vals,
    }
    state, result = JOB_STATE_DONE, {"status": STATUS_FAIL}
    if point.outcome == TrialOutcome.ACTIVE:
        state, result = JOB_STATE_RUNNING, {"status": STATUS_RUNNING}
    elif point.outcome in (TrialOutcome.SUCCEEDED, TrialOutcome.EARLY_STOPPED) and _finite(point.value):
        assert point.value is not None
        result = {"status": STATUS_OK, "loss": goal.as_loss(point.value)}
    return {
        "state": state,
        "tid": point.number,
        "spec": None,
        "result": result,
        "misc": misc,
        "exp_key": None,
        "owner": None,
        "version": 0,
        "book_time": None,
        "refresh_time": None,
    }


def finished_only(points: Sequence[TrialPoint]) -> list[TrialPoint]:
    """The finished trials of `points`, in their order (a warm start learns from results, not from plans)."""
    return [point for point in points if point.outcome != TrialOutcome.ACTIVE]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
