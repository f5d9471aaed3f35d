"""Pure: TrainingJob / HyperparamSweep objects (plain camelCase dicts, as the API returns them) -> the rows,
lines and sentences that `trainsmart get`, `describe` and `watch` print.

Dicts rather than the pydantic models: the console reads objects written by any operator version, with
fields this one may not know yet (`estimatedCost`) or no longer has; a view shows what is there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from trainsmart.names import KUEUE_QUEUE_LABEL, SWEEP_NAME_LABEL

FINISHED_PHASES: Final = frozenset({"Succeeded", "Failed"})
TERMINAL_TRIAL_PHASES: Final = frozenset({"Succeeded", "Failed", "EarlyStopped"})
EVENTS_SHOWN: Final = 10

JOB_COLUMNS: Final = ("NAME", "PHASE", "REPLICAS", "PROGRESS", "METRIC", "ETA", "RESTARTS", "AGE")
JOB_WIDE_COLUMNS: Final = ("SWEEP", "GPU-HOURS", "COST", "DIAGNOSTICS")
SWEEP_COLUMNS: Final = ("NAME", "PHASE", "TRIALS", "RUNNING", "BEST", "AGE")
SWEEP_WIDE_COLUMNS: Final = ("ALGORITHM", "EARLY-STOPPED", "FAILED", "GPU-HOURS", "COST")


# ---- small formatters -----------------------------------------------------------------------------------


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def format_duration(seconds: float | None) -> str:
    """`45s`, `1m12s`, `2h03m`, `3d4h`: kubectl's AGE style, a little more precise under an hour."""
    if seconds is None or not math.isfinite(seconds):
        return "-"
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h"


def format_number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.3g}"
    return f"{value:.4g}"


def format_cost(value: Any) -> str:
    """`estimatedCost` as the operator writes it: a number, or an object with an amount and a currency."""
    if value is None:
        return "-"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.2f}"
    if isinstance(value, Mapping):
        amount = next((value[k] for k in ("amount", "total", "value") if k in value), None)
        currency = value.get("currency") or ""
        if isinstance(amount, int | float) and not isinstance(amount, bool):
            return f"{amount:.2f} {currency}".strip()
        if isinstance(amount, str):
            return f"{amount} {currency}".strip()
    return str(value)


def format_amount(value: Any, currency: Any = None) -> str:
    """A cost amount with its currency code when known: `1.50 EUR`, `1.50`; "-" when there is none."""
    text = format_cost(value)
    return f"{text} {currency}" if text != "-" and isinstance(currency, str) and currency else text


def cost_of(status: Mapping[str, Any]) -> str:
    """A status's estimated cost as `kubectl get` shows it: the operator's `costHeadline` (`$1.23`), else
    `estimatedCost` with `costCurrency`; "-" without a cost (no GPU price configured)."""
    headline = status.get("costHeadline")
    if isinstance(headline, str) and headline:
        return headline
    return format_amount(status.get("estimatedCost"), status.get("costCurrency"))


def has_cost(status: Mapping[str, Any]) -> bool:
    return status.get("estimatedCost") is not None or bool(status.get("costHeadline"))


def age(obj: Mapping[str, Any], now: datetime) -> str:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return format_duration((now - created).total_seconds()) if created else "-"


def _status(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("status") or {})


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    return dict(obj.get("spec") or {})


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in _status(obj).get("conditions") or [] if c.get("type") == type_), {})


def phase(obj: Mapping[str, Any]) -> str:
    return str(_status(obj).get("phase") or "Pending")


def elapsed(obj: Mapping[str, Any], now: datetime) -> float | None:
    """Seconds from the first replica's start (else creation) to completion (else now)."""
    status = _status(obj)
    start = parse_time(status.get("startTime")) or parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    end = parse_time(status.get("completionTime")) or now
    return (end - start).total_seconds() if start else None


# ---- progress -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobProgress:
    """What a progress bar shows for one job."""

    epoch: int
    total_epochs: int | None
    percent: float
    eta_seconds: float | None
    samples_per_second: float | None
    metric: str | None

    def line(self) -> str:
        total = self.total_epochs if self.total_epochs is not None else "?"
        parts = [f"epoch {self.epoch}/{total}", f"{self.percent:.0f}%"]
        if self.eta_seconds is not None:
            parts.append(f"ETA {format_duration(self.eta_seconds)}")
        if self.samples_per_second is not None:
            parts.append(f"{self.samples_per_second:.0f} samples/s")
        if self.metric:
            parts.append(self.metric)
        return "  ".join(parts)


def job_progress(obj: Mapping[str, Any]) -> JobProgress:
    status = _status(obj)
    progress = status.get("progress") or {}
    metrics = status.get("metrics") or {}
    total = progress.get("totalEpochs")
    percent = float(progress.get("percent") or 0.0)
    if phase(obj) == "Succeeded":
        percent = 100.0
    return JobProgress(
        epoch=int(progress.get("epoch") or 0),
        total_epochs=int(total) if total is not None else None,
        percent=percent,
        eta_seconds=progress.get("etaSeconds") if phase(obj) not in FINISHED_PHASES else None,
        samples_per_second=progress.get("samplesPerSecond"),
        metric=headline(metrics),
    )


def headline(metrics: Mapping[str, Any]) -> str | None:
    """`val_accuracy=0.97`: the objective's latest value (the operator's own headline when it wrote one)."""
    if metrics.get("headline"):
        return str(metrics["headline"])
    objective = metrics.get("objective")
    latest = metrics.get("latest") or {}
    if objective and objective in latest:
        return f"{objective}={format_number(latest[objective])}"
    return None


# ---- get ------------------------------------------------------------------------------------------------


def job_row(obj: Mapping[str, Any], now: datetime) -> dict[str, str]:
    meta, spec, status = obj.get("metadata") or {}, _spec(obj), _status(obj)
    progress = job_progress(obj)
    replicas = int(spec.get("replicas") or 1)
    gpus = int(spec.get("gpusPerReplica") or 0)
    total = f"/{progress.total_epochs}" if progress.total_epochs else ""
    diagnostics = [d.get("type", "?") for d in status.get("diagnostics") or []]
    return {
        "NAMESPACE": str(meta.get("namespace", "")),
        "NAME": str(meta.get("name", "")),
        "PHASE": phase(obj),
        "REPLICAS": f"{replicas}x{gpus}GPU" if gpus else str(replicas),
        "PROGRESS": f"{progress.epoch}{total} ({progress.percent:.0f}%)" if status.get("progress") else "-",
        "METRIC": progress.metric or "-",
        "ETA": format_duration(progress.eta_seconds),
        "RESTARTS": str(status.get("restarts") or 0),
        "AGE": age(obj, now),
        "SWEEP": str((meta.get("labels") or {}).get(SWEEP_NAME_LABEL, "-")),
        "GPU-HOURS": f"{float(status.get('gpuSeconds') or 0) / 3600:.2f}",
        "COST": cost_of(status),
        "DIAGNOSTICS": ",".join(diagnostics) or "-",
    }


def objective_name(sweep: Mapping[str, Any]) -> str:
    return str((_spec(sweep).get("objective") or {}).get("metric") or "objective")


def sweep_row(obj: Mapping[str, Any], now: datetime) -> dict[str, str]:
    meta, spec, status = obj.get("metadata") or {}, _spec(obj), _status(obj)
    counts = status.get("counts") or {}
    planned = counts.get("planned") or spec.get("maxTrials")
    best = status.get("bestTrial")
    return {
        "NAMESPACE": str(meta.get("namespace", "")),
        "NAME": str(meta.get("name", "")),
        "PHASE": phase(obj),
        "TRIALS": f"{counts.get('finished', 0)}/{planned if planned else '?'}",
        "RUNNING": str(counts.get("running", 0)),
        "BEST": f"{objective_name(obj)}={format_number(best['metricValue'])} ({best['name']})" if best else "-",
        "AGE": age(obj, now),
        "ALGORITHM": str((spec.get("algorithm") or {}).get("name") or "tpe"),
        "EARLY-STOPPED": str(counts.get("earlyStopped", 0)),
        "FAILED": str(counts.get("failed", 0)),
        "GPU-HOURS": f"{float(status.get('gpuSeconds') or 0) / 3600:.2f}",
        "COST": cost_of(status),
    }


def table(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> list[str]:
    """kubectl's plain table: upper-case headers, columns padded to their widest cell, three spaces apart."""
    widths = [max([len(column), *(len(row.get(column, "")) for row in rows)]) for column in columns]
    lines = ["   ".join(column.ljust(width) for column, width in zip(columns, widths, strict=True)).rstrip()]
    for row in rows:
        cells = (row.get(column, "").ljust(width) for column, width in zip(columns, widths, strict=True))
        lines.append("   ".join(cells).rstrip())
    return lines


# ---- describe -------------------------------------------------------------------------------------------


def waiting_reasons(obj: Mapping[str, Any], pods: Iterable[Mapping[str, Any]], events: Iterable[Any]) -> list[str]:
    """Why a job is not running yet, in words: suspended, waiting for a Kueue queue, pods the scheduler
    cannot place (its message says which resource is short), pods waiting on an image or a volume."""
    reasons: list[str] = []
    spec, labels = _spec(obj), (obj.get("metadata") or {}).get("labels") or {}
    if phase(obj) in FINISHED_PHASES:
        return reasons
    queue = spec.get("queueName") or labels.get(KUEUE_QUEUE_LABEL)
    name = (obj.get("metadata") or {}).get("name")
    if spec.get("suspend"):
        resume = f"""kubectl patch tj {name} --type merge -p '{{"spec":{{"suspend":false}}}}'"""
        reasons.append(
            f"suspended: waiting for Kueue to admit it through LocalQueue {queue}"
            if queue
            else f"suspended (spec.suspend: true); resume it with `{resume}`"
        )
    elif queue and phase(obj) == "Pending":
        reasons.append(f"queued in Kueue LocalQueue {queue}")
    for pod in pods:
        pod_name = (pod.get("metadata") or {}).get("name")
        pod_status = pod.get("status") or {}
        if pod_status.get("phase") != "Pending":
            continue
        scheduled = next((c for c in pod_status.get("conditions") or [] if c.get("type") == "PodScheduled"), None)
        if scheduled and scheduled.get("status") == "False":
            reasons.append(f"pod {pod_name} cannot be scheduled: {scheduled.get('message') or scheduled.get('reason')}")
            continue
        for container in pod_status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
                reasons.append(f"pod {pod_name}: {waiting.get('reason')}: {waiting.get('message') or ''}".rstrip(": "))
    scheduling = [e for e in events if e.get("reason") == "FailedScheduling"]
    if scheduling and not any("cannot be scheduled" in r for r in reasons):
        reasons.append(f"scheduler: {scheduling[-1].get('message')}")
    return reasons


def _event_lines(events: Sequence[Mapping[str, Any]], now: datetime) -> list[str]:
    if not events:
        return ["Events:  <none>"]
    lines = ["Events:", f"  {'TYPE':<9}{'REASON':<24}{'AGE':<8}{'OBJECT':<28}MESSAGE"]

    def when_of(event: Mapping[str, Any]) -> str:
        return str(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp") or "")

    for event in sorted(events, key=when_of)[-EVENTS_SHOWN:]:
        when = parse_time(event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp"))
        ago = format_duration((now - when).total_seconds()) if when else "-"
        involved = event.get("involvedObject") or {}
        who = f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"
        count = f" (x{event['count']})" if (event.get("count") or 1) > 1 else ""
        kind_reason = f"{event.get('type', ''):<9}{event.get('reason', ''):<24}"
        lines.append(f"  {kind_reason}{ago:<8}{who:<28}{event.get('message', '')}{count}")
    return lines


def _condition_lines(obj: Mapping[str, Any]) -> list[str]:
    conditions = _status(obj).get("conditions") or []
    if not conditions:
        return []
    lines = ["Conditions:", f"  {'TYPE':<18}{'STATUS':<8}{'REASON':<26}MESSAGE"]
    for c in conditions:
        lines.append(
            f"  {c.get('type', ''):<18}{c.get('status', ''):<8}{c.get('reason', ''):<26}{c.get('message', '')}"
        )
    return lines


def describe_job(
    obj: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]], now: datetime
) -> list[str]:
    meta, spec, status = obj.get("metadata") or {}, _spec(obj), _status(obj)
    row, progress = job_row(obj, now), job_progress(obj)
    metrics = status.get("metrics") or {}
    lines = [
        f"Name:         {meta.get('name')}",
        f"Namespace:    {meta.get('namespace')}",
        f"Phase:        {row['PHASE']}" + (f" ({_phase_reason(obj)})" if _phase_reason(obj) else ""),
        f"Replicas:     {row['REPLICAS']}  (pods: {_replica_summary(status)})",
        f"Progress:     {progress.line() if status.get('progress') else '-'}",
        f"Elapsed:      {format_duration(elapsed(obj, now))}",
        f"Restarts:     {row['RESTARTS']} (backoffLimit {(spec.get('runPolicy') or {}).get('backoffLimit', 3)})",
        f"GPU time:     {row['GPU-HOURS']} GPU-hours",
    ]
    if has_cost(status):
        lines.append(f"Cost:         {row['COST']} (estimated)")
    if row["SWEEP"] != "-":
        lines.append(f"Sweep:        {row['SWEEP']}")
    if metrics:
        objective = metrics.get("objective")
        best = (metrics.get("best") or {}).get(objective) if objective else None
        lines.append(f"Objective:    {objective or '-'}  latest {progress.metric or '-'}  best {format_number(best)}")
        latest = metrics.get("latest") or {}
        if latest:
            lines.append("Metrics:      " + "  ".join(f"{k}={format_number(v)}" for k, v in sorted(latest.items())))
    checkpoint = status.get("checkpoint") or {}
    if checkpoint.get("latestEpoch") is not None:
        lines.append(f"Checkpoint:   epoch {checkpoint['latestEpoch']} at {checkpoint.get('path', '?')}")
    waits = waiting_reasons(obj, pods, events)
    if waits:
        lines += ["Waiting:", *(f"  {reason}" for reason in waits)]
    diagnostics = status.get("diagnostics") or []
    if diagnostics:
        lines.append("Diagnostics:")
        for d in diagnostics:
            at = f" (epoch {d['epoch']})" if d.get("epoch") is not None else ""
            lines.append(f"  {d.get('severity', ''):<8}{d.get('type', '')}{at}: {d.get('message', '')}")
            if d.get("suggestion"):
                lines.append(f"          -> {d['suggestion']}")
    if pods:
        lines.append("Pods:")
        for pod in pods:
            lines.append(f"  {_pod_line(pod)}")
    return lines + _condition_lines(obj) + _event_lines(events, now)


def describe_sweep(
    obj: Mapping[str, Any],
    trial_jobs: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    now: datetime,
) -> list[str]:
    meta, spec, status = obj.get("metadata") or {}, _spec(obj), _status(obj)
    row = sweep_row(obj, now)
    objective = spec.get("objective") or {}
    counts = status.get("counts") or {}
    lines = [
        f"Name:          {meta.get('name')}",
        f"Namespace:     {meta.get('namespace')}",
        f"Phase:         {row['PHASE']}" + (f" ({_phase_reason(obj)})" if _phase_reason(obj) else ""),
        f"Objective:     {objective.get('goal', 'minimize')} {objective.get('metric', '?')}"
        + (f" (target {objective['target']})" if objective.get("target") is not None else ""),
        f"Algorithm:     {row['ALGORITHM']}  early stopping: {(spec.get('earlyStopping') or {}).get('rule', 'none')}",
        f"Trials:        {row['TRIALS']} finished: {counts.get('succeeded', 0)} succeeded, "
        f"{counts.get('earlyStopped', 0)} early-stopped, {counts.get('failed', 0)} failed; "
        f"{counts.get('running', 0)} running, {counts.get('pending', 0)} pending",
        f"Best:          {row['BEST']}",
        f"Elapsed:       {format_duration(elapsed(obj, now))}",
        f"GPU time:      {row['GPU-HOURS']} GPU-hours",
    ]
    if has_cost(status):
        lines.append(f"Cost:          {row['COST']} (estimated)")
    best = status.get("bestTrial")
    if best and best.get("parameters"):
        lines.append("Best params:   " + "  ".join(f"{k}={format_number(v)}" for k, v in best["parameters"].items()))
    trials = status.get("trials") or []
    if trials:
        names = list((trials[0].get("parameters") or {}).keys())
        # A COST column only when the operator prices GPU time (a trial row then has its estimatedCost).
        costed = any(t.get("estimatedCost") is not None for t in trials)
        currency = status.get("costCurrency")
        header = f"  {'#':<4}{'TRIAL':<26}{'PHASE':<14}{'EPOCHS':<8}{objective.get('metric', 'OBJECTIVE')[:18]:<20}"
        header += f"{'COST':<14}" if costed else ""
        lines += ["Trials:", header + "".join(f"{n[:14]:<16}" for n in names) + "NOTE"]
        live = {(t.get("metadata") or {}).get("name"): t for t in trial_jobs}
        for trial in trials:
            value = trial.get("metricValue")
            job = live.get(trial["name"])
            note = trial.get("reason") or ("" if job or not trial.get("deleted") else "deleted")
            if job and phase(job) not in FINISHED_PHASES and trial.get("phase") not in TERMINAL_TRIAL_PHASES:
                note = job_progress(job).line()
            params = "".join(f"{format_number((trial.get('parameters') or {}).get(n)):<16}" for n in names)
            lines.append(
                f"  {trial.get('number', ''):<4}{trial['name']:<26}{trial.get('phase', ''):<14}"
                f"{trial.get('epochs') if trial.get('epochs') is not None else '-'!s:<8}"
                f"{format_number(value) if value is not None else '-':<20}"
                + (f"{format_amount(trial.get('estimatedCost'), currency):<14}" if costed else "")
                + f"{params}{note}"
            )
    return lines + _condition_lines(obj) + _event_lines(events, now)


def _phase_reason(obj: Mapping[str, Any]) -> str:
    current = condition(obj, phase(obj))
    if current.get("status") == "True" and current.get("reason"):
        return f"{current['reason']}: {current.get('message', '')}".rstrip(": ")
    return ""


def _replica_summary(status: Mapping[str, Any]) -> str:
    replicas = status.get("replicas") or {}
    parts = [f"{replicas.get(k, 0)} {k}" for k in ("pending", "running", "succeeded", "failed") if replicas.get(k)]
    return ", ".join(parts) or "none"


def _pod_line(pod: Mapping[str, Any]) -> str:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    node = (pod.get("spec") or {}).get("nodeName") or "-"
    return f"{meta.get('name', ''):<28}{status.get('phase', ''):<11}node {node:<24}restarts {restarts}"


# ---- watch ----------------------------------------------------------------------------------------------


def final_line(kind: str, obj: Mapping[str, Any], now: datetime) -> str:
    """`job X Succeeded in 1m12s: val_accuracy=0.97` (a sweep: its best trial)."""
    name = (obj.get("metadata") or {}).get("name")
    took = format_duration(elapsed(obj, now))
    if kind == "HyperparamSweep":
        best = _status(obj).get("bestTrial")
        result = f"best {objective_name(obj)}={format_number(best['metricValue'])} ({best['name']})" if best else ""
        head = f"sweep {name} {phase(obj)} in {took}"
    else:
        metric = job_progress(obj).metric
        result = metric or ""
        head = f"job {name} {phase(obj)} in {took}"
    reason = _phase_reason(obj) if phase(obj) != "Succeeded" else ""
    return (
        f"{head}: {result}" + (f" ({reason})" if reason else "") if result else head + (f": {reason}" if reason else "")
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
