"""Phases, condition types, reasons and severities: the status vocabulary, as named constants; and the
few pure functions that set conditions the Kubernetes way, shared by both kinds' status derivations.

Status derivation, Events, metrics and tests all compare against these names; spelling them once here means
a renamed reason cannot silently break a `kubectl wait --for=condition=...` script or a dashboard.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any, Final, Literal, NamedTuple, Protocol, Self, TypeVar

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


TRACKING_READY: Final = "TrackingReady"
"""Both kinds, only while experiment tracking is configured (issue 14): True once the object's MLflow run is
up to date, False while the tracking server is unreachable or refuses (training goes on regardless). Not
in the kinds' condition enums: those list the conditions every object always has."""


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
    PODS_DISRUPTED = "PodDisrupted"
    """A replica was evicted, preempted or deleted from outside: all replicas restart, not counted."""
    REPLICAS_RECREATED = "ReplicasRecreated"
    """The replicas of a restart are all gone; fresh ones are being created."""
    POD_CREATE_REFUSED = "FailedCreatePod"
    """The API (or the client's own validation) refused a replica pod: the Event says why; retried."""
    POD_FORCE_DELETED = "PodForceDeleted"
    """A replica pod stuck Terminating on a lost node was removed so the replica can start elsewhere."""
    NO_RESTART = "NoRestart"
    NO_FAILURE = "NoFailure"
    JOB_FAILED = "JobFailed"
    """Succeeded=False once the job failed (the Failed condition has the details)."""
    # Both kinds
    SPEC_VALID = "SpecValid"
    SPEC_INVALID = "SpecInvalid"
    SUSPENDED_BY_USER = "SuspendedByUser"
    NOT_SUSPENDED = "NotSuspended"
    RESUMED = "Resumed"
    NOT_FINISHED = "NotFinished"
    # HyperparamSweep
    TRIALS_RUNNING = "TrialsRunning"
    MAX_TRIALS_REACHED = "MaxTrialsReached"
    SEARCH_SPACE_EXHAUSTED = "SearchSpaceExhausted"
    GOAL_REACHED = "GoalReached"
    MAX_DURATION_REACHED = "MaxDurationReached"
    MAX_GPU_HOURS_REACHED = "MaxGpuHoursReached"
    MAX_COST_REACHED = "MaxCostReached"
    NO_PRICE_CONFIGURED = "NoPriceConfigured"
    """spec.budget.maxCost is set but the operator has no GPU price: the limit cannot apply."""
    MAX_FAILED_TRIALS_REACHED = "MaxFailedTrialsReached"
    NO_SUCCESSFUL_TRIAL = "NoSuccessfulTrial"
    EARLY_STOPPED = "EarlyStopped"
    NO_TRIALS_YET = "NoTrialsYet"
    SWEEP_FAILED = "SweepFailed"
    SWEEP_SUCCEEDED = "SweepSucceeded"
    FAILURES_WITHIN_LIMIT = "FailuresWithinLimit"
    NO_TARGET = "NoTarget"
    TARGET_NOT_REACHED = "TargetNotReached"
    NO_BUDGET = "NoBudget"
    WITHIN_BUDGET = "WithinBudget"
    STOPPING_TRIALS = "StoppingTrials"
    # A trial's outcome in the sweep's trial table, and the Events about trials
    NO_METRIC = "NoMetric"
    """The trial finished without reporting the objective metric."""
    TRIAL_DELETED = "TrialDeleted"
    """The trial's TrainingJob was deleted before it finished; it is not run again."""
    INVALID_TRIAL = "InvalidTrial"
    """The suggested point made an invalid TrainingJob; recorded Failed so the search moves on."""
    PROMOTED = "Promoted"
    """A paused trial was promoted to the next rung (ASHA) and resumes from its checkpoint."""
    TRIAL_RETENTION = "TrialRetention"
    TRIAL_CREATED = "TrialCreated"
    TRIAL_STOPPED = "TrialStopped"
    TRIAL_PROMOTED = "TrialPromoted"
    TRIAL_RESUMED = "TrialResumed"
    # spec.warmStart (issue 15)
    WARM_STARTED = "WarmStarted"
    """The sweep's first trials were suggested knowing another sweep's finished trials."""
    WARM_START_IGNORED = "WarmStartIgnored"
    """spec.warmStart names a sweep that is missing or searches another space; the search runs without it."""
    # TrackingReady (both kinds)
    TRACKING_SYNCED = "TrackingSynced"
    TRACKING_PENDING = "TrackingPending"
    """Tracking is configured and the first sync has not finished yet (or not since an operator restart)."""
    TRACKING_UNREACHABLE = "TrackingUnreachable"
    """The tracking server did not answer (connection refused, timeout, 5xx): retried with capped backoff."""
    TRACKING_REFUSED = "TrackingRefused"
    """The tracking server answered with an error (authentication, a refused value): retried less often."""
    TRACKING_CREDENTIALS_MISSING = "TrackingCredentialsMissing"
    """credentialsSecret does not exist or has none of the MLFLOW_TRACKING_* keys."""


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


# ---- setting conditions -------------------------------------------------------------------------------------
# One per type; `lastTransitionTime` moves only when status does. `kubectl wait`, dashboards and alerts read
# it as "since when is this so"; rewriting it on every reconcile would make every status patch a change and
# every condition look brand new. Times are cut to whole seconds because that is what the apiserver keeps
# (metav1.Time): a status read back must compare equal to the one written, or the I/O side would patch
# forever.

# The order conditions are written in, so that the same state always serializes the same way.
TRAININGJOB_CONDITION_ORDER: Final = tuple(TrainingJobConditionType)


def to_api_time(moment: datetime) -> datetime:
    """`moment` at the apiserver's precision (whole seconds); it must be timezone-aware."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no timezone; pass an aware datetime (e.g. datetime.now(UTC))")
    return moment.replace(microsecond=0)


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of `type_`, or None."""
    return next((condition for condition in conditions if condition.type == type_), None)


def is_condition_true(conditions: Iterable[Condition], type_: str) -> bool:
    """Whether a condition of `type_` exists with status True."""
    condition = find_condition(conditions, type_)
    return condition is not None and condition.status == ConditionStatus.TRUE


def make_condition(
    previous: Condition | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> Condition:
    """A condition of `type_`; it keeps `previous`'s lastTransitionTime when the status is unchanged."""
    unchanged = previous is not None and previous.status == status and previous.last_transition_time is not None
    transition = previous.last_transition_time if unchanged and previous is not None else to_api_time(now)
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """`conditions` with `type_` set (replaced in place, or appended); the others untouched."""
    updated = make_condition(
        find_condition(conditions, type_), type_, status, reason, message, now, observed_generation
    )
    out = [condition for condition in conditions if condition.type != type_]
    position = next((i for i, condition in enumerate(conditions) if condition.type == type_), len(out))
    out.insert(position, updated)
    return out


def merge_conditions(previous: Sequence[Condition], updates: Sequence[Condition], now: datetime) -> list[Condition]:
    """`updates` (their lastTransitionTime ignored) applied over `previous`, transitions kept as above.

    Conditions of types not in `updates` are kept as they were, so another writer's types survive.
    """
    out = list(previous)
    for update in updates:
        out = set_condition(
            out,
            update.type,
            update.status,
            update.reason or update.type,
            update.message or "",
            now,
            update.observed_generation,
        )
    return out


def ordered(conditions: Iterable[Condition], order: Sequence[str] = TRAININGJOB_CONDITION_ORDER) -> list[Condition]:
    """Conditions in `order`, unknown types after them by name: a stable list for stable patches."""
    rank = {type_: i for i, type_ in enumerate(order)}
    return sorted(conditions, key=lambda condition: (rank.get(condition.type, len(rank)), condition.type))


ConditionOutcome = tuple[bool, str, str]
"""(holds, reason, message): what one condition function decides (`status/job_conditions.py`,
`sweep/sweep_conditions.py`); `condition_from` makes the condition of it."""

CONDITION_MESSAGE_MAX_CHARS: Final = 32768
"""`Condition.message`'s limit (the CRD's maxLength): a longer message would make the status unwritable."""


def not_suspended(before: Condition | None, resumed_message: str) -> ConditionOutcome:
    """Suspended=False for either kind: Resumed right after a suspension (then that reason is kept, so the
    transition stays readable), NotSuspended when the object was never suspended."""
    if before is not None and before.status == ConditionStatus.TRUE:
        return False, Reason.RESUMED, resumed_message
    if before is not None and before.reason:
        return False, before.reason, before.message or ""
    return False, Reason.NOT_SUSPENDED, "spec.suspend is false"


SPEC_VALID: Final[ConditionOutcome] = (False, Reason.SPEC_VALID, "the spec is valid")
"""InvalidSpec of an object whose spec parsed (an invalid one gets `with_invalid_spec` instead)."""


def condition_from(
    previous: Sequence[Condition],
    type_: str,
    holds: bool,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> Condition:
    """The condition `type_` (True when `holds`), transition time kept from `previous` as above."""
    status = ConditionStatus.TRUE if holds else ConditionStatus.FALSE
    return make_condition(
        find_condition(previous, type_),
        type_,
        status,
        reason,
        message[:CONDITION_MESSAGE_MAX_CHARS],
        now,
        observed_generation,
    )


class _StatusWithConditions(Protocol):
    phase: Any
    conditions: list[Condition]

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self: ...


StatusT = TypeVar("StatusT", bound=_StatusWithConditions)


def with_invalid_spec(
    status: StatusT,
    problems: Sequence[str],
    now: datetime,
    observed_generation: int | None,
    order: Sequence[str],
    pending: str,
) -> StatusT:
    """`status` with InvalidSpec True listing every problem (both kinds share the type name), everything
    else kept (a phase only where there was none: `pending`). Not terminal: fixing the spec (a new
    generation, an event of its own) lets the object proceed."""
    invalid = condition_from(
        status.conditions,
        TrainingJobConditionType.INVALID_SPEC,
        True,
        Reason.SPEC_INVALID,
        "; ".join(problems) or "the spec is invalid",
        now,
        observed_generation,
    )
    conditions = ordered([c for c in status.conditions if c.type != invalid.type] + [invalid], order)
    update = {"observed_generation": observed_generation, "phase": status.phase or pending, "conditions": conditions}
    return status.model_copy(update=update)


# ---- Events ---------------------------------------------------------------------------------------------------

EventType = Literal["Normal", "Warning"]


class StatusEvent(NamedTuple):
    """One Kubernetes Event to post on the object whose status changed (or about what was done to it)."""

    type: EventType
    reason: str
    message: str
