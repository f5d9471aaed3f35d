"""The HyperparamSweep status, derived from the sweep, its trial TrainingJobs and the stored status.

Pure and deterministic, like the TrainingJob's: the same inputs give an equal status (times at whole
seconds, conditions in a fixed order, each with a reason and a message), so the controller patches only
on change and a reconcile is safe to repeat. How the controller uses it, per reconcile:

    status = derive_sweep_status(sweep, trial_jobs, sweep.status, now)
    plan = plan_sweep(sweep, trial_jobs, status, now)          # status/sweep_plan.py
    patch status if it changed  ->  only then act on the plan

The trial table (`status.trials`) is the sweep's memory of trials whose TrainingJobs are gone: a row is
written for every trial as soon as it is seen, and the plan deletes a finished trial (trialRetention) only
after the status that records its result has been stored. The suggester's history is that table joined
with the live children, so a deleted trial is accounted for (its result stays in the history), never re-run.
A trial deleted by someone else before it finished becomes Failed (TrialDeleted) and is not re-run either.

The end of a sweep, decided afresh each time (so raising maxTrials or maxFailedTrials of a finished sweep
lets it go on), first match wins:
1. GoalReached: some trial's objective reached `objective.target`;
2. Failed: more than `maxFailedTrials` trials failed on their own (NoMetric included, TrialDeleted not);
3. BudgetExhausted: `maxDuration` since the first trial, or `maxGpuHours` over all trials, is used up;
4. complete: every planned trial was created and has finished, with no ASHA promotion pending.
Cases 1-3 stop the trials still running (gracefully, see sweep_plan); the phase turns Succeeded (a best trial
exists) or Failed (none, or case 2) once none is active any more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from trainsmart.api import (
    BestTrial,
    Condition,
    ConditionStatus,
    HyperparamSweep,
    HyperparamSweepStatus,
    Reason,
    SweepConditionType,
    SweepPhase,
    TrialCounts,
    TrialPhase,
)
from trainsmart.api.sweep import AlgorithmName, Goal
from trainsmart.status.conditions import find_condition, make_condition, ordered, to_api_time
from trainsmart.status.sweep_trials import (
    NO_METRIC,
    TRIAL_DELETED,
    TrialView,
    stop_decision,
    to_record,
    view_trials,
)

Type = SweepConditionType
SWEEP_CONDITION_ORDER: Final = (
    Type.RUNNING,
    Type.SUCCEEDED,
    Type.FAILED,
    Type.GOAL_REACHED,
    Type.BUDGET_EXHAUSTED,
    Type.SUSPENDED,
    Type.INVALID_SPEC,
)
# Reasons of the False side of conditions (the True sides use trainsmart.api.Reason).
NO_TRIALS_YET: Final = "NoTrialsYet"
NOT_FINISHED: Final = "NotFinished"
SWEEP_FAILED: Final = "SweepFailed"
SWEEP_SUCCEEDED: Final = "SweepSucceeded"
FAILURES_WITHIN_LIMIT: Final = "FailuresWithinLimit"
NO_TARGET: Final = "NoTarget"
TARGET_NOT_REACHED: Final = "TargetNotReached"
NO_BUDGET: Final = "NoBudget"
WITHIN_BUDGET: Final = "WithinBudget"
NOT_SUSPENDED: Final = "NotSuspended"
STOPPING_TRIALS: Final = "StoppingTrials"


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


def sweep_seed(sweep: HyperparamSweep) -> int:
    """spec.algorithm.seed, else one derived from metadata.uid: stable across restarts, distinct per sweep."""
    if sweep.spec.algorithm.seed is not None:
        return sweep.spec.algorithm.seed
    uid = str(sweep.metadata.get("uid", ""))
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "big")


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
    return [trial for trial in trials if trial.phase == TrialPhase.FAILED and trial.reason != TRIAL_DELETED]


def _describe_failures(failures: Sequence[TrialView], limit: int) -> str:
    shown = [f"{t.name} ({t.reason or 'Failed'}: {t.message or 'no message'})"[:200] for t in failures[:5]]
    more = f" and {len(failures) - 5} more" if len(failures) > 5 else ""
    return f"{len(failures)} trials failed, more than maxFailedTrials ({limit}): " + "; ".join(shown) + more


def sweep_start(trials: Sequence[TrialView], previous: HyperparamSweepStatus) -> datetime | None:
    if previous.start_time is not None:
        return previous.start_time
    times = [trial.start_time for trial in trials if trial.start_time is not None]
    return to_api_time(min(times)) if times else None


def budget_ending(sweep: HyperparamSweep, start: datetime | None, gpu_seconds: float, now: datetime) -> Ending | None:
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
    return None


def promotions_pending(sweep: HyperparamSweep, trials: Sequence[TrialView]) -> bool:
    """Whether the early-stopping rule would resume a paused trial now: a sweep whose last trials all
    paused at a rung has not ended while one of them is to go on."""
    if sweep.spec.suspend or len(trials) < sweep.spec.planned_trials():
        return False
    return bool(stop_decision(sweep, trials, draining=True).promote)


def sweep_ending(
    sweep: HyperparamSweep,
    trials: Sequence[TrialView],
    start: datetime | None,
    gpu_seconds: float,
    now: datetime,
    promotions_pending: bool,
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
    budget = budget_ending(sweep, start, gpu_seconds, now)
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


def _counts(trials: Sequence[TrialView], planned: int) -> TrialCounts:
    def count(*phases: TrialPhase) -> int:
        return sum(1 for trial in trials if trial.phase in phases)

    succeeded, failed, stopped = count(TrialPhase.SUCCEEDED), count(TrialPhase.FAILED), count(TrialPhase.EARLY_STOPPED)
    return TrialCounts(
        total=len(trials),
        pending=count(TrialPhase.PENDING),
        running=count(TrialPhase.RUNNING, TrialPhase.RESTARTING),
        succeeded=succeeded,
        failed=failed,
        early_stopped=stopped,
        finished=succeeded + failed + stopped,
        planned=planned,
    )


def _phase(
    sweep: HyperparamSweep, trials: Sequence[TrialView], ending: Ending | None, best: TrialView | None
) -> SweepPhase:
    if ending is not None and not any(trial.active for trial in trials):
        return SweepPhase.FAILED if ending.failed or best is None else SweepPhase.SUCCEEDED
    if sweep.spec.suspend:
        return SweepPhase.SUSPENDED
    return SweepPhase.RUNNING if trials else SweepPhase.PENDING


def _progress(counts: TrialCounts) -> str:
    return f"{counts.running} running, {counts.pending} pending, {counts.finished} of {counts.planned} finished"


def _conditions(
    sweep: HyperparamSweep,
    previous: HyperparamSweepStatus,
    phase: SweepPhase,
    ending: Ending | None,
    counts: TrialCounts,
    best: TrialView | None,
    start: datetime | None,
    gpu_seconds: float,
    now: datetime,
) -> list[Condition]:
    generation = sweep.metadata.get("generation")
    generation = generation if isinstance(generation, int) else None
    spec = sweep.spec
    out: list[Condition] = []

    def put(type_: Type, holds: bool, reason: str, message: str) -> None:
        status = ConditionStatus.TRUE if holds else ConditionStatus.FALSE
        before = find_condition(previous.conditions, type_)
        out.append(make_condition(before, type_, status, reason, message, now, generation))

    finished = phase in (SweepPhase.SUCCEEDED, SweepPhase.FAILED)
    best_text = (
        f"; best {best.name} {spec.objective.metric}={best.value:.6g}" if best and best.value is not None else ""
    )
    if phase == SweepPhase.RUNNING and ending is not None:
        put(
            Type.RUNNING,
            True,
            STOPPING_TRIALS,
            f"ending ({ending.reason}): stopping the running trials; {_progress(counts)}",
        )
    elif phase == SweepPhase.RUNNING:
        put(Type.RUNNING, True, Reason.TRIALS_RUNNING, _progress(counts) + best_text)
    elif phase == SweepPhase.SUSPENDED:
        put(Type.RUNNING, False, Reason.SUSPENDED_BY_USER, "spec.suspend is true: trials are suspended, none start")
    elif finished and ending is not None:
        put(Type.RUNNING, False, ending.reason, ending.message)
    else:
        put(Type.RUNNING, False, NO_TRIALS_YET, "no trial has been created yet")

    if phase == SweepPhase.SUCCEEDED and ending is not None:
        put(Type.SUCCEEDED, True, ending.reason, ending.message + best_text)
    elif phase == SweepPhase.FAILED:
        put(Type.SUCCEEDED, False, SWEEP_FAILED, "the sweep failed; the Failed condition says why")
    else:
        put(Type.SUCCEEDED, False, NOT_FINISHED, _progress(counts))

    if phase == SweepPhase.FAILED and ending is not None and ending.failed:
        put(Type.FAILED, True, ending.reason, ending.message)
    elif phase == SweepPhase.FAILED and ending is not None:
        put(
            Type.FAILED,
            True,
            Reason.NO_SUCCESSFUL_TRIAL,
            f"{ending.message}, but no trial reported {spec.objective.metric}",
        )
    else:
        limit = "no limit" if spec.max_failed_trials is None else f"maxFailedTrials {spec.max_failed_trials}"
        put(Type.FAILED, False, FAILURES_WITHIN_LIMIT, f"{counts.failed} trials failed ({limit})")

    if ending is not None and ending.reason == Reason.GOAL_REACHED:
        put(Type.GOAL_REACHED, True, ending.reason, ending.message)
    elif spec.objective.target is None:
        put(Type.GOAL_REACHED, False, NO_TARGET, "objective.target is not set")
    else:
        put(Type.GOAL_REACHED, False, TARGET_NOT_REACHED, f"target {spec.objective.target:g} not reached" + best_text)

    if ending is not None and ending.reason in (Reason.MAX_DURATION_REACHED, Reason.MAX_GPU_HOURS_REACHED):
        put(Type.BUDGET_EXHAUSTED, True, ending.reason, ending.message)
    elif spec.budget is None:
        put(Type.BUDGET_EXHAUSTED, False, NO_BUDGET, "spec.budget is not set")
    else:
        elapsed = (now - start).total_seconds() if start is not None else 0.0
        put(
            Type.BUDGET_EXHAUSTED,
            False,
            WITHIN_BUDGET,
            f"{elapsed:.0f} s elapsed, {gpu_seconds / 3600:.3g} GPU-hours used",
        )

    before = find_condition(previous.conditions, Type.SUSPENDED)
    if phase == SweepPhase.SUSPENDED:
        put(Type.SUSPENDED, True, Reason.SUSPENDED_BY_USER, "spec.suspend is true: running trials were suspended")
    elif before is not None and before.status == ConditionStatus.TRUE:
        put(Type.SUSPENDED, False, Reason.RESUMED, "spec.suspend is false: suspended trials resume")
    elif before is not None and before.reason:
        put(Type.SUSPENDED, False, before.reason, before.message or "")
    else:
        put(Type.SUSPENDED, False, NOT_SUSPENDED, "spec.suspend is false")

    put(Type.INVALID_SPEC, False, Reason.SPEC_VALID, "the spec is valid")
    return out


def derive_sweep_status(
    sweep: HyperparamSweep,
    trial_jobs: Sequence[Mapping[str, Any]],
    previous_status: HyperparamSweepStatus | None,
    now: datetime,
) -> HyperparamSweepStatus:
    """The status to write for `sweep`, given its trial TrainingJobs (API dicts) and the stored status."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    previous = previous_status if previous_status is not None else HyperparamSweepStatus()
    trials = view_trials(sweep, trial_jobs, previous.trials)
    gpu_seconds = round(sum(trial.gpu_seconds for trial in trials), 1)
    start = sweep_start(trials, previous)
    ending = sweep_ending(sweep, trials, start, gpu_seconds, now, promotions_pending(sweep, trials))
    best = best_trial(sweep, trials)
    phase = _phase(sweep, trials, ending, best)
    counts = _counts(trials, sweep.spec.planned_trials())
    finished = phase in (SweepPhase.SUCCEEDED, SweepPhase.FAILED)
    generation = sweep.metadata.get("generation")
    return HyperparamSweepStatus(
        observed_generation=generation if isinstance(generation, int) else None,
        phase=phase,
        conditions=ordered(
            _conditions(sweep, previous, phase, ending, counts, best, start, gpu_seconds, now), SWEEP_CONDITION_ORDER
        ),
        start_time=start,
        completion_time=(previous.completion_time or to_api_time(now)) if finished else None,
        seed=sweep_seed(sweep),
        counts=counts,
        best_trial=_best_record(best),
        trials=[to_record(trial, deleted=not trial.exists) for trial in trials],
        gpu_seconds=gpu_seconds,
    )


def _best_record(best: TrialView | None) -> BestTrial | None:
    if best is None or best.value is None:
        return None
    return BestTrial(name=best.name, parameters=dict(best.parameters), metric_value=best.value, epoch=best.value_epoch)


def invalid_sweep_status(
    previous: HyperparamSweepStatus | None, generation: int | None, problems: Sequence[str], now: datetime
) -> HyperparamSweepStatus:
    """InvalidSpec True with every problem; the rest of the stored status kept. Not terminal: fixing the
    spec (a new generation, which is an event of its own) lets the sweep go on."""
    status = previous if previous is not None else HyperparamSweepStatus()
    condition = make_condition(
        find_condition(status.conditions, Type.INVALID_SPEC),
        Type.INVALID_SPEC,
        ConditionStatus.TRUE,
        Reason.SPEC_INVALID,
        "; ".join(problems)[:32768] or "the spec is invalid",
        now,
        generation,
    )
    conditions = [c for c in status.conditions if c.type != Type.INVALID_SPEC] + [condition]
    return status.model_copy(
        update={
            "observed_generation": generation,
            "phase": status.phase or SweepPhase.PENDING,
            "conditions": ordered(conditions, SWEEP_CONDITION_ORDER),
        }
    )


__all__ = ["NO_METRIC", "Ending", "derive_sweep_status", "invalid_sweep_status", "sweep_ending", "sweep_seed"]
