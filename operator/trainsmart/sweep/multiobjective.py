"""Multi-objective sweeps: Pareto dominance, the front, its hypervolume, and Optuna's samplers driven ask/tell.

Which values are compared. A trial's value of each objective is its *final-epoch* value (the metrics of its
last report, `status.metrics.latest`), not each metric's best over the epochs: the best accuracy and the
best latency may come from different epochs, and no checkpoint has both. Only Succeeded trials are on the
front; a trial stopped when the sweep ended did not finish its training.

The samplers. hyperopt has no multi-objective algorithm, so `tpe` with objectives is Optuna's TPESampler
(multi-objective TPE) and `nsga2` Optuna's NSGAIISampler. Like the hyperopt path (suggest.py) nothing is
kept between calls: an in-memory study is rebuilt from the trials on every call, in trial-number order
(a number with no trial becomes a failed trial, so Optuna's numbers are ours), and each new trial is asked
of a study and sampler built afresh with the seed `trial_seed(seed, number)`. So an operator restart loses
nothing, the same history always gives the same points, and a batch equals asking one at a time. How
trials enter the study:
* Succeeded and EarlyStopped with every objective value finite -> COMPLETE with those values (as in the
  hyperopt path, an early-stopped trial is an honest if pessimistic observation);
* Active -> RUNNING: TPE's constant liar treats it as a bad result, which steers parallel trials apart;
* Failed, NoMetric, or a value missing -> FAIL: Optuna's samplers ignore it.
NSGA-II's generations are a function of the trial number (trial n is in generation n // populationSize):
Optuna assigns them from which trials had completed when a trial was asked, which a stateless rebuild
cannot know. With parallel trials this lets generation g+1 start from the part of generation g finished so
far, which a rebuild then widens as the rest finishes. A warm start's trials are not used by these samplers.

Parameters as Optuna distributions: uniform/loguniform -> FloatDistribution (log for the latter), quniform ->
an integer index of the multiples of q, qloguniform -> a log FloatDistribution over the multiples' range
rounded to a multiple, randint -> IntDistribution, choice -> the option's index. normal and lognormal have
no Optuna equivalent: admission refuses them with these samplers (api/objectives.py). A recorded value the
space can no longer hold is left out of that trial, as in the hyperopt path.

Optuna is imported on first use, like hyperopt (see lean_hyperopt.py): an operator without multi-objective
sweeps never pays its memory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from trainsmart.api import ParetoTrial, TrialPhase
from trainsmart.api.search_space import Parameter, ParameterType
from trainsmart.api.sweep_spec import AlgorithmName, Goal, HyperparamSweepSpec, Nsga2Settings, Objective, TpeSettings
from trainsmart.sweep.space import ParameterValue, from_hyperopt, quantized_range, tidy_number, to_hyperopt
from trainsmart.sweep.suggest import TrialOutcome, TrialPoint, next_trial_number, trial_seed

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.samplers import BaseSampler
    from optuna.trial import FrozenTrial

    from trainsmart.sweep.trial_table import TrialView

OPTUNA_ALGORITHMS: Final = frozenset({AlgorithmName.TPE, AlgorithmName.NSGA2})
"""The algorithms drawn by Optuna when a sweep has objectives (grid and random need no objective values)."""
MAX_HYPERVOLUME_OBJECTIVES: Final = 3

Vector = tuple[float, ...]


# ---- dominance, front, hypervolume (every objective minimized) -----------------------------------------------


def minimized(values: Mapping[str, float] | None, objectives: Sequence[Objective]) -> Vector | None:
    """A trial's values in objective order, negated where the goal is maximize; None if one is missing."""
    if values is None:
        return None
    vector = []
    for objective in objectives:
        value = values.get(objective.metric)
        if value is None or not math.isfinite(value):
            return None
        vector.append(-value if objective.goal == Goal.MAXIMIZE else value)
    return tuple(vector)


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether `a` is at least as good as `b` on every objective and better on one (all minimized)."""
    if len(a) != len(b):
        raise ValueError(f"vectors of different lengths: {len(a)} and {len(b)}")
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def pareto_front(points: Sequence[Sequence[float]]) -> list[int]:
    """Indexes of the points no other point dominates, in input order. Equal points are all kept: neither
    dominates the other, and each is a trial a user may want."""
    return [i for i, point in enumerate(points) if not any(dominates(other, point) for other in points)]


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """The volume dominated by `points` and bounded by `reference` (all minimized), for 2 or 3 objectives.

    Points not better than the reference on every objective add nothing and are ignored. 2-D: a sweep
    over the front sorted on the first objective; 3-D: slices between successive third-objective values,
    each a 2-D hypervolume (O(n^2 log n), ample for a sweep's at most 1,000 trials).
    """
    dims = len(reference)
    if dims not in (2, MAX_HYPERVOLUME_OBJECTIVES):
        raise ValueError(f"hypervolume is computed for 2 or 3 objectives, got {dims}")
    inside = [tuple(point) for point in points if all(p < r for p, r in zip(point, reference, strict=True))]
    if dims == 2:
        return _hypervolume_2d([(p[0], p[1]) for p in inside], (reference[0], reference[1]))
    volume = 0.0
    levels = sorted({p[2] for p in inside})
    for index, level in enumerate(levels):
        top = levels[index + 1] if index + 1 < len(levels) else reference[2]
        below = [(p[0], p[1]) for p in inside if p[2] <= level]
        volume += _hypervolume_2d(below, (reference[0], reference[1])) * (top - level)
    return volume


def _hypervolume_2d(points: Sequence[tuple[float, float]], reference: tuple[float, float]) -> float:
    area, best_y = 0.0, reference[1]
    for x, y in sorted(points):
        if y < best_y:
            area += (reference[0] - x) * (best_y - y)
            best_y = y
    return area


# ---- the trials' values and the front in status ----------------------------------------------------------------


def final_objective_values(status: Mapping[str, Any], objectives: Sequence[Objective]) -> dict[str, float]:
    """Each objective's final-epoch value a trial TrainingJob reported (its latest metrics), by metric;
    metrics it has not reported (or not as a finite number) are left out."""
    latest = (status.get("metrics") or {}).get("latest") or {}
    values: dict[str, float] = {}
    for objective in objectives:
        value = latest.get(objective.metric)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            values[objective.metric] = float(value)
    return values


def pareto_front_status(
    objectives: Sequence[Objective] | None, trials: Sequence[TrialView]
) -> tuple[list[ParetoTrial] | None, int | None]:
    """(status.paretoFront, status.paretoFrontSize): the Succeeded trials on the front, by number; (None,
    None) for a single-objective sweep."""
    if objectives is None:
        return None, None
    candidates = [
        (trial, vector)
        for trial in trials
        if trial.phase == TrialPhase.SUCCEEDED and (vector := minimized(trial.objective_values, objectives)) is not None
    ]
    entries = []
    for index in pareto_front([vector for _, vector in candidates]):
        trial = candidates[index][0]
        values = trial.objective_values or {}
        entries.append(ParetoTrial(name=trial.name, values={o.metric: values[o.metric] for o in objectives}))
    return entries, len(entries)


# ---- the samplers ----------------------------------------------------------------------------------------------


def draws_with_optuna(spec: HyperparamSweepSpec) -> bool:
    """Whether `spec`'s next points come from Optuna: several objectives and a model-based algorithm."""
    return spec.objectives is not None and spec.algorithm.name in OPTUNA_ALGORITHMS


def optuna_points(
    spec: HyperparamSweepSpec, history: Sequence[TrialPoint], count: int, seed: int
) -> list[dict[str, ParameterValue]]:
    """Parameters for the next `count` trials from Optuna's multi-objective TPE or NSGA-II (module doc)."""
    if spec.objectives is None:
        raise ValueError("optuna_points needs a multi-objective spec")
    known = sorted(history, key=lambda point: point.number)
    number = next_trial_number(known)
    chosen: list[dict[str, ParameterValue]] = []
    for offset in range(count):
        point = _ask(spec, known, number + offset, trial_seed(seed, number + offset))
        chosen.append(point)
        # Recorded exactly as a later call reads it back from the history, so batch == one at a time.
        known.append(TrialPoint(number=number + offset, parameters=point, outcome=TrialOutcome.ACTIVE))
    return chosen


def _ask(spec: HyperparamSweepSpec, history: Sequence[TrialPoint], number: int, seed: int) -> dict[str, ParameterValue]:
    _import_optuna()
    from optuna import create_study
    from optuna.storages import InMemoryStorage

    assert spec.objectives is not None
    distributions = {parameter.name: optuna_distribution(parameter) for parameter in spec.parameters}
    sampler = _sampler(spec, seed)
    study = create_study(
        directions=[objective.goal.value for objective in spec.objectives], sampler=sampler, storage=InMemoryStorage()
    )
    study.add_trials(_frozen_trials(spec, history, distributions, number))
    trial = study.ask(fixed_distributions=distributions)
    return {parameter.name: from_optuna(parameter, trial.params[parameter.name]) for parameter in spec.parameters}


def _sampler(spec: HyperparamSweepSpec, seed: int) -> BaseSampler:
    _import_optuna()
    from optuna.samplers import TPESampler

    if spec.algorithm.name == AlgorithmName.NSGA2:
        settings = spec.algorithm.nsga2 or Nsga2Settings()
        sampler: BaseSampler = _numbered_nsga2_class()(population_size=settings.population_size, seed=seed)
        return sampler
    tpe = spec.algorithm.tpe or TpeSettings()
    # constant_liar is Optuna's default since 5.0: running trials count as bad, as in the hyperopt path.
    return TPESampler(
        n_startup_trials=tpe.startup_trials, n_ei_candidates=tpe.ei_candidates, seed=seed, constant_liar=True
    )


def _frozen_trials(
    spec: HyperparamSweepSpec,
    history: Sequence[TrialPoint],
    distributions: Mapping[str, BaseDistribution],
    upto: int,
) -> list[FrozenTrial]:
    """The study's trials 0..upto-1 from the history (gaps as failed trials)."""
    _import_optuna()
    from optuna.trial import TrialState, create_trial

    assert spec.objectives is not None
    population = (spec.algorithm.nsga2 or Nsga2Settings()).population_size
    generation_key = _numbered_nsga2_class()._get_generation_key()
    by_number = {point.number: point for point in history}
    frozen = []
    for number in range(upto):
        point = by_number.get(number)
        if point is None:
            frozen.append(create_trial(state=TrialState.FAIL))
            continue
        params, used = {}, {}
        for parameter in spec.parameters:
            raw = to_optuna(parameter, point.parameters[parameter.name]) if parameter.name in point.parameters else None
            if raw is not None:
                params[parameter.name], used[parameter.name] = raw, distributions[parameter.name]
        values = _observed(point, spec.objectives)
        state = TrialState.RUNNING if point.outcome == TrialOutcome.ACTIVE else TrialState.FAIL
        frozen.append(
            create_trial(
                state=TrialState.COMPLETE if values is not None else state,
                params=params,
                distributions=used,
                values=values,
                system_attrs={generation_key: number // population},
            )
        )
    return frozen


def _observed(point: TrialPoint, objectives: Sequence[Objective]) -> list[float] | None:
    if point.outcome not in (TrialOutcome.SUCCEEDED, TrialOutcome.EARLY_STOPPED) or point.objective_values is None:
        return None
    values = [point.objective_values.get(objective.metric) for objective in objectives]
    if any(value is None or not math.isfinite(value) for value in values):
        return None
    return [float(value) for value in values if value is not None]


def optuna_distribution(parameter: Parameter) -> BaseDistribution:
    """The Optuna distribution `parameter` is drawn from (see the module doc for each type)."""
    _import_optuna()
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    low, high = parameter.min, parameter.max
    match parameter.type:
        case ParameterType.UNIFORM | ParameterType.LOGUNIFORM:
            assert low is not None and high is not None
            return FloatDistribution(low, high, log=parameter.type == ParameterType.LOGUNIFORM)
        case ParameterType.QUNIFORM:
            return IntDistribution(*quantized_range(parameter))
        case ParameterType.QLOGUNIFORM:
            first, last = _qlog_range(parameter)
            return FloatDistribution(first, last, log=True)
        case ParameterType.RANDINT:
            assert low is not None and high is not None
            return IntDistribution(int(low), int(high))
        case ParameterType.CHOICE:
            return CategoricalDistribution(list(range(len(parameter.values or ()))))
    raise ValueError(f"parameter {parameter.name}: type {parameter.type.value} has no Optuna distribution")


def _qlog_range(parameter: Parameter) -> tuple[float, float]:
    """The positive multiples of q a qloguniform parameter spans (a log scale cannot start at 0)."""
    assert parameter.q is not None
    first, last = quantized_range(parameter)
    return max(first, 1) * parameter.q, max(last, 1) * parameter.q


def from_optuna(parameter: Parameter, raw: Any) -> ParameterValue:
    """The value a trial gets for Optuna's draw `raw`, typed as the parameter promises."""
    match parameter.type:
        case ParameterType.QUNIFORM:
            assert parameter.q is not None
            return tidy_number(int(raw) * parameter.q)
        case ParameterType.QLOGUNIFORM:
            assert parameter.q is not None
            first, last = _qlog_range(parameter)
            index = min(max(round(float(raw) / parameter.q), round(first / parameter.q)), round(last / parameter.q))
            return tidy_number(index * parameter.q)
        case ParameterType.CHOICE | ParameterType.RANDINT:
            # hyperopt's raw forms (an index, an offset from min) are what from_hyperopt reads.
            offset = int(raw) if parameter.type == ParameterType.CHOICE else int(raw) - int(parameter.min or 0)
            return from_hyperopt(parameter, offset)
        case _:
            return float(raw)


def to_optuna(parameter: Parameter, value: ParameterValue) -> float | int | None:
    """Optuna's raw form of a trial's `value`, or None when the current space cannot hold it."""
    raw = to_hyperopt(parameter, value)  # the same range checks; an index for a choice, an offset for randint
    if raw is None:
        return None
    match parameter.type:
        case ParameterType.CHOICE:
            return int(raw)
        case ParameterType.RANDINT:
            return int(raw) + int(parameter.min or 0)
        case ParameterType.QUNIFORM:
            assert parameter.q is not None
            first, last = quantized_range(parameter)
            return min(max(round(float(raw) / parameter.q), first), last)
        case ParameterType.QLOGUNIFORM:
            low, high = _qlog_range(parameter)
            return min(max(float(raw), low), high)
        case ParameterType.UNIFORM | ParameterType.LOGUNIFORM:
            assert parameter.min is not None and parameter.max is not None
            return min(max(float(raw), parameter.min), parameter.max)
    return None  # normal, lognormal: refused at admission for these samplers


def _import_optuna() -> None:
    """Import Optuna (on first use) with its per-study INFO logging off: a study is built per suggestion."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


_NSGA2_CLASS: list[type[Any]] = []


def _numbered_nsga2_class() -> type[Any]:
    """NSGAIISampler whose trial n is in generation n // populationSize (module doc), defined on first use."""
    if not _NSGA2_CLASS:
        from optuna.samplers import NSGAIISampler

        class NumberedNSGAIISampler(NSGAIISampler):
            def get_trial_generation(self, study: Any, trial: Any) -> int:
                assert self.population_size is not None
                return int(trial.number) // int(self.population_size)

        _NSGA2_CLASS.append(NumberedNSGAIISampler)
    return _NSGA2_CLASS[0]
