"""When and why a sweep ends: the goal reached, too many failures, the budget used up, or every trial done.

Decided afresh on every reconcile from the trials alone (so raising maxTrials or maxFailedTrials of a
finished sweep lets it go on); the order of the rules is `sweep_derive`'s module documentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from trainsmart.api import HyperparamSweep, HyperparamSweepStatus, TrialPhase
from trainsmart.api.conditions import Reason, to_api_time
from trainsmart.api.sweep_spec import AlgorithmName, Goal
from trainsmart.settings import DEFAULT_CURRENCY
from trainsmart.status.cost import format_money
from trainsmart.sweep.trial_table import TrialView


@dataclass(frozen=True)
class Ending:
    """Why the sweep ends (or is ending): the condition reason and a message."""

    reason: str
    message: str

    @property
    def failed(self) -> bool:
        return self.reason == Reason.MAX_FAILED_TRIALS_REACHED

    @property
    def stops_trials(self) -> bool:
        """Goal, failures and budget end running trials; a complete sweep has none left."""
        return self.reason not in (Reason.MAX_TRIALS_REACHED, Reason.SEARCH_SPACE_EXHAUSTED)


def reaches(goal: Goal, value: float, target: float) -> bool:
    return value >= target if goal == Goal.MAXIMIZE else value <= target


def best_trial(sweep: HyperparamSweep, trials: Sequence[TrialView], *, finished_only: bool = True) -> TrialView | None:
    """The trial with the best value (the lowest number wins a tie); by default finished trials only."""
    objective = sweep.spec.objective
    best: TrialView | None = None
    for trial in trials:
        if trial.value is None or (
            finished_only and trial.phase not in (TrialPhase.SUCCEEDED, TrialPhase.EARLY_STOPPED)
        ):
            continue
        if best is None or best.value is None or objective.is_better(trial.value, best.value):
            best = trial
    return best


def own_failures(trials: Sequence[TrialView]) -> list[TrialView]:
    """Trials that failed on their own: a trial deleted by hand is not the trial's fault."""
    return [trial for trial in trials if trial.phase == TrialPhase.FAILED and trial.reason != Reason.TRIAL_DELETED]


def _describe_failures(failures: Sequence[TrialView], limit: int) -> str:
    shown = [f"{t.name} ({t.reason or 'Failed'}: {t.message or 'no message'})"[:200] for t in failures[:5]]
    more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
    return f"{len(failures)} trials failed, more than maxFailedTrials ({limit}): " + "; ".join(shown) + more


def sweep_start(trials: Sequence[TrialView], previous: HyperparamSweepStatus) -> datetime | None:
    if previous.start_time is not None:
        return previous.start_time
    times = [trial.start_time for trial in trials if trial.start_time is not None]
    return to_api_time(min(times)) if times else None


def budget_ending(
    sweep: HyperparamSweep,
    start: datetime | None,
    gpu_seconds: float,
    now: datetime,
    cost: float | None = None,
    currency: str | None = None,
) -> Ending | None:
    """maxDuration, then maxGpuHours, then maxCost (only with an estimated cost: a price is configured)."""
    budget = sweep.spec.budget
    if budget is None:
        return None
    limit = budget.max_duration_seconds
    if limit is not None and start is not None and now >= start + timedelta(seconds=limit):
        return Ending(
            Reason.MAX_DURATION_REACHED, f"maxDuration {budget.max_duration} has passed since the first trial"
        )
    if budget.max_gpu_hours is not None and gpu_seconds >= budget.max_gpu_hours * 3600:
        used = gpu_seconds / 3600
        return Ending(
            Reason.MAX_GPU_HOURS_REACHED, f"{used:.3g} GPU-hours used of maxGpuHours {budget.max_gpu_hours:g}"
        )
    if budget.max_cost is not None and cost is not None and cost >= budget.max_cost:
        code = currency or DEFAULT_CURRENCY
        return Ending(
            Reason.MAX_COST_REACHED,
            f"{format_money(cost, code)} estimated cost of maxCost {format_money(budget.max_cost, code)}",
        )
    return None


def sweep_ending(
    sweep: HyperparamSweep,
    trials: Sequence[TrialView],
    start: datetime | None,
    gpu_seconds: float,
    now: datetime,
    promotions_pending: bool,
    *,
    cost: float | None = None,
    currency: str | None = None,
) -> Ending | None:
    """Why the sweep ends now, if it does (the order is documented at the top of the module)."""
    spec = sweep.spec
    objective = spec.objective
    if objective.target is not None:
        leader = best_trial(sweep, trials, finished_only=False)
        if leader is not None and leader.value is not None and reaches(objective.goal, leader.value, objective.target):
            return Ending(
                Reason.GOAL_REACHED,
                f"{leader.name} reached {objective.metric}={leader.value:.6g} (target {objective.target:g})",
            )
    failures = own_failures(trials)
    if spec.max_failed_trials is not None and len(failures) > spec.max_failed_trials:
        return Ending(Reason.MAX_FAILED_TRIALS_REACHED, _describe_failures(failures, spec.max_failed_trials))
    budget = budget_ending(sweep, start, gpu_seconds, now, cost, currency)
    if budget is not None:
        return budget
    planned = spec.planned_trials()
    settled = all(trial.finished for trial in trials) and not promotions_pending
    if len(trials) >= planned and settled:
        grid = spec.algorithm.name == AlgorithmName.GRID and (spec.max_trials is None or planned < spec.max_trials)
        if grid:
            return Ending(Reason.SEARCH_SPACE_EXHAUSTED, f"all {planned} grid points were tried")
        return Ending(Reason.MAX_TRIALS_REACHED, f"all {planned} trials (maxTrials) have finished")
    return None
