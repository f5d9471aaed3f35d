"""Folding the trainer's reports into the TrainingJob status: progress, metrics, history, checkpoint, findings.

Folding is idempotent (folding a report twice equals folding it once): history and the loss curve are
keyed by epoch, the latest values are overwritten, best values are a min/max, diagnostics keep one finding
of each type (the newest episode's; one already there stays in place). That is what lets the I/O side
re-derive status from the same inputs without growing it. Every list is bounded by the status model's
limits, newest kept: status lives in etcd and is re-sent on every watch.

Each epoch report also updates the loss curve and adds the operator's own findings from the curves
(`curve_diagnostics`), merged with the trainer's so that one episode is one entry, whoever saw it first.

Order (issue 13): reports reach the operator over HTTP, retried after timeouts, so a report can arrive after
a newer one was folded, in a later reconcile. Status therefore records the newest report it reflects
(`progress.attempt`, `progress.reportTime`, the trainer's clock, and `progress.step`), and a report is
*stale* when it comes from an earlier attempt (the pods' `TRAINSMART_ATTEMPT`, from their attempt label:
older than the job's current attempt `status.restarts`, or than the attempt progress reflects), or, within
one attempt, when it was sent before that one and is not further in training by (epoch, step). A stale
report moves neither progress nor the latest metrics, the headline or the loss curve, and never rewrites a
history point; it only fills an epoch the history lacks (a report that was lost and retried still counts)
and competes for `best` (its values were observed). A newer attempt's report is never stale, however far
back in epochs it starts. Within an attempt both halves of the test matter: the time orders reports, and
(epoch, step) lets a run whose clock went back (a node's clock corrected) go forward at once. Reports from
trainers that do not send an attempt (custom code on an older client) fall back to the time and (epoch,
step) test alone: the time then separates attempts, since a restarted run goes forward in time.

Restarts: a restarted trainer's first report says where it runs before it has loaded its checkpoint (epoch
0, step 0: nothing done yet). Taken literally it would drop `progress` to 0 until the resumed trainer
reports; the trainer resumes from the newest checkpoint, so such a report is shown at that checkpoint's
epoch (`checkpoint.latestEpoch`, the newest one the trainer reported saving), not below. Without a
checkpoint there is nothing to resume from and 0 is the truth, so it shows. A report with work done below
the checkpoint (epoch or step above 0) means the trainer did not resume from it (its volume was replaced,
or custom code that does not resume) and is shown as it is: progress says where training really is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final

from trainsmart.api import DiagnosticSeverity, TrainingJobStatus
from trainsmart.api.trainingjob_status import (
    DIAGNOSTICS_MAX_ITEMS,
    HISTORY_MAX_ITEMS,
    METRICS_MAX_PROPERTIES,
    BestCheckpointStatus,
    CheckpointStatus,
    Diagnostic,
    HistoryPoint,
    MetricsStatus,
    Progress,
)
from trainsmart.status.curve_diagnostics import curve_findings, episode_start, loss_point, record_losses
from trainsmart.status.headlines import metric_headline
from trainsmart_trainer.contract import FinalResult, ObjectiveDirection, ReportKind, TrainerReport

Goal = ObjectiveDirection

DEFAULT_OBJECTIVE: Final = "val_loss"
# Substrings of metric names whose direction is known; metrics matching none (learning_rate, grad_norm, a
# custom score) have no "best": guessing a direction would show a meaningless number as the best one.
_LOWER_IS_BETTER: Final = ("loss", "error", "mse", "mae", "rmse", "perplexity", "seconds", "time")
_HIGHER_IS_BETTER: Final = (
    "accuracy",
    "acc",
    "f1",
    "auc",
    "precision",
    "recall",
    "r2",
    "ndcg",
    "hit",
    "map",
    "iou",
    "dice",
    "per_second",
    "throughput",
)


def as_aware(moment: datetime) -> datetime:
    """A report time with a timezone: the wire format allows naive times, which are taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def metric_goal(name: str, overrides: Mapping[str, Goal] | None = None) -> Goal | None:
    """Whether lower or higher values of metric `name` are better, or None when it cannot be told."""
    if overrides and name in overrides:
        return overrides[name]
    lowered = name.lower()
    if any(part in lowered for part in _HIGHER_IS_BETTER):
        return ObjectiveDirection.MAXIMIZE
    if any(part in lowered for part in _LOWER_IS_BETTER):
        return ObjectiveDirection.MINIMIZE
    return None


def _better(goal: Goal, new: float, old: float | None) -> bool:
    return old is None or goal.is_better(new, old)


def _bounded_latest(latest: dict[str, float], newest: Mapping[str, float]) -> dict[str, float]:
    """At most METRICS_MAX_PROPERTIES entries: the newest report's names first, then the rest by name."""
    if len(latest) <= METRICS_MAX_PROPERTIES:
        return latest
    keep = sorted(newest)[:METRICS_MAX_PROPERTIES]
    keep += sorted(name for name in latest if name not in newest)[: METRICS_MAX_PROPERTIES - len(keep)]
    return {name: latest[name] for name in sorted(keep)}


def _fold_metrics(
    metrics: MetricsStatus,
    values: Mapping[str, float],
    reported_objective: str,
    epoch_point: int | None,
    goals: Mapping[str, Goal] | None,
    objective_override: str | None = None,
    *,
    stale: bool = False,
) -> MetricsStatus:
    """`epoch_point`: the completed epoch whose objective value joins the history (epoch reports only).

    `stale`: the values are older than those status shows: only `best` and an epoch the history lacks take
    them; the latest values, the headline and the loss curve stay as they are."""
    latest = metrics.latest if stale else _bounded_latest({**metrics.latest, **values}, values)
    best = dict(metrics.best)
    for name, value in values.items():
        goal = metric_goal(name, goals)
        room = name in best or len(best) < METRICS_MAX_PROPERTIES
        if goal is not None and room and _better(goal, value, best.get(name)):
            best[name] = value
    # A sweep's trial tracks the sweep's objective, whatever the trainer's early-stopping metric is.
    objective = objective_override or reported_objective or metrics.objective or DEFAULT_OBJECTIVE
    history = list(metrics.history)
    known = any(point.epoch == epoch_point for point in history)
    if epoch_point is not None and objective in values and not (stale and known):
        history = [point for point in history if point.epoch != epoch_point]
        history.append(HistoryPoint(epoch=epoch_point, value=values[objective]))
        history = sorted(history, key=lambda point: point.epoch)[-HISTORY_MAX_ITEMS:]
    headline = metrics.headline
    if objective in latest and not stale:
        headline = metric_headline(objective, latest[objective])
    loss_curve = list(metrics.loss_curve)
    if not stale and epoch_point is not None and (point := loss_point(epoch_point, values)) is not None:
        loss_curve = record_losses(loss_curve, point)
    return MetricsStatus(
        latest=latest,
        best=dict(sorted(best.items())),
        objective=objective,
        headline=headline,
        history=history,
        loss_curve=loss_curve,
    )


def _reported_epoch(report: TrainerReport) -> int:
    return report.final.epochs_completed if report.final is not None else report.epoch


def is_stale(progress: Progress | None, report: TrainerReport, current_attempt: int = 0) -> bool:
    """`report` is older than the newest report `progress` reflects: from an earlier attempt than the job's
    `current_attempt` or than progress's, or, in the same attempt, sent before it (the trainer's clock) and
    not further in training by (epoch, step). A status written before reports were ordered has no report
    time: nothing is stale then, except an earlier attempt's report."""
    attempt = report.job.attempt
    if attempt is not None:
        if attempt < current_attempt:
            return True
        reflected = progress.attempt if progress is not None else None
        if reflected is not None and attempt != reflected:
            return attempt < reflected
    if progress is None or progress.report_time is None or as_aware(report.time) >= progress.report_time:
        return False
    return (_reported_epoch(report), report.step) <= (progress.epoch, progress.step)


def _progress(report: TrainerReport, checkpoint: CheckpointStatus | None) -> Progress:
    """Progress as `report` says, except that a report from a trainer that has done nothing yet (a restarted
    one, before it loaded its checkpoint) is shown at the newest checkpoint's epoch (module docstring)."""
    epoch = _reported_epoch(report)
    if epoch == 0 and report.step == 0 and checkpoint is not None and checkpoint.latest_epoch is not None:
        epoch = min(checkpoint.latest_epoch, report.total_epochs)
    percent = min(100.0, round(100.0 * epoch / report.total_epochs, 2))
    return Progress(
        epoch=epoch,
        total_epochs=report.total_epochs,
        percent=percent,
        samples_per_second=report.samples_per_second,
        eta_seconds=0.0 if report.kind == ReportKind.FINAL else report.eta_seconds,
        step=report.step,
        report_time=as_aware(report.time),
        attempt=report.job.attempt,
    )


def _merge_finding(current: list[Diagnostic], finding: Diagnostic, since: int | None) -> list[Diagnostic]:
    """`current` with `finding` as the one entry of its type, most recent last, at most DIAGNOSTICS_MAX_ITEMS.

    An identical entry stays where it is (folding twice changes nothing, not even which finding is the
    newest). `since`: the first epoch of the finding's evidence; an entry of the same type about an epoch at
    or after it is the same episode, already reported (by the trainer or by the operator), and is kept.
    """
    same = next((item for item in current if item.type == finding.type), None)
    if same == finding:
        return current
    if same is not None and since is not None and same.epoch is not None and same.epoch >= since:
        return current
    return [*(item for item in current if item.type != finding.type), finding][-DIAGNOSTICS_MAX_ITEMS:]


def _fold_diagnostics(
    current: list[Diagnostic], report: TrainerReport, metrics: MetricsStatus, goals: Mapping[str, Goal] | None
) -> list[Diagnostic]:
    """The trainer's findings in the report, then, after an epoch report, those the curves show now."""
    out = list(current)
    for finding in report.diagnostics:
        folded = Diagnostic(
            type=finding.type.value,
            severity=DiagnosticSeverity(finding.severity.value),
            message=finding.message,
            suggestion=finding.suggestion or None,
            epoch=finding.epoch,
        )
        out = _merge_finding(out, folded, episode_start(folded.type, finding.epoch))
    if report.kind == ReportKind.EPOCH:
        goal = metric_goal(metrics.objective, goals) if metrics.objective else None
        for found in curve_findings(metrics.loss_curve, metrics.history, metrics.objective, goal):
            out = _merge_finding(out, found.diagnostic, found.since)
    return out


def fold_report(
    status: TrainingJobStatus,
    report: TrainerReport,
    now: datetime,
    *,
    goals: Mapping[str, Goal] | None = None,
    objective: str | None = None,
) -> TrainingJobStatus:
    """`status` with one report folded in; `goals` overrides metric directions (e.g. early stopping's mode),
    `objective` the metric the history tracks (a sweep trial's objective; None: the trainer's).

    A checkpoint time is the trainer's clock, capped at `now`: a pod with a clock running ahead would
    otherwise stamp a future time that makes every later (real) checkpoint look older and never show.
    A stale report (`is_stale`, module docstring) leaves progress, the latest metrics and every history
    point it would rewrite as they are.
    """
    stale = is_stale(status.progress, report, status.restarts)
    values = dict(report.metrics)
    if report.final is not None:
        values = {**values, **report.final.metrics}
    epoch_point = report.epoch if report.kind == ReportKind.EPOCH else None
    metrics = _fold_metrics(
        status.metrics or MetricsStatus(), values, report.objective_metric, epoch_point, goals, objective, stale=stale
    )
    checkpoint = status.checkpoint
    if report.checkpoint is not None:
        previous_time = checkpoint.time if checkpoint is not None else None
        saved = min(as_aware(report.checkpoint.time), now).replace(microsecond=0)
        if previous_time is None or saved >= previous_time:
            best = checkpoint.best if checkpoint is not None else None
            checkpoint = CheckpointStatus(
                latest_epoch=report.checkpoint.epoch, path=report.checkpoint.path, time=saved, best=best
            )
    checkpoint = fold_best_checkpoint(checkpoint, report, stale=stale)
    return status.model_copy(
        update={
            "progress": status.progress if stale else _progress(report, checkpoint),
            "metrics": metrics,
            "checkpoint": checkpoint,
            "diagnostics": _fold_diagnostics(list(status.diagnostics), report, metrics, goals),
        }
    )


def fold_best_checkpoint(
    checkpoint: CheckpointStatus | None, report: TrainerReport, *, stale: bool
) -> CheckpointStatus | None:
    """`checkpoint` with the report's best checkpoint (issue 15). The trainer decides what is best (it replaces
    its best file only when the objective improves, and a restarted trainer reads the value back from that
    file), so the newest report's word stands; a stale report only fills a best that status lacks."""
    reported = report.best_checkpoint
    current = checkpoint.best if checkpoint is not None else None
    if reported is None or (stale and current is not None):
        return checkpoint
    best = BestCheckpointStatus(path=reported.path, epoch=reported.epoch, metric=reported.metric, value=reported.value)
    if best == current:
        return checkpoint
    return (checkpoint or CheckpointStatus()).model_copy(update={"best": best})


def fold_final_result(
    status: TrainingJobStatus,
    final: FinalResult,
    *,
    total_epochs: int | None = None,
    goals: Mapping[str, Goal] | None = None,
    objective: str | None = None,
) -> TrainingJobStatus:
    """`status` with a final result that did not come as a report (the trainer's termination message)
    folded in as the final report would have been; `total_epochs` is used when status has none yet.

    Never regresses: a result with fewer completed epochs than status shows is older than what status
    holds and changes nothing. Idempotent like `fold_report`; progress keeps its throughput and the newest
    report it reflects (the message has no time of its own). The result's best objective value is an
    observed value, so it competes for `best` whatever the metric's direction;
    its objective history fills only epochs the history lacks, and only when it tracks the same metric.
    """
    progress = status.progress
    if progress is not None and progress.epoch > final.epochs_completed:
        return status
    metrics = _fold_metrics(
        status.metrics or MetricsStatus(), dict(final.metrics), final.objective_metric, None, goals, objective
    )
    if final.objective_history and metrics.objective == final.objective_metric:
        # Only epochs status lacks: a point an epoch report already set stays as it is.
        known = {point.epoch for point in metrics.history}
        added = [HistoryPoint(epoch=p.epoch, value=p.value) for p in final.objective_history if p.epoch not in known]
        if added:
            history = sorted([*metrics.history, *added], key=lambda point: point.epoch)[-HISTORY_MAX_ITEMS:]
            metrics = metrics.model_copy(update={"history": history})
    name, value = final.objective_metric, final.best_value
    goal = metric_goal(name, goals) if name else None
    room = name in metrics.best or len(metrics.best) < METRICS_MAX_PROPERTIES
    if goal is not None and value is not None and room and _better(goal, value, metrics.best.get(name)):
        metrics = metrics.model_copy(update={"best": dict(sorted({**metrics.best, name: value}.items()))})
    total = (progress.total_epochs if progress is not None else None) or total_epochs
    epoch = final.epochs_completed
    if total is not None:
        percent = min(100.0, round(100.0 * epoch / total, 2))
    else:
        percent = progress.percent if progress is not None else 0.0
    folded_progress = (progress or Progress()).model_copy(
        update={"epoch": epoch, "total_epochs": total, "percent": percent, "eta_seconds": 0.0}
    )
    return status.model_copy(update={"progress": folded_progress, "metrics": metrics})


def fold_reports(
    status: TrainingJobStatus,
    reports: Sequence[TrainerReport],
    now: datetime,
    *,
    goals: Mapping[str, Goal] | None = None,
    objective: str | None = None,
) -> TrainingJobStatus:
    """Fold reports oldest first (by attempt where told, then the trainer's time, then step), whatever order
    they arrived in."""
    for report in sorted(reports, key=lambda item: (item.job.attempt or 0, as_aware(item.time), item.step)):
        status = fold_report(status, report, now, goals=goals, objective=objective)
    return status
