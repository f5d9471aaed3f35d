"""A sweep's trials as the sweep sees them: each child TrainingJob (or its record, once deleted) -> one view.

Pure. A trial's state comes from its TrainingJob alone (phase, spec.suspend, the `stopped` annotation,
the per-epoch objective history that the objective annotation makes the trial's status track), so the
sweep's history is rebuilt from its children on every reconcile. A child that is gone is represented by
its row in the sweep's stored trial table (`status.trials`): that table is what survives trialRetention.

Outcomes, for the suggester and the table:
* Succeeded with an objective value -> Succeeded; Succeeded without one -> Failed, reason NoMetric (the
  trial is over and will never report it: it is not left hanging, and it counts against maxFailedTrials,
  so a misspelt objective fails the sweep after a few trials instead of burning the whole budget);
* Failed -> Failed, with the TrainingJob's Failed reason and message;
* suspended with the `stopped` annotation -> EarlyStopped (the reason says why: EarlyStopped,
  GoalReached, BudgetExhausted, ...); suspended without it -> Suspended (held by the sweep's spec.suspend);
* otherwise Pending, Running or Restarting as the TrainingJob says.
A trial's value is the best objective value over its history (the epoch it was reached is kept): what a
checkpoint-selecting user gets, and the same for finished and early-stopped trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

import pydantic

from trainsmart.api import HyperparamSweep, TrainingJobPhase, TrialPhase, TrialRecord, format_validation_error
from trainsmart.api.common import ParameterValue
from trainsmart.api.conditions import FINISHED_TRIAL_PHASES, Reason
from trainsmart.api.sweep_spec import Goal
from trainsmart.api.sweep_status import BestTrialCheckpoint
from trainsmart.builders.trial import decode_parameters
from trainsmart.names import (
    PARAMETERS_ANNOTATION,
    STOPPED_ANNOTATION,
    STOPPED_MESSAGE_ANNOTATION,
    TRIAL_NUMBER_LABEL,
    trial_name,
)
from trainsmart.status.cost import COST_DECIMALS
from trainsmart.status.podview import parse_time
from trainsmart.sweep import TrialOutcome, TrialPoint
from trainsmart.sweep.best_checkpoint import trial_best_checkpoint
from trainsmart.sweep.multiobjective import final_objective_values

MESSAGE_MAX_CHARS: Final = 900
"""Room for the problem in a trial row's message (1,024 characters with its prefix)."""
ACTIVE_PHASES: Final = frozenset({TrialPhase.PENDING, TrialPhase.RUNNING, TrialPhase.RESTARTING})
"""Trials that hold one of the parallelTrials slots."""


@dataclass(frozen=True)
class TrialView:
    """One trial: from its TrainingJob (`exists`) or, once that is gone, from its stored record."""

    name: str
    number: int
    parameters: Mapping[str, ParameterValue]
    phase: TrialPhase
    value: float | None = None
    value_epoch: int | None = None
    curve: tuple[float, ...] = ()
    objective_values: Mapping[str, float] | None = None
    """Multi-objective sweeps: each objective's final-epoch value reported so far, by metric."""
    """Objective per epoch, curve[0] = epoch 1 (gaps carried forward from the previous epoch)."""
    epochs: int | None = None
    gpu_seconds: float = 0.0
    estimated_cost: float | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    reason: str | None = None
    message: str | None = None
    exists: bool = True
    uid: str | None = None
    suspended: bool = False
    """spec.suspend of the TrainingJob (the sweep's own write)."""
    stopped: str | None = None
    """The `stopped` annotation: why the sweep stopped it for good, if it did."""
    job_finished: bool = False
    """The TrainingJob itself succeeded or failed: nothing can resume it."""
    best_checkpoint: BestTrialCheckpoint | None = None
    """Its best checkpoint by the objective (`sweep/best_checkpoint.py`); only while the TrainingJob exists."""

    @property
    def active(self) -> bool:
        return self.phase in ACTIVE_PHASES

    @property
    def finished(self) -> bool:
        return self.phase in FINISHED_TRIAL_PHASES


def trial_number(job: Mapping[str, Any]) -> int | None:
    label = ((job.get("metadata") or {}).get("labels") or {}).get(TRIAL_NUMBER_LABEL)
    if isinstance(label, str) and label.isdigit():
        return int(label)
    return None


def owned_trials(jobs: Sequence[Mapping[str, Any]], sweep_uid: str) -> list[Mapping[str, Any]]:
    """The TrainingJobs whose controller is this sweep and that carry a trial number, by number."""
    out = [
        job
        for job in jobs
        if trial_number(job) is not None
        and any(
            ref.get("uid") == sweep_uid and ref.get("controller")
            for ref in (job.get("metadata") or {}).get("ownerReferences") or []
        )
    ]
    return sorted(out, key=lambda job: trial_number(job) or 0)


def _curve(history: Sequence[Mapping[str, Any]]) -> tuple[float, ...]:
    """Per-epoch values from epoch 1 up to the newest epoch reported; a missing epoch repeats the one
    before (a lost report must not shift later epochs onto earlier rungs)."""
    by_epoch: dict[int, float] = {}
    for point in history:
        epoch, value = point.get("epoch"), point.get("value")
        if isinstance(epoch, int) and epoch >= 1 and isinstance(value, int | float) and math.isfinite(value):
            by_epoch[epoch] = float(value)
    if not by_epoch:
        return ()
    values: list[float] = []
    previous = by_epoch[min(by_epoch)]
    for epoch in range(1, max(by_epoch) + 1):
        previous = by_epoch.get(epoch, previous)
        values.append(previous)
    return tuple(values)


def best_of(values: Mapping[int, float], goal: Goal) -> tuple[float, int] | None:
    """(best value, its epoch) under `goal`; the earliest epoch wins a tie."""
    if not values:
        return None
    best = goal.best(values.values())
    return best, min(epoch for epoch, value in values.items() if value == best)


def _value(status: Mapping[str, Any], metric: str, goal: Goal) -> tuple[float | None, int | None]:
    metrics = status.get("metrics") or {}
    reported = {
        int(point["epoch"]): float(point["value"])
        for point in metrics.get("history") or []
        if isinstance(point.get("epoch"), int)
        and isinstance(point.get("value"), int | float)
        and math.isfinite(point["value"])
    }
    if metrics.get("objective") not in (None, metric):
        reported = {}  # the history tracks another metric (an old trial without the annotation)
    found = best_of(reported, goal)
    # metrics.best also holds values whose epoch report was lost (the final report carries the last
    # epoch's metrics): it wins when better, without an epoch. latest only when nothing else exists.
    best = _finite((metrics.get("best") or {}).get(metric))
    if best is not None and (found is None or goal.is_better(best, found[0])):
        return best, None
    if found is not None:
        return found
    return _finite((metrics.get("latest") or {}).get(metric)), None


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any]:
    return next((c for c in status.get("conditions") or [] if c.get("type") == type_), {})


def view_trial(job: Mapping[str, Any], sweep: HyperparamSweep, record: TrialRecord | None = None) -> TrialView:
    """The sweep's view of one trial TrainingJob (API dict); `record` supplies what the child lost."""
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    objective = sweep.spec.objective
    parameters = decode_parameters(annotations.get(PARAMETERS_ANNOTATION))
    if parameters is None:
        parameters = dict(record.parameters) if record is not None else {}
    value, value_epoch = _value(status, objective.metric, objective.goal)
    objectives = sweep.spec.objectives
    objective_values = final_objective_values(status, objectives) if objectives is not None else None
    missing = [other.metric for other in objectives or () if other.metric not in (objective_values or {})]
    suspended = bool(spec.get("suspend"))
    stopped = annotations.get(STOPPED_ANNOTATION)
    stopped = stopped if isinstance(stopped, str) and stopped else None
    job_phase = status.get("phase")
    reason: str | None = None
    message: str | None = None
    completion = parse_time(status.get("completionTime"))
    if job_phase == TrainingJobPhase.SUCCEEDED and value is not None and not missing:
        phase = TrialPhase.SUCCEEDED
    elif job_phase == TrainingJobPhase.SUCCEEDED:
        phase, reason = TrialPhase.FAILED, Reason.NO_METRIC
        seen = ", ".join(sorted((status.get("metrics") or {}).get("latest") or {})) or "none"
        absent = ", ".join(repr(metric) for metric in missing or [objective.metric])
        message = f"finished without reporting the objective metric {absent}; it reported: {seen}"
    elif job_phase == TrainingJobPhase.FAILED:
        failed = _condition(status, "Failed")
        phase, reason, message = TrialPhase.FAILED, failed.get("reason"), failed.get("message")
    elif suspended and stopped:
        phase, reason = TrialPhase.EARLY_STOPPED, stopped
        suspension = parse_time(_condition(status, "Suspended").get("lastTransitionTime"))
        completion = suspension if record is None or record.completion_time is None else record.completion_time
        given = annotations.get(STOPPED_MESSAGE_ANNOTATION)
        message = given if isinstance(given, str) and given else _stopped_message(stopped, value, objective.metric)
    elif suspended:
        phase = TrialPhase.SUSPENDED
    elif job_phase in (TrainingJobPhase.RUNNING, TrainingJobPhase.RESTARTING):
        phase = TrialPhase(job_phase)
    else:
        phase = TrialPhase.PENDING
    epochs = (status.get("progress") or {}).get("epoch")
    gpu = status.get("gpuSeconds")
    cost = _finite(status.get("estimatedCost"))
    return TrialView(
        name=str(meta.get("name", "")),
        number=trial_number(job) or 0,
        parameters=parameters,
        phase=phase,
        value=value,
        value_epoch=value_epoch,
        curve=_curve((status.get("metrics") or {}).get("history") or []),
        objective_values=objective_values,
        epochs=epochs if isinstance(epochs, int) else None,
        gpu_seconds=float(gpu) if isinstance(gpu, int | float) else 0.0,
        estimated_cost=cost if cost is None or cost >= 0 else None,
        start_time=parse_time(meta.get("creationTimestamp")),
        completion_time=completion if phase in FINISHED_TRIAL_PHASES else None,
        reason=reason if isinstance(reason, str) else None,
        message=message[:1024] if isinstance(message, str) else None,
        uid=meta.get("uid"),
        suspended=suspended,
        stopped=stopped,
        job_finished=job_phase in (TrainingJobPhase.SUCCEEDED, TrainingJobPhase.FAILED),
        best_checkpoint=trial_best_checkpoint(job, objective.metric),
    )


def _stopped_message(reason: str, value: float | None, metric: str) -> str:
    shown = f"{metric}={value:.4g}" if value is not None else f"no {metric} reported yet"
    return f"stopped by the sweep ({reason}) with {shown}; its checkpoint is kept"


def view_record(record: TrialRecord, deleted_before_end: bool) -> TrialView:
    """A trial whose TrainingJob is gone, from its stored row. One deleted before it finished (by hand:
    trialRetention deletes finished trials only) is accounted as Failed, TrialDeleted, never re-run:
    recreating it would fight whoever deleted it, and its number is never reused."""
    view = TrialView(
        name=record.name,
        number=record.number,
        parameters=dict(record.parameters),
        phase=record.phase,
        value=record.metric_value,
        objective_values=record.objective_values,
        epochs=record.epochs,
        gpu_seconds=record.gpu_seconds,
        estimated_cost=record.estimated_cost,
        start_time=record.start_time,
        completion_time=record.completion_time,
        reason=record.reason,
        message=record.message,
        exists=False,
    )
    if not deleted_before_end:
        return view
    message = "its TrainingJob was deleted before the trial finished; it is not re-run"
    return replace(view, phase=TrialPhase.FAILED, reason=Reason.TRIAL_DELETED, message=message)


def view_trials(
    sweep: HyperparamSweep, jobs: Sequence[Mapping[str, Any]], previous: Sequence[TrialRecord]
) -> list[TrialView]:
    """Every trial of the sweep, by number: the owned children, then the stored rows of those gone."""
    uid = str(sweep.metadata.get("uid", ""))
    records = {record.name: record for record in previous}
    views = {}
    for job in owned_trials(jobs, uid):
        if (job.get("metadata") or {}).get("deletionTimestamp") and _record_finished(records, job):
            continue  # being deleted by retention: its stored row stands for it
        view = view_trial(job, sweep, records.get(str((job.get("metadata") or {}).get("name"))))
        views[view.name] = view
    for record in previous:
        if record.name not in views:
            unfinished = record.phase not in FINISHED_TRIAL_PHASES and not record.deleted
            views[record.name] = view_record(record, deleted_before_end=unfinished)
    return sorted(views.values(), key=lambda view: view.number)


def _record_finished(records: Mapping[str, TrialRecord], job: Mapping[str, Any]) -> bool:
    record = records.get(str((job.get("metadata") or {}).get("name")))
    return record is not None and record.phase in FINISHED_TRIAL_PHASES


def invalid_trial_message(error: Exception) -> str:
    """The first problem of a trial spec that failed validation, with its field path (bounded for status)."""
    if isinstance(error, pydantic.ValidationError):
        lines = format_validation_error(error, prefix="trialTemplate")
        return (lines[0] if lines else str(error))[:MESSAGE_MAX_CHARS]
    return str(error)[:MESSAGE_MAX_CHARS]


def invalid_trial_record(
    sweep: HyperparamSweep, number: int, parameters: Mapping[str, ParameterValue], problem: str, now: datetime
) -> TrialRecord:
    """The table row of trial `number` whose point made an invalid spec: Failed, and `deleted` because no
    TrainingJob exists, so later reconciles keep the row as it is (and count it as a failed trial)."""
    name = trial_name(str(sweep.metadata.get("name", "")), number)
    return TrialRecord(
        name=name,
        number=number,
        phase=TrialPhase.FAILED,
        parameters=dict(parameters),
        start_time=now,
        completion_time=now,
        deleted=True,
        reason=Reason.INVALID_TRIAL,
        message=f"its parameters make an invalid TrainingJob: {problem}",
    )


def to_record(view: TrialView, deleted: bool) -> TrialRecord:
    """The table row for a trial."""
    return TrialRecord(
        name=view.name,
        number=view.number,
        phase=view.phase,
        parameters=dict(view.parameters),
        metric_value=view.value,
        objective_values=None if view.objective_values is None else dict(view.objective_values),
        epochs=view.epochs,
        gpu_seconds=round(view.gpu_seconds, 1),
        estimated_cost=None if view.estimated_cost is None else round(view.estimated_cost, COST_DECIMALS),
        start_time=view.start_time,
        completion_time=view.completion_time,
        deleted=deleted,
        reason=view.reason,
        message=view.message,
    )


# ---- what the algorithms see ------------------------------------------------------------------------------


def trial_outcome(trial: TrialView) -> TrialOutcome:
    if trial.phase == TrialPhase.SUCCEEDED:
        return TrialOutcome.SUCCEEDED
    if trial.phase == TrialPhase.FAILED:
        return TrialOutcome.NO_METRIC if trial.reason == Reason.NO_METRIC else TrialOutcome.FAILED
    if trial.phase == TrialPhase.EARLY_STOPPED:
        return TrialOutcome.EARLY_STOPPED
    return TrialOutcome.ACTIVE


def trial_history(trials: Sequence[TrialView]) -> list[TrialPoint]:
    """Every trial created so far, deleted ones included (from their rows), for the suggester."""
    return [
        TrialPoint(
            number=trial.number,
            parameters=dict(trial.parameters),
            outcome=trial_outcome(trial),
            value=trial.value,
            curve=trial.curve,
            objective_values=trial.objective_values,
        )
        for trial in trials
    ]
