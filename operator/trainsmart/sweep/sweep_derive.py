"""The HyperparamSweep status, derived from the sweep, its trial TrainingJobs and the stored status.

Pure and deterministic, like the TrainingJob's: the same inputs give an equal status (times at whole
seconds, conditions in a fixed order, each with a reason and a message), so the controller patches only
on change and a reconcile is safe to repeat. How the controller uses it, per reconcile:

    status = derive_sweep_status(sweep, trial_jobs, sweep.status, now)
    plan = plan_sweep(sweep, trial_jobs, status, now)          # sweep/sweep_plan.py
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
3. BudgetExhausted: `maxDuration` since the first trial, or `maxGpuHours` or `maxCost` (the estimated cost,
   only where the operator has a GPU price; without one the BudgetExhausted condition says so) over all
   trials, is used up;
4. complete: every planned trial was created and has finished, with no ASHA promotion pending.
Cases 1-3 stop the trials still running (gracefully, see sweep_plan); the phase turns Succeeded (a best trial
exists) or Failed (none, or case 2) once none is active any more.

estimatedCost is the sum of the trials' own (each TrainingJob's, kept in the table once it is deleted),
in the currency of the operator's price; bestTrial.headline and costHeadline are what `kubectl get` prints.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from trainsmart.api import BestTrial, HyperparamSweep, HyperparamSweepStatus, SweepPhase, TrialCounts, TrialPhase
from trainsmart.api.conditions import to_api_time, with_invalid_spec
from trainsmart.settings import DEFAULT_CURRENCY, GpuPricing
from trainsmart.status.cost import COST_DECIMALS, format_money
from trainsmart.status.headlines import metric_headline
from trainsmart.sweep.multiobjective import pareto_front_status
from trainsmart.sweep.sweep_conditions import SWEEP_CONDITION_ORDER, SweepFacts, sweep_conditions
from trainsmart.sweep.sweep_ending import Ending, best_trial, sweep_ending, sweep_start
from trainsmart.sweep.trial_stopping import promotions_pending
from trainsmart.sweep.trial_table import TrialView, to_record, view_trials


def sweep_seed(sweep: HyperparamSweep) -> int:
    """spec.algorithm.seed, else one derived from metadata.uid: stable across restarts, distinct per sweep."""
    if sweep.spec.algorithm.seed is not None:
        return sweep.spec.algorithm.seed
    uid = str(sweep.metadata.get("uid", ""))
    return int.from_bytes(hashlib.sha256(uid.encode()).digest()[:4], "big")


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


def derive_sweep_status(
    sweep: HyperparamSweep,
    trial_jobs: Sequence[Mapping[str, Any]],
    previous_status: HyperparamSweepStatus | None,
    now: datetime,
    *,
    pricing: GpuPricing | None = None,
) -> HyperparamSweepStatus:
    """The status to write for `sweep`, given its trial TrainingJobs (API dicts) and the stored status;
    `pricing`: the operator's GPU price, if one is configured."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    previous = previous_status if previous_status is not None else HyperparamSweepStatus()
    trials = view_trials(sweep, trial_jobs, previous.trials)
    gpu_seconds = round(sum(trial.gpu_seconds for trial in trials), 1)
    cost, currency = _cost(trials, pricing, previous)
    start = sweep_start(trials, previous)
    ending = sweep_ending(
        sweep, trials, start, gpu_seconds, now, promotions_pending(sweep, trials), cost=cost, currency=currency
    )
    best = best_trial(sweep, trials)
    phase = _phase(sweep, trials, ending, best)
    counts = _counts(trials, sweep.spec.planned_trials())
    finished = phase in (SweepPhase.SUCCEEDED, SweepPhase.FAILED)
    cost_headline = format_money(cost, currency) if cost is not None and currency is not None else None
    priced = pricing is not None
    generation = sweep.metadata.get("generation")
    front, front_size = pareto_front_status(sweep.spec.objectives, trials)
    return HyperparamSweepStatus(
        observed_generation=generation if isinstance(generation, int) else None,
        phase=phase,
        conditions=sweep_conditions(
            SweepFacts(sweep, previous, phase, ending, counts, best, start, gpu_seconds, now, cost_headline, priced)
        ),
        start_time=start,
        completion_time=(previous.completion_time or to_api_time(now)) if finished else None,
        seed=sweep_seed(sweep),
        counts=counts,
        best_trial=_best_record(sweep, best),
        pareto_front=front,
        pareto_front_size=front_size,
        trials=[to_record(trial, deleted=not trial.exists) for trial in trials],
        gpu_seconds=gpu_seconds,
        estimated_cost=cost,
        cost_currency=currency if cost is not None else None,
        cost_headline=cost_headline,
    )


def _cost(
    trials: Sequence[TrialView], pricing: GpuPricing | None, previous: HyperparamSweepStatus
) -> tuple[float | None, str | None]:
    """(estimated cost, currency): the trials' costs summed; None while no price is configured and no trial
    has a cost."""
    costs = [trial.estimated_cost for trial in trials if trial.estimated_cost is not None]
    if pricing is None and not costs:
        return None, None
    currency = pricing.currency if pricing is not None else (previous.cost_currency or DEFAULT_CURRENCY)
    return round(sum(costs, 0.0), COST_DECIMALS), currency


def _best_record(sweep: HyperparamSweep, best: TrialView | None) -> BestTrial | None:
    if best is None or best.value is None:
        return None
    return BestTrial(
        name=best.name,
        parameters=dict(best.parameters),
        metric_value=best.value,
        epoch=best.value_epoch,
        headline=metric_headline(sweep.spec.objective.metric, best.value),
        checkpoint=best.best_checkpoint,
    )


def invalid_sweep_status(
    previous: HyperparamSweepStatus | None, generation: int | None, problems: Sequence[str], now: datetime
) -> HyperparamSweepStatus:
    """InvalidSpec True with every problem; the rest of the stored status kept. Not terminal: fixing the
    spec (a new generation, which is an event of its own) lets the sweep go on."""
    status = previous if previous is not None else HyperparamSweepStatus()
    return with_invalid_spec(status, problems, now, generation, SWEEP_CONDITION_ORDER, SweepPhase.PENDING)


__all__ = ["SWEEP_CONDITION_ORDER", "derive_sweep_status", "invalid_sweep_status", "sweep_seed"]
