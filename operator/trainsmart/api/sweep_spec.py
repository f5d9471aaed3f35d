"""The HyperparamSweep spec: a search space, a trial template (a TrainingJob spec) and the rules that end it.

The cross-field checks run every parameter's edge values through the trial template, so a sweep that
would create invalid trials (a dropout of 1.5, a float for an integer field, a misspelt path) is refused
at admission, naming the parameter, rather than failing trial after trial.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Final, Self

from pydantic import (
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from trainsmart.api.cel import rule, validations
from trainsmart.api.common import ApiModel, MetricName, format_validation_error, list_map
from trainsmart.api.objectives import (
    MAX_OBJECTIVES,
    MIN_OBJECTIVES,
    OBJECTIVES_CEL_RULES,
    objectives_problem,
    primary_objective_input,
    without_required,
)
from trainsmart.api.paths import apply_parameters, resolve_path
from trainsmart.api.search_space import (
    Parameter,
    ParameterType,
    check_conditions,
    condition_context,
    conditional_grid_size,
)
from trainsmart.api.tracking_spec import TrackingSpec
from trainsmart.api.trainingjob_spec import TrainingJobSpec
from trainsmart.api.warm_start_spec import WarmStart
from trainsmart_trainer.contract import ObjectiveDirection, param_env_name

MAX_TRIALS_LIMIT: Final = 1000
MAX_PARAMETERS: Final = 64
# Beyond this a grid is almost certainly a mistake (a randint over 0..1e6): refuse it rather than plan it.
MAX_GRID_POINTS: Final = 1_000_000
DURATION_PATTERN: Final = r"^([0-9]+(\.[0-9]+)?(h|m|s))+$"
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(h|m|s)")
_UNIT_SECONDS: Final = {"h": 3600.0, "m": 60.0, "s": 1.0}
BOHB_NEEDS_ASHA: Final = (
    "algorithm.name bohb needs earlyStopping.rule asha (its rungs are the budgets TPE models); set "
    "earlyStopping.rule: asha, or use algorithm.name tpe"
)


def parse_duration(text: str) -> float:
    """Seconds in a duration such as `90m`, `1h30m` or `45s` (Go's syntax, units h, m and s)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration; write e.g. 45m, 6h or 1h30m")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


Goal = ObjectiveDirection
"""Which direction of the objective metric is better: the contract's one encoding, shared with the trainer."""


class Objective(ApiModel):
    """What the sweep optimizes."""

    metric: MetricName = Field(description="Metric the trainer reports, e.g. val_accuracy or val_loss.")
    goal: Goal = Field(description="maximize or minimize.")
    target: float | None = Field(
        default=None, description="Stop the sweep (GoalReached) once a trial reaches this value."
    )

    def is_better(self, candidate: float, incumbent: float) -> bool:
        """Whether `candidate` beats `incumbent` under this goal."""
        return self.goal.is_better(candidate, incumbent)


class AlgorithmName(StrEnum):
    """Search algorithms: exhaustive grid, or hyperopt's random, TPE and annealing; with several objectives,
    tpe is Optuna's multi-objective TPE and nsga2 Optuna's NSGA-II (see sweep/multiobjective.py)."""

    GRID = "grid"
    RANDOM = "random"
    TPE = "tpe"
    ANNEAL = "anneal"
    NSGA2 = "nsga2"
    BOHB = "bohb"  # multi-fidelity TPE on ASHA's rung values (sweep/multifidelity.py)


class TpeSettings(ApiModel):
    """Tree-structured Parzen Estimator settings (hyperopt's tpe.suggest)."""

    startup_trials: int = Field(
        default=10, ge=1, le=MAX_TRIALS_LIMIT, description="Random trials before TPE starts modelling."
    )
    gamma: float = Field(default=0.25, gt=0, lt=1, description="Share of finished trials TPE treats as the good ones.")
    ei_candidates: int = Field(
        default=24, ge=1, le=10_000, description="Candidates sampled per suggestion to maximize expected improvement."
    )


class Nsga2Settings(ApiModel):
    """NSGA-II settings (Optuna's NSGAIISampler; name nsga2, multi-objective sweeps only)."""

    population_size: int = Field(
        default=10,
        ge=2,
        le=MAX_TRIALS_LIMIT,
        description="Trials per generation: trials 0..populationSize-1 are random, each later generation is "
        "bred from the best of the ones before. Optuna's default of 50 suits thousands of cheap trials; a "
        "sweep of a few dozen needs a smaller one to get past its first generation.",
    )


class BohbSettings(ApiModel):
    """Multi-fidelity TPE (BOHB-style): TPE fitted on the values trials reached at ASHA's rungs."""

    min_points_in_model: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRIALS_LIMIT,
        description="Trials a rung needs before TPE models it (the highest such rung is used; below it, random "
        "draws). Unset: the number of parameters + 1, as in BOHB.",
    )
    random_fraction: float = Field(
        default=1 / 3,
        ge=0,
        le=1,
        description="Share of trials drawn at random even once a rung can be modelled, so the model never "
        "rules out a region for good. BOHB's default, 1/3.",
    )


class Algorithm(ApiModel):
    """How the next trials' parameters are chosen."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule("!has(self.tpe) || !has(self.name) || self.name == 'tpe'", "tpe settings apply only to name tpe"),
            rule(
                "!has(self.nsga2) || (has(self.name) && self.name == 'nsga2')",
                "nsga2 settings apply only to name nsga2",
            ),
            rule("!has(self.bohb) || (has(self.name) && self.name == 'bohb')", "bohb settings apply only to name bohb"),
        )
    )

    name: AlgorithmName = Field(
        default=AlgorithmName.TPE,
        description="grid, random, tpe or anneal; nsga2 with objectives (tpe with objectives is Optuna's "
        "multi-objective TPE).",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=2**32 - 1,
        description="Random seed. Unset: derived from the sweep's metadata.uid (stable across operator "
        "restarts, different per sweep); status.seed shows the one in use.",
    )
    tpe: TpeSettings | None = Field(default=None, description="TPE settings (name tpe only).")
    nsga2: Nsga2Settings | None = Field(default=None, description="NSGA-II settings (name nsga2 only).")
    bohb: BohbSettings | None = Field(
        default=None,
        description="Multi-fidelity TPE settings (name bohb only: TPE on the values trials reach at ASHA's rungs; "
        "needs earlyStopping.rule asha).",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.tpe is not None and self.name != AlgorithmName.TPE:
            raise ValueError(f"tpe settings apply only to name tpe; remove tpe or set name: tpe (is {self.name})")
        if self.nsga2 is not None and self.name != AlgorithmName.NSGA2:
            raise ValueError("nsga2 settings apply only to name nsga2")
        if self.bohb is not None and self.name != AlgorithmName.BOHB:
            raise ValueError("bohb settings apply only to name bohb")
        return self


class Budget(ApiModel):
    """Limits that end the sweep (BudgetExhausted) however many trials are left."""

    max_duration: str | None = Field(
        default=None,
        pattern=DURATION_PATTERN,
        description="Wall-clock limit from the sweep's start, as a duration: 45m, 6h, 1h30m.",
    )
    max_gpu_hours: float | None = Field(
        default=None, gt=0, description="Limit on GPU time summed over all trials, in GPU-hours."
    )
    max_cost: float | None = Field(
        default=None,
        gt=0,
        description="Limit on the estimated cost summed over all trials (status.estimatedCost), in the currency "
        "of the operator's GPU price. Needs a price configured in the operator; without one the sweep says so "
        "in its BudgetExhausted condition and a Warning Event, and this limit does not apply.",
    )

    @property
    def max_duration_seconds(self) -> float | None:
        """maxDuration in seconds."""
        return None if self.max_duration is None else parse_duration(self.max_duration)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.max_duration is not None and parse_duration(self.max_duration) <= 0:
            raise ValueError(f"maxDuration must be > 0, got {self.max_duration!r}")
        return self


class EarlyStoppingRule(StrEnum):
    """How unpromising trials are stopped."""

    NONE = "none"
    MEDIAN = "median"
    ASHA = "asha"


class SweepEarlyStopping(ApiModel):
    """Stop unpromising trials early (gracefully: they checkpoint first and end as EarlyStopped)."""

    rule: EarlyStoppingRule = Field(
        default=EarlyStoppingRule.NONE,
        description="none; median (stop a trial worse than the median of others at the same epoch); asha "
        "(asynchronous successive halving).",
    )
    min_epochs: int = Field(default=1, ge=1, description="No trial is stopped before this many epochs.")
    reduction_factor: int = Field(
        default=3, ge=2, le=10, description="asha: 1 in reductionFactor trials is promoted at each rung."
    )
    resume_promoted: bool | None = Field(
        default=None,
        description="asha: continue a promoted trial from its checkpoint instead of retraining it. Needs "
        "trialTemplate.checkpoint. Unset: true when the template has a checkpoint.",
    )


class RetentionPolicy(StrEnum):
    """What happens to finished trials' TrainingJobs (their results stay in status.trials either way)."""

    KEEP_ALL = "keepAll"
    KEEP_BEST = "keepBest"
    DELETE_FINISHED = "deleteFinished"


class TrialRetention(ApiModel):
    """Which finished trial TrainingJobs to keep; running trials are never deleted."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "(has(self.policy) && self.policy == 'keepBest') == has(self.count)",
                "count is required with policy keepBest and applies to it only",
            )
        )
    )

    policy: RetentionPolicy = Field(
        default=RetentionPolicy.KEEP_ALL,
        description="keepAll; keepBest (the `count` best finished trials, delete other finished ones); "
        "deleteFinished (delete each trial once its result is recorded in status).",
    )
    count: int | None = Field(default=None, ge=1, le=MAX_TRIALS_LIMIT, description="keepBest: how many.")

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.policy == RetentionPolicy.KEEP_BEST) != (self.count is not None):
            raise ValueError("count is required with policy keepBest and applies to it only")
        return self


class HyperparamSweepSpec(ApiModel):
    """The desired search: trials are TrainingJobs made from trialTemplate with the parameters set."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "has(self.maxTrials) || (has(self.algorithm) && has(self.algorithm.name) && "
                "self.algorithm.name == 'grid')",
                "maxTrials is required except for algorithm grid; only grid has a natural end",
            ),
            rule(
                "!has(self.earlyStopping) || !has(self.earlyStopping.resumePromoted) || "
                "!self.earlyStopping.resumePromoted || has(self.trialTemplate.checkpoint)",
                "earlyStopping.resumePromoted needs trialTemplate.checkpoint; add one or set resumePromoted: false",
            ),
            rule(
                "!has(self.warmStart) || !has(self.algorithm) || !has(self.algorithm.name) || "
                "self.algorithm.name != 'grid'",
                "warmStart does not apply to algorithm grid, which enumerates every point; remove one",
            ),
            rule(
                "!has(self.algorithm) || !has(self.algorithm.name) || self.algorithm.name != 'bohb' || "
                "(has(self.earlyStopping) && has(self.earlyStopping.rule) && self.earlyStopping.rule == 'asha')",
                BOHB_NEEDS_ASHA,
            ),
            rule(
                "!has(self.trialTemplate.suspend) || !self.trialTemplate.suspend",
                "trialTemplate.suspend must be false; suspend the sweep with spec.suspend instead",
            ),
            rule(
                "!has(self.trialTemplate.checkpoint) || !has(self.trialTemplate.checkpoint.claimName)",
                "trialTemplate.checkpoint.claimName would give every trial the same checkpoint directory; use "
                "trialTemplate.checkpoint.size (one claim per trial)",
            ),
            rule(
                "!has(self.trialTemplate.runPolicy) || !has(self.trialTemplate.runPolicy.ttlSecondsAfterFinished)",
                "trialTemplate.runPolicy.ttlSecondsAfterFinished is not allowed: a trial must stay until the sweep "
                "has recorded its result; use trialRetention to delete finished trials",
            ),
            *OBJECTIVES_CEL_RULES,
        )
    )

    objective: Objective = Field(
        description="The metric to optimize and its direction. Set this or objectives, not both; with "
        "objectives it is left unset (the first of objectives is the primary one)."
    )
    objectives: list[Objective] | None = Field(
        default=None,
        min_length=MIN_OBJECTIVES,
        max_length=MAX_OBJECTIVES,
        description="Multi-objective: two or three metrics, each with its goal (e.g. val_accuracy maximize, "
        "param_count minimize); the sweep finds their Pareto front (status.paretoFront), from each trial's "
        "final-epoch values. The first is the primary objective (bestTrial, the per-epoch history). No target, "
        "no earlyStopping, no keepBest.",
    )
    algorithm: Algorithm = Field(default_factory=Algorithm, description="How parameters are chosen.")
    parameters: list[Parameter] = Field(
        min_length=1,
        max_length=MAX_PARAMETERS,
        description="The search space, one entry per hyperparameter; names are unique.",
        json_schema_extra=list_map("name"),
    )
    trial_template: TrainingJobSpec = Field(description="The TrainingJob spec each trial starts from.")
    max_trials: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TRIALS_LIMIT,
        description="Trials to run at most. Required except for grid, which defaults to the grid's size.",
    )
    parallel_trials: int = Field(
        default=1,
        ge=1,
        le=100,
        description="At most this many trials run at the same time: a cap, never more than remain to run, so a "
        "value above maxTrials or the grid's size is accepted and runs every remaining trial at once.",
    )
    max_failed_trials: int | None = Field(
        default=None, ge=0, description="Fail the sweep after this many failed trials. Unset: no limit."
    )
    budget: Budget | None = Field(default=None, description="Time, GPU and cost limits. Unset: none.")
    early_stopping: SweepEarlyStopping = Field(
        default_factory=SweepEarlyStopping, description="Stopping unpromising trials."
    )
    trial_retention: TrialRetention = Field(
        default_factory=TrialRetention, description="Which finished trial TrainingJobs to keep."
    )
    suspend: bool = Field(
        default=False, description="true suspends every running trial and starts no new ones; false resumes."
    )
    tracking: TrackingSpec | None = Field(
        default=None,
        description="Experiment tracking (MLflow): the sweep is a parent run, each trial a child run in the same "
        "experiment. Trials inherit it unless trialTemplate.tracking is set. Unset: the operator's default "
        "tracking URI, if it has one.",
    )

    warm_start: WarmStart | None = Field(
        default=None,
        description="Seed the search with the finished trials of another sweep over the same space (extend or "
        "resume a search with everything it learned). Not for algorithm grid. Unset: a cold start.",
    )

    def grid_size(self) -> int | None:
        """Points in the full grid (the product over parameters; only valid combinations of a conditional
        space), or None if some parameter has no grid."""
        return conditional_grid_size(self.parameters)

    def planned_trials(self) -> int:
        """Trials the sweep runs at most: maxTrials, capped by the grid's size for grid search."""
        grid = self.grid_size() if self.algorithm.name == AlgorithmName.GRID else None
        candidates = [value for value in (self.max_trials, grid) if value is not None]
        return min(candidates) if candidates else 0

    def resumes_promoted(self) -> bool:
        """Whether promoted ASHA trials resume from their checkpoint."""
        explicit = self.early_stopping.resume_promoted
        return explicit if explicit is not None else self.trial_template.checkpoint is not None

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # Required in Python (filled from objectives[0] before validation), optional on the wire.
        schema = handler(core_schema)
        without_required(handler.resolve_ref_schema(schema), "objective")
        return schema

    @model_validator(mode="before")
    @classmethod
    def _fill_primary_objective(cls, data: Any) -> Any:
        return primary_objective_input(data)

    @model_serializer(mode="wrap")
    def _leave_primary_objective_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # objective was filled from objectives[0]: the wire form is what the user wrote, so it parses again.
        data: dict[str, Any] = handler(self)
        if self.objectives is not None:
            data.pop("objective", None)
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        problem = objectives_problem(self)
        if problem is not None:
            raise ValueError(problem)
        self._check_names()
        check_conditions(self.parameters)
        self._check_algorithm()
        if self.warm_start is not None and self.algorithm.name == AlgorithmName.GRID:
            raise ValueError("warmStart does not apply to algorithm grid, which enumerates every point; remove one")
        template = self.trial_template.to_api()
        for index, parameter in enumerate(self.parameters):
            self._check_parameter_fits_template(index, parameter, template)
        if self.early_stopping.resume_promoted and self.trial_template.checkpoint is None:
            raise ValueError(
                "earlyStopping.resumePromoted needs trialTemplate.checkpoint; add one or set resumePromoted: false"
            )
        if self.trial_template.suspend:
            raise ValueError("trialTemplate.suspend must be false; suspend the sweep with spec.suspend instead")
        if self.trial_template.checkpoint is not None and self.trial_template.checkpoint.claim_name is not None:
            # Every trial would save to (and resume from) the same directory: a new trial would start from
            # another trial's weights.
            raise ValueError(
                "trialTemplate.checkpoint.claimName would give every trial the same checkpoint directory; use "
                "trialTemplate.checkpoint.size (one claim per trial)"
            )
        if self.trial_template.run_policy.ttl_seconds_after_finished is not None:
            # A trial deleted the moment it finishes may be gone before the sweep reads its result.
            raise ValueError(
                "trialTemplate.runPolicy.ttlSecondsAfterFinished is not allowed: a trial must stay until the sweep "
                "has recorded its result; use trialRetention to delete finished trials"
            )
        return self

    def _check_names(self) -> None:
        for attribute in ("name", "path"):
            seen: set[str] = set()
            for index, parameter in enumerate(self.parameters):
                value = getattr(parameter, attribute)
                if value in seen:
                    raise ValueError(f"parameters[{index}].{attribute} {value!r} is used by another parameter")
                if value is not None:
                    seen.add(value)
        # Every parameter is also an environment variable in the trial's pods; `lr` and `LR` would share one.
        variables: dict[str, str] = {}
        for index, parameter in enumerate(self.parameters):
            variable = param_env_name(parameter.name)
            if variable in variables:
                raise ValueError(
                    f"parameters[{index}].name {parameter.name!r} gives the same environment variable {variable} as "
                    f"parameter {variables[variable]!r}; rename one"
                )
            variables[variable] = parameter.name

    def _check_algorithm(self) -> None:
        grid = self.algorithm.name == AlgorithmName.GRID
        if not grid and self.max_trials is None:
            raise ValueError(f"maxTrials is required for algorithm {self.algorithm.name}; only grid has a natural end")
        for index, parameter in enumerate(self.parameters):
            if parameter.step is not None and not grid:
                raise ValueError(
                    f"parameters[{index}].step is used by grid search only; remove it or set algorithm.name: grid"
                )
            if grid and parameter.grid_size() is None:
                raise ValueError(
                    f"parameters[{index}] ({parameter.name}): has no finite grid; use choice or randint, add q, or "
                    "add step to a uniform/loguniform parameter"
                )
        if self.algorithm.name == AlgorithmName.BOHB and self.early_stopping.rule != EarlyStoppingRule.ASHA:
            raise ValueError(BOHB_NEEDS_ASHA)
        size = self.grid_size()
        if grid and size is not None and size > MAX_GRID_POINTS:
            raise ValueError(f"the grid has {size} points (more than {MAX_GRID_POINTS}); coarsen the parameters")

    def _check_parameter_fits_template(self, index: int, parameter: Parameter, template: dict[str, Any]) -> None:
        path = parameter.path
        if path is None:
            return  # placeholders only: any text fits a command line (admission checks the names)
        where = f"parameters[{index}] ({parameter.name})"
        try:
            kind = resolve_path(path)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        continuous = parameter.type != ParameterType.CHOICE
        if kind == "int" and not parameter.yields_integers():
            raise ValueError(f"{where}: {path} is an integer; use randint, choice of integers, or an integer q")
        if kind in ("bool", "str") and continuous:
            raise ValueError(f"{where}: {path} takes a {kind}; use type choice")
        if kind in ("list", "object") and continuous:
            article = "a" if kind == "list" else "an"
            raise ValueError(f"{where}: path {path!r} names {article} {kind}; use type choice with {kind} values")
        if kind == "list" and any(not isinstance(value, list) for value in parameter.values or ()):
            # The first thing a user tries for "hidden width over 32, 64, 128": say both ways that work.
            raise ValueError(
                f"{where}: {path} is a list, so each value must be a list (values: [[32], [64], [128]]); to vary "
                f"one entry of the template's list, use path {path}.0 with plain values"
            )
        for value in parameter.representative_values():
            try:
                apply_parameters(template, {**condition_context(self.parameters, parameter), path: value})
            except ValidationError as exc:
                problem = format_validation_error(exc, prefix="trialTemplate")[0]
                raise ValueError(f"{where}: the value {value!r} makes an invalid trial: {problem}") from None
            except ValueError as exc:  # a list index the template does not have
                raise ValueError(f"{where}: {exc}") from None
