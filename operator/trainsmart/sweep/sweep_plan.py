"""The sweep's reconcile decision: from the sweep, its trials and the freshly derived status, what to do now.

Pure, recomputed from scratch every reconcile, so a half-carried-out plan is completed by the next one.
Trials are created with deterministic names (`trial_name(sweep, number)`) and create-if-absent, so a plan
made twice (an operator restart between deriving and acting) never duplicates a trial: the second create
of `<sweep>-<n>` finds it exists.

* Ending (goal reached, too many failures, budget used up): stop every trial that is active or held by
  the sweep's suspension, with the ending's reason; create and resume nothing.
* spec.suspend: hold every active trial (suspend without a `stopped` reason); create nothing.
* Otherwise: resume held trials; stop what the early-stopping rule stops; promote (resume) paused trials
  it promotes; then fill the remaining parallelTrials slots with new trials from `suggest`, never beyond
  the planned number (maxTrials, the grid's size). Promotions go before new trials, as in ASHA.
* trialRetention: delete finished trials whose result the stored status already records (keepBest keeps
  the `count` best, deleteFinished keeps none). While an early-stopping rule is on, deletions wait for the
  end of the sweep: the rule compares learning curves, which live in the trials' own status.

Stopping is graceful: the trial TrainingJob's `spec.suspend` is set (the trainer checkpoints on SIGTERM),
which also lets a promoted trial resume from its checkpoint rather than retrain.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from trainsmart.api import HyperparamSweep, HyperparamSweepStatus, RetentionPolicy, SweepPhase, TrialPhase
from trainsmart.api.common import ParameterValue
from trainsmart.api.conditions import FINISHED_TRIAL_PHASES, Reason
from trainsmart.api.sweep_spec import EarlyStoppingRule, Goal
from trainsmart.sweep import TrialPoint, suggest
from trainsmart.sweep.sweep_derive import sweep_seed
from trainsmart.sweep.sweep_ending import best_trial, sweep_ending
from trainsmart.sweep.trial_stopping import stop_decision
from trainsmart.sweep.trial_table import TrialView, trial_history, view_trials


@dataclass(frozen=True)
class NewTrial:
    number: int
    parameters: Mapping[str, ParameterValue]


@dataclass(frozen=True)
class TrialAction:
    """A trial to suspend or resume, and why (reason None: held by the sweep's own suspension)."""

    name: str
    uid: str | None
    reason: str | None
    message: str = ""


@dataclass(frozen=True)
class SweepPlan:
    """What the controller should do now; safe in any order once the status is patched."""

    create: tuple[NewTrial, ...] = ()
    suspend: tuple[TrialAction, ...] = ()
    resume: tuple[TrialAction, ...] = ()
    delete: tuple[TrialAction, ...] = ()
    requeue_after: float | None = None
    """Seconds until the duration budget runs out: reconcile then, even without any event."""
    terminal: bool = False


def _retained(sweep: HyperparamSweep, trials: Sequence[TrialView], status: HyperparamSweepStatus) -> list[TrialView]:
    """Finished, existing trials that trialRetention deletes now (only those recorded as finished)."""
    retention = sweep.spec.trial_retention
    if retention.policy == RetentionPolicy.KEEP_ALL:
        return []
    finished = status.phase in (SweepPhase.SUCCEEDED, SweepPhase.FAILED)
    if sweep.spec.early_stopping.rule != EarlyStoppingRule.NONE and not finished:
        return []
    recorded = {record.name for record in status.trials if record.phase in FINISHED_TRIAL_PHASES}
    candidates = [trial for trial in trials if trial.exists and trial.finished and trial.name in recorded]
    if retention.policy == RetentionPolicy.KEEP_BEST:
        keep = {trial.name for trial in _ranked(sweep, trials)[: retention.count or 0]}
        return [trial for trial in candidates if trial.name not in keep]
    return candidates


def _ranked(sweep: HyperparamSweep, trials: Sequence[TrialView]) -> list[TrialView]:
    """Finished trials with a value, best first (ties: lower number)."""
    scored = [t for t in trials if t.value is not None and t.phase in (TrialPhase.SUCCEEDED, TrialPhase.EARLY_STOPPED)]
    sign = -1.0 if sweep.spec.objective.goal == Goal.MAXIMIZE else 1.0
    return sorted(scored, key=lambda t: (sign * (t.value or 0.0), t.number))


def _duration_requeue(sweep: HyperparamSweep, status: HyperparamSweepStatus, now: datetime) -> float | None:
    budget = sweep.spec.budget
    limit = budget.max_duration_seconds if budget is not None else None
    if limit is None or status.start_time is None:
        return None
    return max((status.start_time + timedelta(seconds=limit) - now).total_seconds(), 0.0)


def _action(trial: TrialView, reason: str | None, message: str = "") -> TrialAction:
    return TrialAction(trial.name, trial.uid, reason, message)


def plan_sweep(
    sweep: HyperparamSweep,
    trial_jobs: Sequence[Mapping[str, Any]],
    status: HyperparamSweepStatus,
    now: datetime,
    warm: Sequence[TrialPoint] = (),
) -> SweepPlan:
    """The actions that move the sweep's trials toward what `status` (just derived) says; `warm`: a warm
    start's finished trials, which the suggester learns from (see `sweep/warm_start.py`)."""
    trials = view_trials(sweep, trial_jobs, status.trials)
    live = [trial for trial in trials if trial.exists]
    delete = tuple(_action(trial, Reason.TRIAL_RETENTION) for trial in _retained(sweep, trials, status))
    terminal = status.phase in (SweepPhase.SUCCEEDED, SweepPhase.FAILED)
    ending = sweep_ending(
        sweep,
        trials,
        status.start_time,
        status.gpu_seconds,
        now,
        promotions_pending=False,
        cost=status.estimated_cost,
        currency=status.cost_currency,
    )
    if ending is not None and ending.stops_trials:
        ended = [t for t in live if t.active or t.phase == TrialPhase.SUSPENDED]
        return SweepPlan(
            suspend=tuple(_action(t, ending.reason, ending.message) for t in ended), delete=delete, terminal=terminal
        )
    if sweep.spec.suspend:
        return SweepPlan(suspend=tuple(_action(t, None) for t in live if t.active), delete=delete)
    spec = sweep.spec
    planned = spec.planned_trials()
    held = [t for t in live if t.phase == TrialPhase.SUSPENDED]
    resume = [_action(t, Reason.RESUMED, "the sweep resumed") for t in held]
    decision = stop_decision(sweep, trials, draining=len(trials) >= planned)
    stop = [_action(t, Reason.EARLY_STOPPED, decision.stop[t.name]) for t in live if t.name in decision.stop]
    stopped = {action.name for action in stop}
    resume = [action for action in resume if action.name not in stopped]
    running = sum(1 for t in live if t.active and t.name not in stopped) + len(resume)
    slots = max(spec.parallel_trials - running, 0)
    paused = [t for t in live if t.name in decision.promote and t.phase == TrialPhase.EARLY_STOPPED]
    promote = [_action(t, Reason.PROMOTED, decision.promote[t.name]) for t in paused[:slots]]
    slots -= len(promote)
    create: tuple[NewTrial, ...] = ()
    wanted = min(slots, planned - len(trials))
    if wanted > 0:
        history = trial_history(trials)
        first = max((point.number for point in history), default=-1) + 1
        points = suggest(spec, history, wanted, sweep_seed(sweep), warm)
        create = tuple(NewTrial(first + i, point) for i, point in enumerate(points))
    return SweepPlan(
        create=create,
        suspend=tuple(stop),
        resume=tuple(resume + promote),
        delete=delete,
        requeue_after=_duration_requeue(sweep, status, now),
        terminal=terminal,
    )


__all__ = ["NewTrial", "SweepPlan", "TrialAction", "best_trial", "plan_sweep"]
