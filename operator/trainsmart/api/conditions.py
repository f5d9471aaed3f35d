"""Phases, condition types, reasons and severities: the status vocabulary, as named constants.

Status derivation, Events, metrics and tests all compare against these names; spelling them once here means
a renamed reason cannot silently break a `kubectl wait --for=condition=...` script or a dashboard.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from pydantic import AwareDatetime, Field

from trainsmart.api.common import ApiModel


class TrainingJobPhase(StrEnum):
    """The one-word summary of a TrainingJob, shown by `kubectl get tj`."""

    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class SweepPhase(StrEnum):
    """The one-word summary of a HyperparamSweep, shown by `kubectl get hps`."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class TrialPhase(StrEnum):
    """The phase of one trial in a sweep's trial table; `EarlyStopped` is a sweep-only outcome."""

    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    EARLY_STOPPED = "EarlyStopped"


FINISHED_TRIAL_PHASES: Final = frozenset(
    {TrialPhase.SUCCEEDED, TrialPhase.FAILED, TrialPhase.EARLY_STOPPED},
)


class ConditionStatus(StrEnum):
    """Kubernetes condition status values."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class TrainingJobConditionType(StrEnum):
    """Condition types a TrainingJob reports (`kubectl wait --for=condition=Succeeded tj/x`)."""

    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    INVALID_SPEC = "InvalidSpec"
    # True while the trainer reports a Warning or Error diagnostic (overfitting, exploding gradients...):
    # training goes on, but someone should look before more GPU hours go into it.
    TRAINING_WARNING = "TrainingWarning"


class SweepConditionType(StrEnum):
    """Condition types a HyperparamSweep reports."""

    CREATED = "Created"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    GOAL_REACHED = "GoalReached"
    BUDGET_EXHAUSTED = "BudgetExhausted"
    SUSPENDED = "Suspended"
    INVALID_SPEC = "InvalidSpec"


class Reason(StrEnum):
    """Machine-readable reasons for conditions and Events (CamelCase, as Kubernetes expects)."""

    # TrainingJob
    CHILDREN_CREATED = "ChildrenCreated"
    NO_TRAINING_WARNINGS = "NoTrainingWarnings"
    WAITING_FOR_PODS = "WaitingForPods"
    ALL_REPLICAS_RUNNING = "AllReplicasRunning"
    TRAINING_SUCCEEDED = "TrainingSucceeded"
    REPLICA_FAILED = "ReplicaFailed"
    RETRYABLE_EXIT_CODE = "RetryableExitCode"
    PERMANENT_EXIT_CODE = "PermanentExitCode"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    # Both kinds
    SPEC_VALID = "SpecValid"
    SPEC_INVALID = "SpecInvalid"
    SUSPENDED_BY_USER = "SuspendedByUser"
    RESUMED = "Resumed"
    # HyperparamSweep
    TRIALS_RUNNING = "TrialsRunning"
    MAX_TRIALS_REACHED = "MaxTrialsReached"
    SEARCH_SPACE_EXHAUSTED = "SearchSpaceExhausted"
    GOAL_REACHED = "GoalReached"
    MAX_DURATION_REACHED = "MaxDurationReached"
    MAX_GPU_HOURS_REACHED = "MaxGpuHoursReached"
    MAX_FAILED_TRIALS_REACHED = "MaxFailedTrialsReached"
    NO_SUCCESSFUL_TRIAL = "NoSuccessfulTrial"
    EARLY_STOPPED = "EarlyStopped"


class DiagnosticSeverity(StrEnum):
    """How much a training diagnostic matters."""

    INFO = "Info"
    WARNING = "Warning"
    ERROR = "Error"


# The reason syntax of metav1.Condition: CamelCase, starting with a letter.
REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITIONS_MAX_ITEMS: Final = 32


class Condition(ApiModel):
    """One observation about an object, in the shape of metav1.Condition so generic tooling understands it."""

    type: str = Field(
        min_length=1,
        max_length=316,
        description="Kind of observation, e.g. Running or Succeeded. There is at most one of each type.",
    )
    status: ConditionStatus = Field(description="Whether the condition holds: True, False or Unknown.")
    reason: str | None = Field(
        default=None,
        max_length=1024,
        pattern=REASON_PATTERN,
        description="One CamelCase word saying why the condition last changed, for programs and alerts.",
    )
    message: str | None = Field(
        default=None,
        max_length=32768,
        description="A sentence for humans with the details of the last transition.",
    )
    last_transition_time: AwareDatetime | None = Field(
        default=None,
        description="When the status last changed (RFC 3339). Unchanged while the status stays the same.",
    )
    observed_generation: int | None = Field(
        default=None,
        ge=0,
        description="The metadata.generation the condition was computed from.",
    )
