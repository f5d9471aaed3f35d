"""Multi-objective sweeps at admission: `objectives` instead of `objective`, and what cannot go with it.

A sweep sets exactly one of `objective` (one metric) and `objectives` (two or three metrics, each with
its own goal). With `objectives`, the first one is the sweep's *primary* objective: the metric every
trial's status tracks per epoch and the one `bestTrial` ranks by, so everything written for one objective
keeps a meaning. The answer of a multi-objective sweep is its Pareto front (`status.paretoFront`).

Refused, because it cannot work rather than because it is unusual (each message names the field):
* a `target` on an objective: reaching one metric's target says nothing about the trade-off;
* early stopping: median and ASHA rank trials on one curve, and a trial worse on accuracy at epoch 3 may
  be the cheapest one on the front;
* trialRetention keepBest: "best" is one metric's order; it would delete trials of the front;
* an algorithm that follows one loss (anneal, and any other but grid, random, tpe and nsga2), nsga2 without
  objectives (it is the multi-objective sampler; one objective has TPE), and tpe.gamma with objectives
  (Optuna's multi-objective TPE splits good from bad trials by Pareto rank, not by a share);
* normal and lognormal parameters with the Optuna samplers (tpe and nsga2 on several objectives): Optuna has
  no unbounded distributions, and silently bounding them would search another space.
Grid and random search need no objective values at all, so they work unchanged with several objectives.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from trainsmart.api.cel import rule
from trainsmart.api.search_space import Parameter, ParameterType

if TYPE_CHECKING:
    from trainsmart.api.sweep_spec import HyperparamSweepSpec

MIN_OBJECTIVES: Final = 2
MAX_OBJECTIVES: Final = 3
"""Beyond three objectives almost every trial is on the front (it no longer narrows anything down) and the
hypervolume is neither cheap nor easy to read."""

UNBOUNDED_TYPES: Final = frozenset({ParameterType.NORMAL, ParameterType.LOGNORMAL})

BOTH_SET: Final = "set exactly one of objective and objectives; objectives is for two or more metrics"
EARLY_STOPPING: Final = (
    "earlyStopping.rule must be none with objectives: median and asha rank trials on one metric's curve; "
    "remove earlyStopping or use a single objective"
)
KEEP_BEST: Final = (
    "trialRetention.policy keepBest ranks trials on one metric and would delete trials of the Pareto front; "
    "use keepAll or deleteFinished with objectives"
)
MULTI_OBJECTIVE_ALGORITHMS: Final = ("grid", "random", "tpe", "nsga2")
ONE_OBJECTIVE_ALGORITHM: Final = (
    "algorithm {name} optimizes one objective; use tpe, nsga2, random or grid with objectives"
)
NSGA2_SINGLE: Final = "algorithm nsga2 needs objectives (two or more metrics); use tpe for one objective"

OBJECTIVES_CEL_RULES: Final = (
    rule("has(self.objective) != has(self.objectives)", BOTH_SET),
    rule(
        "!has(self.objectives) || !has(self.earlyStopping) || !has(self.earlyStopping.rule) || "
        "self.earlyStopping.rule == 'none'",
        EARLY_STOPPING,
    ),
    rule(
        "!has(self.objectives) || !has(self.trialRetention) || !has(self.trialRetention.policy) || "
        "self.trialRetention.policy != 'keepBest'",
        KEEP_BEST,
    ),
    rule(
        "!has(self.objectives) || !has(self.algorithm) || !has(self.algorithm.name) || "
        f"self.algorithm.name in {list(MULTI_OBJECTIVE_ALGORITHMS)}",
        ONE_OBJECTIVE_ALGORITHM.format(name="other than grid, random, tpe and nsga2"),
    ),
    rule(
        "has(self.objectives) || !has(self.algorithm) || !has(self.algorithm.name) || self.algorithm.name != 'nsga2'",
        NSGA2_SINGLE,
    ),
)
"""The checks CEL can express, mirrored by `objectives_problem` (the webhook's, which also checks the rest)."""


def primary_objective_input(data: Any) -> Any:
    """The spec's input with `objective` filled in from `objectives[0]` (before validation), or as it was.

    Raises ValueError when both are given: after this step they could no longer be told apart.
    """
    if not isinstance(data, dict) or data.get("objectives") is None:
        return data
    if data.get("objective") is not None:
        raise ValueError(BOTH_SET)
    objectives = data["objectives"]
    if isinstance(objectives, list) and objectives:
        return {**data, "objective": objectives[0]}
    return data  # an empty or malformed list: the field's own validation names the problem


def objectives_problem(spec: HyperparamSweepSpec) -> str | None:
    """What makes this multi-objective spec unworkable (the first problem), or None (also for one objective)."""
    from trainsmart.api.sweep_spec import AlgorithmName, EarlyStoppingRule, RetentionPolicy

    if spec.objectives is None:
        return NSGA2_SINGLE if spec.algorithm.name == AlgorithmName.NSGA2 else None
    metrics = [objective.metric for objective in spec.objectives]
    for index, metric in enumerate(metrics):
        if metric in metrics[:index]:
            return f"objectives[{index}].metric {metric!r} is listed twice; each objective is a different metric"
    for index, objective in enumerate(spec.objectives):
        if objective.target is not None:
            return (
                f"objectives[{index}].target: a multi-objective sweep has no single goal to reach; remove target "
                "(maxTrials or budget ends the sweep)"
            )
    if spec.early_stopping.rule != EarlyStoppingRule.NONE:
        return EARLY_STOPPING
    if spec.trial_retention.policy == RetentionPolicy.KEEP_BEST:
        return KEEP_BEST
    if spec.algorithm.name.value not in MULTI_OBJECTIVE_ALGORITHMS:
        return ONE_OBJECTIVE_ALGORITHM.format(name=spec.algorithm.name.value)
    if spec.algorithm.tpe is not None and "gamma" in spec.algorithm.tpe.model_fields_set:
        return (
            "algorithm.tpe.gamma applies to hyperopt's TPE; with objectives, Optuna's multi-objective TPE splits "
            "good from bad trials by Pareto rank itself; remove gamma"
        )
    if spec.algorithm.name in (AlgorithmName.TPE, AlgorithmName.NSGA2):
        return _unbounded_problem(spec.parameters, spec.algorithm.name.value)
    return None


def _unbounded_problem(parameters: Sequence[Parameter], algorithm: str) -> str | None:
    for index, parameter in enumerate(parameters):
        if parameter.type in UNBOUNDED_TYPES:
            return (
                f"parameters[{index}].type {parameter.type.value} has no equivalent in Optuna, which draws "
                f"algorithm {algorithm} with objectives; use uniform or loguniform with min and max"
            )
    return None


def without_required(schema: dict[str, Any], field: str) -> None:
    """Take `field` off the JSON schema's `required` list (the model fills it before validation)."""
    schema["required"] = [name for name in schema.get("required", []) if name != field]
