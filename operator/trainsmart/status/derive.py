"""The TrainingJob status, derived from the job, its pods, the last status and the trainer's reports.

Pure and deterministic: the same inputs give an equal `TrainingJobStatus` (times at whole seconds,
conditions in a fixed order, every condition with a reason and a message), so the I/O side patches only
when the result differs from what is stored. Deriving again from its own output at the same `now` gives
the same status ("running idempotence"): that is what makes a level-triggered reconcile safe to repeat.

How the I/O side uses this module, per reconcile:
    status = derive_trainingjob_status(job, pods, job.status, new_reports, now, gpu_accounted_until=last)
    plan = plan_trainingjob(job, pods, status, now)
    patch status if it changed  ->  only then act on the plan (a restart is counted in status before any
    pod is deleted; deleting first would lose the failure if the operator stopped in between).

Semantics the decision module (`verdict`) documents in full; the times:
* startTime: when the first replica's trainer started running (the container's startedAt); cleared on
  suspension so that `activeDeadlineSeconds` counts running time since the last resume, as Kubernetes Jobs
  do. Pods stuck pending do not start the clock.
* completionTime: when the operator first saw the job succeed or fail.
* gpuSeconds: GPUs x seconds the trainers ran, accumulated between `gpu_accounted_until` (when the
  previous status was derived; None adds nothing) and `now`. Pods that vanish between two derivations
  lose at most that interval: the total errs low, never bills twice.
* estimatedCost: the same GPU time, each pod's at its node's price (`status/cost.py`), accumulated in the
  same increments; only with `prices` (a price is configured). A change of currency prices the GPU time
  so far afresh, at the default price.
* progress.headline, costHeadline: the strings `kubectl get` prints (`status/headlines.py`), made anew
  from the numbers every time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from trainsmart.api import (
    TrainingJob,
    TrainingJobConditionType,
    TrainingJobPhase,
    TrainingJobStatus,
)
from trainsmart.api.common import TRAINER_CONTAINER_NAME
from trainsmart.api.conditions import TRAININGJOB_CONDITION_ORDER, to_api_time, with_invalid_spec
from trainsmart.api.trainingjob_status import ReplicaCounts
from trainsmart.names import (
    OBJECTIVE_GOAL_ANNOTATION,
    OBJECTIVE_METRIC_ANNOTATION,
    job_generation,
    job_name,
    job_namespace,
)
from trainsmart.status.cost import NodePrices, accumulate_cost, format_money
from trainsmart.status.exitcodes import ExitClass
from trainsmart.status.headlines import progress_headline
from trainsmart.status.job_conditions import JobFacts, job_conditions
from trainsmart.status.plan import Plan, plan_trainingjob
from trainsmart.status.podview import PodState, PodView, gpu_seconds_between, view_pods
from trainsmart.status.report_fold import Goal, fold_reports
from trainsmart.status.termination_fold import fold_termination_message
from trainsmart.status.verdict import decide, exit_class
from trainsmart_trainer.contract import ObjectiveDirection, TrainerReport

TERMINAL_PHASES: Final = frozenset({TrainingJobPhase.SUCCEEDED, TrainingJobPhase.FAILED})
Type = TrainingJobConditionType

__all__ = ["Plan", "derive_trainingjob_status", "invalid_spec_status", "plan_trainingjob"]


def _report_is_for(report: TrainerReport, job: TrainingJob) -> bool:
    """Reports naming another job are dropped (the endpoint checks tokens; this is a second line)."""
    identity = report.job
    return (not identity.name or identity.name == job_name(job)) and (
        not identity.namespace or identity.namespace == job_namespace(job)
    )


def _goals(job: TrainingJob) -> dict[str, Goal]:
    """The early-stopping metric's direction, from the config, beats the name-based guess; a sweep
    trial's objective direction (its annotation) beats both."""
    config = job.spec.trainer.config
    goals: dict[str, Goal] = {}
    if config is not None and config.early_stopping is not None:
        goals[config.early_stopping.metric] = ObjectiveDirection.of(config.early_stopping.mode.value)
    objective = _sweep_objective(job)
    direction = (job.metadata.get("annotations") or {}).get(OBJECTIVE_GOAL_ANNOTATION)
    if objective is not None and direction in ("maximize", "minimize"):
        goals[objective] = ObjectiveDirection(direction)
    return goals


def _sweep_objective(job: TrainingJob) -> str | None:
    """The objective a sweep set on its trial (annotation): the metric the trial's history tracks."""
    value = (job.metadata.get("annotations") or {}).get(OBJECTIVE_METRIC_ANNOTATION)
    return value if isinstance(value, str) and value else None


def _replica_counts(job: TrainingJob, views: Sequence[PodView]) -> ReplicaCounts:
    """Counts over the newest attempt present (during a restart: the replicas being replaced)."""
    replicas = [view for view in views if view.index is not None and view.index < job.spec.replicas]
    attempts = [view.attempt for view in replicas if view.attempt is not None]
    if not attempts:
        return ReplicaCounts()
    newest = [view for view in replicas if view.attempt == max(attempts)]
    counts = dict.fromkeys(("pending", "running", "succeeded", "failed"), 0)
    for view in newest:
        if view.state == PodState.PENDING:
            counts["pending"] += 1
        elif view.state == PodState.RUNNING:
            counts["running"] += 1
        elif exit_class(view, job) == ExitClass.SUCCESS:
            counts["succeeded"] += 1
        else:
            counts["failed"] += 1
    return ReplicaCounts(**counts)


def _start_time(
    job: TrainingJob, previous: TrainingJobStatus, views: Sequence[PodView], now: datetime
) -> datetime | None:
    if job.spec.suspend:
        return None
    if previous.start_time is not None:
        return previous.start_time
    started = [
        view.started_at or now
        for view in views
        if view.state in (PodState.RUNNING, PodState.EXITED)
        and view.container == TRAINER_CONTAINER_NAME
        and not view.terminating
    ]
    return to_api_time(min(started)) if started else None


def _latest_diagnostic(status: TrainingJobStatus) -> str:
    """The newest Error or Warning finding, for failure messages."""
    for finding in reversed(status.diagnostics):
        if finding.severity.value in ("Error", "Warning"):
            return f"{finding.type}: {finding.message}"
    return ""


def _all_created(job: TrainingJob, views: Sequence[PodView]) -> bool:
    return len({view.index for view in views if view.index is not None and view.index < job.spec.replicas}) == (
        job.spec.replicas
    )


def derive_trainingjob_status(
    job: TrainingJob,
    pods: Sequence[Mapping[str, Any]],
    previous_status: TrainingJobStatus | None,
    reports: Sequence[TrainerReport],
    now: datetime,
    *,
    gpu_accounted_until: datetime | None = None,
    prices: NodePrices | None = None,
) -> TrainingJobStatus:
    """The status to write for `job`, given its pods (API dicts), the stored status and new reports.

    Once Succeeded or Failed the outcome is final: later observations only update counts, reports and
    GPU time. `reports` are those received since the last derivation; folding is idempotent, so passing
    a report twice does no harm.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    previous = previous_status if previous_status is not None else TrainingJobStatus()
    views = view_pods(pods, job_name(job))
    folded = fold_reports(
        previous,
        [r for r in reports if _report_is_for(r, job)],
        now,
        goals=_goals(job),
        objective=_sweep_objective(job),
    )
    # The rank-0 trainer's termination message stands in for a final report that never arrived.
    config = job.spec.trainer.config
    folded = fold_termination_message(
        folded,
        views,
        max([previous.restarts, *(view.attempt for view in views if view.attempt is not None)]),
        total_epochs=config.epochs if config is not None else None,
        goals=_goals(job),
        objective=_sweep_objective(job),
    )
    gpu = previous.gpu_seconds
    if gpu_accounted_until is not None and gpu_accounted_until < now:
        gpu += gpu_seconds_between(views, gpu_accounted_until, now)
    common: dict[str, Any] = {
        "observed_generation": job_generation(job),
        "replicas": _replica_counts(job, views),
        "gpu_seconds": round(gpu, 1),
    }
    if prices is not None:
        same_currency = previous.cost_currency in (None, prices.currency)
        cost = previous.estimated_cost if same_currency else None
        common["estimated_cost"] = accumulate_cost(cost, previous.gpu_seconds, views, gpu_accounted_until, now, prices)
        common["cost_currency"] = prices.currency
    if previous.phase in TERMINAL_PHASES:
        generation = job_generation(job)
        conditions = [
            condition.model_copy(update={"observed_generation": generation}) for condition in previous.conditions
        ]
        return with_headlines(folded.model_copy(update={**common, "conditions": conditions}))
    restarts = max([previous.restarts, *(view.attempt for view in views if view.attempt is not None)])
    start_time = _start_time(job, previous, views, now)
    verdict = decide(job, previous, views, restarts, start_time, now, _latest_diagnostic(folded))
    finished = verdict.phase in TERMINAL_PHASES
    status = folded.model_copy(
        update={
            **common,
            "phase": verdict.phase,
            "restarts": verdict.restarts,
            "conditions": job_conditions(
                JobFacts(job, previous, verdict, _all_created(job, views), folded.diagnostics),
                now,
                job_generation(job),
            ),
            "start_time": None if verdict.phase == TrainingJobPhase.SUSPENDED else start_time,
            "completion_time": (previous.completion_time or to_api_time(now)) if finished else None,
        }
    )
    return with_headlines(status)


def with_headlines(status: TrainingJobStatus) -> TrainingJobStatus:
    """`status` with the strings `kubectl get` prints made from its numbers (progress, cost)."""
    progress = status.progress
    if progress is not None:
        progress = progress.model_copy(update={"headline": progress_headline(progress)})
    cost = None
    if status.estimated_cost is not None and status.cost_currency is not None:
        cost = format_money(status.estimated_cost, status.cost_currency)
    return status.model_copy(update={"progress": progress, "cost_headline": cost})


def invalid_spec_status(
    previous: TrainingJobStatus | None, generation: int | None, problems: Sequence[str], now: datetime
) -> TrainingJobStatus:
    """The status for a job whose spec does not parse: InvalidSpec True with every problem, nothing else
    changed. Not terminal: fixing the spec (a new generation) lets the job proceed."""
    status = previous if previous is not None else TrainingJobStatus()
    return with_invalid_spec(status, problems, now, generation, TRAININGJOB_CONDITION_ORDER, TrainingJobPhase.PENDING)
