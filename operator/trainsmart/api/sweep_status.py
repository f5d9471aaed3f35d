"""The HyperparamSweep status: trial counts, the best trial and a bounded trial table.

The trial table is what survives `trialRetention` deleting finished trials, so it records everything the
suggester needs to rebuild its history (parameters, objective value, outcome) and nothing more.
"""

from __future__ import annotations

from typing import Final

from pydantic import AwareDatetime, Field

from trainsmart.api.common import ApiModel, DnsName, ParameterValueField, list_map
from trainsmart.api.conditions import CONDITIONS_MAX_ITEMS, Condition, SweepPhase, TrialPhase
from trainsmart.api.sweep_spec import MAX_TRIALS_LIMIT

TRIAL_TABLE_MAX_ITEMS: Final = MAX_TRIALS_LIMIT


class TrialCounts(ApiModel):
    """How many trials are in each state."""

    total: int = Field(default=0, ge=0, description="Trials created so far.")
    pending: int = Field(default=0, ge=0, description="Trials created but not yet running.")
    running: int = Field(default=0, ge=0, description="Trials running.")
    succeeded: int = Field(default=0, ge=0, description="Trials that finished and reported the objective.")
    failed: int = Field(
        default=0,
        ge=0,
        description="Trials that failed, finished without the objective metric (NoMetric) or were deleted unfinished.",
    )
    early_stopped: int = Field(
        default=0,
        ge=0,
        description="Trials stopped before their last epoch: unpromising, or the sweep ended (goal, budget).",
    )
    finished: int = Field(default=0, ge=0, description="succeeded + failed + earlyStopped.")
    planned: int = Field(default=0, ge=0, description="Trials the sweep runs at most (maxTrials or the grid size).")


class BestTrialCheckpoint(ApiModel):
    """Where the best trial's best checkpoint is: mount `claimName` and open `path` inside it."""

    claim_name: DnsName = Field(description="The PersistentVolumeClaim holding the trial's checkpoints.")
    path: str = Field(
        min_length=1, max_length=1024, description="The file's path inside that claim, e.g. best/checkpoint.pt."
    )
    epoch: int = Field(ge=0, description="The epoch it was saved after.")
    value: float = Field(description="The objective's value at that epoch (the one metricValue shows).")


class BestTrial(ApiModel):
    """The best trial so far under the objective's goal."""

    name: DnsName = Field(description="The trial's TrainingJob name.")
    parameters: dict[str, ParameterValueField] = Field(
        default_factory=dict, description="Its parameter values, by name."
    )
    metric_value: float = Field(description="Its objective value.")
    epoch: int | None = Field(default=None, ge=0, description="The epoch that value was reached at.")
    headline: str | None = Field(
        default=None,
        max_length=128,
        description="The objective and its value to 4 significant digits, e.g. val_accuracy=0.9792, for `kubectl get`.",
    )
    checkpoint: BestTrialCheckpoint | None = Field(
        default=None,
        description="The trial's best checkpoint by the sweep's objective: the model metricValue came from. Empty "
        "while the trial has none (no trialTemplate.checkpoint, or training code that keeps no best).",
    )


class ParetoTrial(ApiModel):
    """A trial on the Pareto front of a multi-objective sweep: no other trial is at least as good on every
    objective and better on one."""

    name: DnsName = Field(description="The trial's TrainingJob name.")
    values: dict[str, float] = Field(description="Its final-epoch value of each objective, by metric.")


class TrialRecord(ApiModel):
    """One trial in the sweep's table."""

    name: DnsName = Field(description="The trial's TrainingJob name.")
    number: int = Field(ge=0, description="Creation order, from 0.")
    phase: TrialPhase = Field(description="Pending, Running, Restarting, Succeeded, Failed, Suspended or EarlyStopped.")
    parameters: dict[str, ParameterValueField] = Field(default_factory=dict, description="Parameter values, by name.")
    metric_value: float | None = Field(default=None, description="Best objective value the trial reported.")
    objective_values: dict[str, float] | None = Field(
        default=None,
        description="Multi-objective sweeps: each objective's final-epoch value, by metric (the values the Pareto "
        "front compares).",
    )
    epochs: int | None = Field(default=None, ge=0, description="Epochs the trial completed.")
    gpu_seconds: float = Field(default=0.0, ge=0, description="GPU time the trial consumed.")
    estimated_cost: float | None = Field(
        default=None, ge=0, description="The trial's estimated cost (its TrainingJob's status.estimatedCost)."
    )
    start_time: AwareDatetime | None = Field(default=None, description="When the trial was created.")
    completion_time: AwareDatetime | None = Field(default=None, description="When the trial finished.")
    deleted: bool = Field(default=False, description="Its TrainingJob was deleted under trialRetention.")
    reason: str | None = Field(
        default=None,
        max_length=64,
        description="Why the trial ended as it did (CamelCase): e.g. NoMetric, EarlyStopped, BudgetExhausted.",
    )
    message: str | None = Field(default=None, max_length=1024, description="The same for humans, with details.")


class HyperparamSweepStatus(ApiModel):
    """The observed state of a HyperparamSweep."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status was computed from."
    )
    phase: SweepPhase | None = Field(default=None, description="Pending, Running, Succeeded, Failed or Suspended.")
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=CONDITIONS_MAX_ITEMS,
        description="Detailed observations, one per type (Running, Succeeded, Failed, GoalReached, "
        "BudgetExhausted, Suspended, InvalidSpec).",
        json_schema_extra=list_map("type"),
    )
    start_time: AwareDatetime | None = Field(default=None, description="When the first trial was created.")
    completion_time: AwareDatetime | None = Field(default=None, description="When the sweep finished.")
    seed: int | None = Field(default=None, ge=0, description="The random seed in use.")
    counts: TrialCounts = Field(default_factory=TrialCounts, description="Trials by state.")
    best_trial: BestTrial | None = Field(default=None, description="The best finished trial so far.")
    trials: list[TrialRecord] = Field(
        default_factory=list,
        max_length=TRIAL_TABLE_MAX_ITEMS,
        description="Every trial so far, in creation order.",
        json_schema_extra=list_map("name"),
    )
    pareto_front: list[ParetoTrial] | None = Field(
        default=None,
        max_length=TRIAL_TABLE_MAX_ITEMS,
        description="Multi-objective sweeps: the succeeded trials no other trial beats on every objective, by "
        "trial number. Empty until a trial succeeds.",
        json_schema_extra=list_map("name"),
    )
    pareto_front_size: int | None = Field(
        default=None, ge=0, description="Multi-objective sweeps: trials on the Pareto front, for `kubectl get`."
    )
    gpu_seconds: float = Field(default=0.0, ge=0, description="GPU time consumed by all trials.")
    estimated_cost: float | None = Field(
        default=None,
        ge=0,
        description="Estimated cost of all trials in costCurrency (the sum of their estimatedCost); an estimate, "
        "not a bill. Empty when no price is configured.",
    )
    cost_currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code of estimatedCost, e.g. USD."
    )
    cost_headline: str | None = Field(
        default=None, max_length=64, description="estimatedCost rounded to cents, e.g. $1.23, for `kubectl get`."
    )
