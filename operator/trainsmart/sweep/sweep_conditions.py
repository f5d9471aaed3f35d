"""The HyperparamSweep's conditions: one small function per condition type, from the sweep's phase and ending.

Like the TrainingJob's (`status/job_conditions.py`): each function answers one question as (holds,
reason, message); `sweep_conditions` writes them in `SWEEP_CONDITION_ORDER`, keeping each one's
lastTransitionTime while its status is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from trainsmart.api import (
    Condition,
    HyperparamSweep,
    HyperparamSweepStatus,
    Reason,
    SweepConditionType,
    SweepPhase,
    TrialCounts,
)
from trainsmart.api.conditions import SPEC_VALID, condition_from, find_condition, not_suspended
from trainsmart.api.conditions import ConditionOutcome as Outcome
from trainsmart.sweep.sweep_ending import Ending
from trainsmart.sweep.trial_table import TrialView

Type = SweepConditionType
BUDGET_REASONS: Final = frozenset({Reason.MAX_DURATION_REACHED, Reason.MAX_GPU_HOURS_REACHED, Reason.MAX_COST_REACHED})
"""The endings that make BudgetExhausted True."""


@dataclass(frozen=True)
class SweepFacts:
    """What the conditions are decided from."""

    sweep: HyperparamSweep
    previous: HyperparamSweepStatus
    phase: SweepPhase
    ending: Ending | None
    counts: TrialCounts
    best: TrialView | None
    start: datetime | None
    gpu_seconds: float
    now: datetime
    cost_headline: str | None = None
    """The estimated cost so far as shown (None: not estimated)."""
    priced: bool = True
    """The operator has a GPU price configured (maxCost can apply)."""

    @property
    def finished(self) -> bool:
        return self.phase in (SweepPhase.SUCCEEDED, SweepPhase.FAILED)

    @property
    def best_text(self) -> str:
        """`; best <trial> <metric>=<value>` once a trial has a value, for the messages."""
        best = self.best
        if best is None or best.value is None:
            return ""
        return f"; best {best.name} {self.sweep.spec.objective.metric}={best.value:.6g}"


def progress_text(counts: TrialCounts) -> str:
    return f"{counts.running} running, {counts.pending} pending, {counts.finished} of {counts.planned} finished"


def running(facts: SweepFacts) -> Outcome:
    ending, progress = facts.ending, progress_text(facts.counts)
    if facts.phase == SweepPhase.RUNNING and ending is not None:
        return True, Reason.STOPPING_TRIALS, f"ending ({ending.reason}): stopping the running trials; {progress}"
    if facts.phase == SweepPhase.RUNNING:
        return True, Reason.TRIALS_RUNNING, progress + facts.best_text
    if facts.phase == SweepPhase.SUSPENDED:
        return False, Reason.SUSPENDED_BY_USER, "spec.suspend is true: trials are suspended, none start"
    if facts.finished and ending is not None:
        return False, ending.reason, ending.message
    return False, Reason.NO_TRIALS_YET, "no trial has been created yet"


def succeeded(facts: SweepFacts) -> Outcome:
    if facts.phase == SweepPhase.SUCCEEDED and facts.ending is not None:
        return True, facts.ending.reason, facts.ending.message + facts.best_text
    if facts.phase == SweepPhase.FAILED:
        return False, Reason.SWEEP_FAILED, "the sweep failed; the Failed condition says why"
    return False, Reason.NOT_FINISHED, progress_text(facts.counts)


def failed(facts: SweepFacts) -> Outcome:
    """True with the failure limit's reason, or NoSuccessfulTrial when the sweep ended without a value."""
    spec, ending = facts.sweep.spec, facts.ending
    if facts.phase == SweepPhase.FAILED and ending is not None and ending.failed:
        return True, ending.reason, ending.message
    if facts.phase == SweepPhase.FAILED and ending is not None:
        return True, Reason.NO_SUCCESSFUL_TRIAL, f"{ending.message}, but no trial reported {spec.objective.metric}"
    limit = "no limit" if spec.max_failed_trials is None else f"maxFailedTrials {spec.max_failed_trials}"
    return False, Reason.FAILURES_WITHIN_LIMIT, f"{facts.counts.failed} trials failed ({limit})"


def goal_reached(facts: SweepFacts) -> Outcome:
    target = facts.sweep.spec.objective.target
    if facts.ending is not None and facts.ending.reason == Reason.GOAL_REACHED:
        return True, facts.ending.reason, facts.ending.message
    if target is None:
        return False, Reason.NO_TARGET, "objective.target is not set"
    return False, Reason.TARGET_NOT_REACHED, f"target {target:g} not reached" + facts.best_text


def budget_exhausted(facts: SweepFacts) -> Outcome:
    ending, budget = facts.ending, facts.sweep.spec.budget
    if ending is not None and ending.reason in BUDGET_REASONS:
        return True, ending.reason, ending.message
    if budget is None:
        return False, Reason.NO_BUDGET, "spec.budget is not set"
    elapsed = (facts.now - facts.start).total_seconds() if facts.start is not None else 0.0
    used = f"{elapsed:.0f} s elapsed, {facts.gpu_seconds / 3600:.3g} GPU-hours used"
    if budget.max_cost is not None and not facts.priced:
        return (
            False,
            Reason.NO_PRICE_CONFIGURED,
            "maxCost is set but the operator has no GPU price configured (chart value cost.pricePerGpuHour): "
            f"maxCost does not apply; {used}",
        )
    if facts.cost_headline is not None:
        used += f", {facts.cost_headline} estimated cost"
    return False, Reason.WITHIN_BUDGET, used


def suspended(facts: SweepFacts) -> Outcome:
    """True while suspended; False with Resumed right after, then it keeps that reason."""
    if facts.phase == SweepPhase.SUSPENDED:
        return True, Reason.SUSPENDED_BY_USER, "spec.suspend is true: running trials were suspended"
    before = find_condition(facts.previous.conditions, Type.SUSPENDED)
    return not_suspended(before, "spec.suspend is false: suspended trials resume")


def invalid_spec(_: SweepFacts) -> Outcome:
    """A sweep whose spec parses is valid (an invalid one gets `invalid_sweep_status` instead)."""
    return SPEC_VALID


CONDITIONS: Final[dict[Type, Callable[[SweepFacts], Outcome]]] = {
    Type.RUNNING: running,
    Type.SUCCEEDED: succeeded,
    Type.FAILED: failed,
    Type.GOAL_REACHED: goal_reached,
    Type.BUDGET_EXHAUSTED: budget_exhausted,
    Type.SUSPENDED: suspended,
    Type.INVALID_SPEC: invalid_spec,
}
"""Every condition type a sweep writes, in the order they are written, with the function that decides it."""
SWEEP_CONDITION_ORDER: Final = tuple(CONDITIONS)


def sweep_conditions(facts: SweepFacts) -> list[Condition]:
    """All sweep conditions, in `SWEEP_CONDITION_ORDER`, each with a reason and a message."""
    generation = facts.sweep.metadata.get("generation")
    observed = generation if isinstance(generation, int) else None
    previous = facts.previous.conditions
    return [
        condition_from(previous, type_, *decide(facts), facts.now, observed) for type_, decide in CONDITIONS.items()
    ]
