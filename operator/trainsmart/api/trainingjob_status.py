"""The TrainingJob status: what the operator observed, written only by the operator.

Everything here is bounded (history, diagnostics, conditions) because status lives in etcd with the object
and is re-sent on every watch event: an unbounded per-step log would eventually make the object unwritable.
"""

from __future__ import annotations

from typing import Final

from pydantic import AwareDatetime, Field

from trainsmart.api.common import ApiModel, MetricName, list_map
from trainsmart.api.conditions import (
    CONDITIONS_MAX_ITEMS,
    Condition,
    DiagnosticSeverity,
    TrainingJobPhase,
)

# Per-epoch objective values kept in status: enough for median/ASHA early stopping and a sparkline; the
# operator keeps the newest entries when a run has more epochs.
HISTORY_MAX_ITEMS: Final = 500
DIAGNOSTICS_MAX_ITEMS: Final = 20
# Per-epoch training/validation losses kept for the operator's own curve diagnostics (divergence,
# overfitting): they look back a few epochs, so a short window does; it is never the whole run.
LOSS_CURVE_MAX_ITEMS: Final = 32
METRICS_MAX_PROPERTIES: Final = 64


class ReplicaCounts(ApiModel):
    """How many replica pods are in each state."""

    pending: int = Field(default=0, ge=0, description="Replicas created but not yet running.")
    running: int = Field(default=0, ge=0, description="Replicas running.")
    succeeded: int = Field(default=0, ge=0, description="Replicas that exited 0.")
    failed: int = Field(default=0, ge=0, description="Replicas that exited non-zero in the current attempt.")


class Progress(ApiModel):
    """Where training is, from the trainer's reports; it never moves back for a late report, and a restart
    shows from the newest checkpoint's epoch (`status/report_fold.py`)."""

    epoch: int = Field(default=0, ge=0, description="Epochs completed.")
    total_epochs: int | None = Field(default=None, ge=1, description="Epochs the run will do.")
    percent: float = Field(default=0.0, ge=0, le=100, description="Share of epochs completed, 0-100.")
    samples_per_second: float | None = Field(
        default=None, ge=0, description="Training throughput over all ranks, from the latest report."
    )
    eta_seconds: float | None = Field(default=None, ge=0, description="Estimated seconds until the last epoch ends.")
    step: int = Field(default=0, ge=0, description="Optimizer steps done, as the newest report said.")
    report_time: AwareDatetime | None = Field(
        default=None,
        description="When the trainer sent the newest report this progress reflects (the trainer's clock). A "
        "report that arrives later but is older, and not further in training, is not folded.",
    )
    attempt: int | None = Field(
        default=None,
        ge=0,
        description="The run (status.restarts when its pods were created) of the newest report this progress "
        "reflects; reports are ordered by attempt first. Empty for trainers that do not say.",
    )
    headline: str | None = Field(
        default=None,
        max_length=64,
        description="Epochs done of the total with the percent, e.g. 3/10 (30%), for `kubectl get`.",
    )


class HistoryPoint(ApiModel):
    """The objective metric at the end of one epoch."""

    epoch: int = Field(ge=0, description="The epoch the value was measured after.")
    value: float = Field(description="The objective metric's value.")


class LossPoint(ApiModel):
    """The training and validation loss at the end of one epoch, as far as the reports said."""

    epoch: int = Field(ge=0, description="The epoch the losses were measured after.")
    train: float | None = Field(default=None, description="Training loss (train_loss, training_loss or loss).")
    validation: float | None = Field(
        default=None, description="Validation loss (val_loss, validation_loss, valid_loss or eval_loss)."
    )


class MetricsStatus(ApiModel):
    """Latest and best metric values, and a bounded per-epoch history of the objective."""

    latest: dict[str, float] = Field(
        default_factory=dict,
        max_length=METRICS_MAX_PROPERTIES,
        description="Most recent value of each reported metric, by name.",
    )
    best: dict[str, float] = Field(
        default_factory=dict,
        max_length=METRICS_MAX_PROPERTIES,
        description="Best value so far of each reported metric, in the direction the metric improves.",
    )
    objective: MetricName | None = Field(
        default=None,
        description="The metric the history tracks: the sweep's objective for a trial, else the trainer's "
        "early-stopping metric or val_loss.",
    )
    headline: str | None = Field(
        default=None,
        max_length=128,
        description="The objective's latest value as name=value, for `kubectl get`.",
    )
    history: list[HistoryPoint] = Field(
        default_factory=list,
        max_length=HISTORY_MAX_ITEMS,
        description=f"Objective value per epoch, oldest first; at most the newest {HISTORY_MAX_ITEMS}.",
    )
    loss_curve: list[LossPoint] = Field(
        default_factory=list,
        max_length=LOSS_CURVE_MAX_ITEMS,
        description="Training and validation loss per epoch, oldest first; the newest "
        f"{LOSS_CURVE_MAX_ITEMS}, what the operator's curve diagnostics look at.",
    )


class BestCheckpointStatus(ApiModel):
    """The checkpoint of the best objective value so far, kept by the trainer apart from the newest ones."""

    path: str = Field(description="Its path in the trainer's container (under the checkpoint volume's mount).")
    epoch: int = Field(ge=0, description="The epoch it was saved after: the epoch of its value.")
    metric: MetricName = Field(
        description="The objective it is the best of: the sweep's objective for a trial, else the trainer's."
    )
    value: float = Field(description="The objective's value at that epoch.")


class CheckpointStatus(ApiModel):
    """The newest checkpoint the trainer reported as saved, and the best one by the objective."""

    latest_epoch: int | None = Field(default=None, ge=0, description="Epoch of the newest checkpoint.")
    path: str | None = Field(default=None, description="Its path inside the checkpoint volume.")
    time: AwareDatetime | None = Field(default=None, description="When it was saved.")
    best: BestCheckpointStatus | None = Field(
        default=None,
        description="The best checkpoint by the objective (the model the best value came from); replaced only "
        "when the objective improves, while the newest checkpoints, for resuming, move on.",
    )


class Diagnostic(ApiModel):
    """A finding about the run (divergence, overfitting, idle GPUs) with what to do about it."""

    type: str = Field(min_length=1, max_length=64, description="Kind of finding, e.g. LossDiverged.")
    severity: DiagnosticSeverity = Field(description="Info, Warning or Error.")
    message: str = Field(max_length=1024, description="What was observed.")
    suggestion: str | None = Field(default=None, max_length=1024, description="What to change to fix it.")
    epoch: int | None = Field(
        default=None, ge=0, description="The epoch the finding is about: the first one it was seen at."
    )


class TrainingJobStatus(ApiModel):
    """The observed state of a TrainingJob."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this status was computed from."
    )
    phase: TrainingJobPhase | None = Field(
        default=None,
        description="Pending, Running, Restarting, Succeeded, Failed or Suspended.",
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=CONDITIONS_MAX_ITEMS,
        description="Detailed observations, one per type (Created, Running, Restarting, Succeeded, Failed, "
        "Suspended, InvalidSpec).",
        json_schema_extra=list_map("type"),
    )
    start_time: AwareDatetime | None = Field(default=None, description="When the first replica started running.")
    completion_time: AwareDatetime | None = Field(default=None, description="When the job succeeded or failed.")
    replicas: ReplicaCounts = Field(default_factory=ReplicaCounts, description="Replica pods by state.")
    restarts: int = Field(default=0, ge=0, description="Whole-job restarts so far (counted against backoffLimit).")
    progress: Progress | None = Field(default=None, description="Training progress from the trainer.")
    metrics: MetricsStatus | None = Field(default=None, description="Reported metrics.")
    checkpoint: CheckpointStatus | None = Field(default=None, description="The newest checkpoint.")
    gpu_seconds: float = Field(
        default=0.0, ge=0, description="GPU time consumed by all attempts: GPUs x seconds their pods ran."
    )
    estimated_cost: float | None = Field(
        default=None,
        ge=0,
        description="Estimated cost of gpuSeconds in costCurrency: each pod's GPU time at the price the operator "
        "is configured with for its node. An estimate, not a bill; empty when no price is configured.",
    )
    cost_currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code of estimatedCost, e.g. USD."
    )
    cost_headline: str | None = Field(
        default=None, max_length=64, description="estimatedCost rounded to cents, e.g. $1.23, for `kubectl get`."
    )
    diagnostics: list[Diagnostic] = Field(
        default_factory=list,
        max_length=DIAGNOSTICS_MAX_ITEMS,
        description="Findings about the run, newest last.",
    )
