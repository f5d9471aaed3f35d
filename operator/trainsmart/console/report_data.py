"""Pure: a sweep's (or a job's) recorded status -> the data its report plots. No cluster, no plotting
library: `trainsmart report` renders this with plotly (HTML) or matplotlib (PNG), and a notebook can use
it as it is (`sweep_report(...).trials`, `dataclasses.asdict(...)`).

Per-trial curves come from each trial's own TrainingJob status (metrics.history, lossCurve) while the
trial still exists; a trial deleted under trialRetention keeps its row (parameters, value, phase) but has
no curve.

Parameter importance is an association measure, not a model: for a numeric parameter the absolute
Spearman rank correlation with the objective, for a categorical one the correlation ratio (eta: the
share of the objective's spread explained by the category). Both lie in [0, 1], need no fitted model and
no numpy, and say something with the handful of trials a sweep has; with fewer than 3 finished trials
there is nothing to say and the map is empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from trainsmart.console.views import (
    cost_of,
    elapsed,
    format_duration,
    has_cost,
    objective_name,
    parse_time,
    phase,
)
from trainsmart.names import SWEEP_NAME_LABEL

MIN_TRIALS_FOR_IMPORTANCE: Final = 3
CATEGORICAL_TYPES: Final = frozenset({"choice"})


@dataclass(frozen=True)
class Point:
    epoch: int
    value: float


@dataclass(frozen=True)
class LossPoint:
    epoch: int
    train: float | None
    validation: float | None


@dataclass(frozen=True)
class Diagnostic:
    type: str
    severity: str
    message: str
    suggestion: str | None
    epoch: int | None


@dataclass(frozen=True)
class TrialData:
    """One trial: its row of the sweep's table and, when its TrainingJob still exists, its curves."""

    number: int
    name: str
    phase: str
    parameters: dict[str, Any]
    value: float | None
    epochs: int | None
    gpu_seconds: float
    early_stopped: bool
    reason: str | None
    history: list[Point] | None
    """The objective per epoch; None when the trial's TrainingJob is gone."""
    loss_curve: list[LossPoint] | None
    estimated_cost: float | None = None
    """The trial's estimated cost (its row's estimatedCost, in the sweep's `cost_currency`); None without a
    GPU price."""


@dataclass(frozen=True)
class ParameterAxis:
    """One parameter as the plots draw it: numeric (log scale when its search space is), or categorical
    with its values in the order the spec lists them."""

    name: str
    type: str
    log_scale: bool
    categories: list[Any] | None


@dataclass(frozen=True)
class SweepReport:
    name: str
    namespace: str
    phase: str
    objective: str
    goal: str
    algorithm: str
    early_stopping: str
    parameters: list[ParameterAxis]
    trials: list[TrialData]
    best_trial: str | None
    best_value: float | None
    best_so_far: list[tuple[int, float]]
    """(trial number, best objective among trials up to it), for trials with a value."""
    importance: dict[str, float]
    elapsed_seconds: float | None
    gpu_seconds: float
    estimated_cost: Any = None
    cost_currency: str | None = None
    cost_headline: str | None = None
    """The operator's rounded cost string (`$1.23`), as `kubectl get` shows it."""


@dataclass(frozen=True)
class JobReport:
    name: str
    namespace: str
    phase: str
    objective: str | None
    history: list[Point]
    loss_curve: list[LossPoint]
    latest: dict[str, float]
    best: dict[str, float]
    diagnostics: list[Diagnostic]
    timings: dict[str, str] = field(default_factory=dict)
    """Label -> human value: created, started, finished, elapsed, per epoch, throughput, GPU time, ..."""
    sweep: str | None = None
    estimated_cost: Any = None
    cost_currency: str | None = None
    cost_headline: str | None = None


def report_cost(report: SweepReport | JobReport) -> str | None:
    """The report's estimated cost in words (`$1.23`, `1.23 EUR`), or None when it has none."""
    status = {
        "estimatedCost": report.estimated_cost,
        "costCurrency": report.cost_currency,
        "costHeadline": report.cost_headline,
    }
    return cost_of(status) if has_cost(status) else None


def better(goal: str, a: float, b: float) -> bool:
    return a > b if goal == "maximize" else a < b


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def history_of(job: Mapping[str, Any]) -> list[Point]:
    metrics = (job.get("status") or {}).get("metrics") or {}
    return [
        Point(int(p["epoch"]), v) for p in metrics.get("history") or [] if (v := _finite(p.get("value"))) is not None
    ]


def loss_curve_of(job: Mapping[str, Any]) -> list[LossPoint]:
    metrics = (job.get("status") or {}).get("metrics") or {}
    return [
        LossPoint(int(p["epoch"]), _finite(p.get("train")), _finite(p.get("validation")))
        for p in metrics.get("lossCurve") or []
    ]


def _axes(spec: Mapping[str, Any], trials: Sequence[Mapping[str, Any]]) -> list[ParameterAxis]:
    axes = []
    declared = {p.get("name"): p for p in spec.get("parameters") or []}
    names = list(declared) or sorted({k for t in trials for k in (t.get("parameters") or {})})
    for name in names:
        param = declared.get(name) or {}
        values = [t["parameters"][name] for t in trials if name in (t.get("parameters") or {})]
        type_ = str(param.get("type") or ("choice" if any(isinstance(v, str) for v in values) else "uniform"))
        categories = None
        if type_ in CATEGORICAL_TYPES:
            categories = list(param.get("values") or dict.fromkeys(values))
        axes.append(ParameterAxis(str(name), type_, type_.startswith("log"), categories))
    return axes


def sweep_report(sweep: Mapping[str, Any], trial_jobs: Sequence[Mapping[str, Any]]) -> SweepReport:
    """The report data of `sweep` (its object as the API returns it) with the trial TrainingJobs that
    still exist (any order; those of other sweeps are ignored)."""
    meta, spec, status = sweep.get("metadata") or {}, sweep.get("spec") or {}, sweep.get("status") or {}
    goal = str((spec.get("objective") or {}).get("goal") or "minimize")
    name = str(meta.get("name", ""))
    jobs = {
        (j.get("metadata") or {}).get("name"): j
        for j in trial_jobs
        if ((j.get("metadata") or {}).get("labels") or {}).get(SWEEP_NAME_LABEL, name) == name
    }
    rows = sorted(status.get("trials") or [], key=lambda t: int(t.get("number", 0)))
    trials = []
    for row in rows:
        job = jobs.get(row["name"])
        trials.append(
            TrialData(
                number=int(row.get("number", 0)),
                name=str(row["name"]),
                phase=str(row.get("phase", "Pending")),
                parameters=dict(row.get("parameters") or {}),
                value=_finite(row.get("metricValue")),
                epochs=row.get("epochs"),
                gpu_seconds=float(row.get("gpuSeconds") or 0.0),
                early_stopped=row.get("phase") == "EarlyStopped",
                reason=row.get("reason"),
                history=history_of(job) if job else None,
                loss_curve=loss_curve_of(job) if job else None,
                estimated_cost=_finite(row.get("estimatedCost")),
            )
        )
    best_so_far: list[tuple[int, float]] = []
    for trial in trials:
        if trial.value is None:
            continue
        if not best_so_far or better(goal, trial.value, best_so_far[-1][1]):
            best_so_far.append((trial.number, trial.value))
        else:
            best_so_far.append((trial.number, best_so_far[-1][1]))
    axes = _axes(spec, rows)
    best = status.get("bestTrial") or {}
    return SweepReport(
        name=name,
        namespace=str(meta.get("namespace", "")),
        phase=phase(sweep),
        objective=objective_name(sweep),
        goal=goal,
        algorithm=str((spec.get("algorithm") or {}).get("name") or "tpe"),
        early_stopping=str((spec.get("earlyStopping") or {}).get("rule") or "none"),
        parameters=axes,
        trials=trials,
        best_trial=best.get("name"),
        best_value=_finite(best.get("metricValue")),
        best_so_far=best_so_far,
        importance=parameter_importance(axes, trials),
        elapsed_seconds=elapsed(sweep, parse_time(status.get("completionTime")) or _latest_time(sweep)),
        gpu_seconds=float(status.get("gpuSeconds") or 0.0),
        estimated_cost=status.get("estimatedCost"),
        cost_currency=status.get("costCurrency"),
        cost_headline=status.get("costHeadline"),
    )


def _latest_time(obj: Mapping[str, Any]) -> datetime:
    """A running sweep's "now", taken from the object itself so the report of a recorded status is the
    same whenever it is made: the newest condition transition, else its creation."""
    times = [parse_time(c.get("lastTransitionTime")) for c in (obj.get("status") or {}).get("conditions") or []]
    times.append(parse_time((obj.get("metadata") or {}).get("creationTimestamp")))
    known = [t for t in times if t is not None]
    return max(known) if known else datetime.fromtimestamp(0).astimezone()


def _ranks(values: Sequence[float]) -> list[float]:
    """Average ranks (ties share the mean of their positions), as Spearman's correlation uses."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2.0
        start = end + 1
    return ranks


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def _eta(groups: Sequence[Any], ys: Sequence[float]) -> float:
    mean = sum(ys) / len(ys)
    total = sum((y - mean) ** 2 for y in ys)
    if total == 0:
        return 0.0
    by_group: dict[Any, list[float]] = {}
    for group, y in zip(groups, ys, strict=True):
        by_group.setdefault(repr(group), []).append(y)
    between = sum(len(v) * (sum(v) / len(v) - mean) ** 2 for v in by_group.values())
    return math.sqrt(between / total)


def parameter_importance(axes: Sequence[ParameterAxis], trials: Sequence[TrialData]) -> dict[str, float]:
    """Parameter -> association with the objective in [0, 1] (see the module docstring), over the trials
    that have a value; {} with fewer than MIN_TRIALS_FOR_IMPORTANCE of them."""
    scored = [t for t in trials if t.value is not None]
    if len(scored) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}
    importance: dict[str, float] = {}
    for axis in axes:
        pairs = [(t.parameters[axis.name], t.value) for t in scored if axis.name in t.parameters]
        if len(pairs) < MIN_TRIALS_FOR_IMPORTANCE:
            continue
        xs, ys = [p[0] for p in pairs], [float(p[1]) for p in pairs if p[1] is not None]
        if axis.categories is not None or not all(_finite(x) is not None for x in xs):
            importance[axis.name] = round(_eta(xs, ys), 4)
        else:
            importance[axis.name] = round(abs(_pearson(_ranks([float(x) for x in xs]), _ranks(ys))), 4)
    return importance


def job_report(job: Mapping[str, Any], now: datetime | None = None) -> JobReport:
    """The report data of one TrainingJob (a trial or not); `now` ends a running job's elapsed time."""
    meta, spec, status = job.get("metadata") or {}, job.get("spec") or {}, job.get("status") or {}
    metrics = status.get("metrics") or {}
    progress = status.get("progress") or {}
    end = parse_time(status.get("completionTime")) or now or _latest_time(job)
    took = elapsed(job, end)
    epochs = int(progress.get("epoch") or 0)
    gpus = int(spec.get("gpusPerReplica") or 0) * int(spec.get("replicas") or 1)
    timings = {
        "created": str(meta.get("creationTimestamp") or "-"),
        "started": str(status.get("startTime") or "-"),
        "finished": str(status.get("completionTime") or "-"),
        "elapsed": format_duration(took),
        "epochs": f"{epochs}/{progress.get('totalEpochs') or '?'}",
        "per epoch": format_duration(took / epochs) if took is not None and epochs else "-",
        "throughput": f"{progress['samplesPerSecond']:.0f} samples/s" if progress.get("samplesPerSecond") else "-",
        "restarts": str(status.get("restarts") or 0),
        "GPUs": str(gpus),
        "GPU time": f"{float(status.get('gpuSeconds') or 0) / 3600:.3f} GPU-hours",
    }
    return JobReport(
        name=str(meta.get("name", "")),
        namespace=str(meta.get("namespace", "")),
        phase=phase(job),
        objective=metrics.get("objective"),
        history=history_of(job),
        loss_curve=loss_curve_of(job),
        latest={k: v for k, v in (metrics.get("latest") or {}).items() if _finite(v) is not None},
        best={k: v for k, v in (metrics.get("best") or {}).items() if _finite(v) is not None},
        diagnostics=[
            Diagnostic(
                str(d.get("type", "")),
                str(d.get("severity", "")),
                str(d.get("message", "")),
                d.get("suggestion"),
                d.get("epoch"),
            )
            for d in status.get("diagnostics") or []
        ],
        timings=timings,
        sweep=(meta.get("labels") or {}).get(SWEEP_NAME_LABEL),
        estimated_cost=status.get("estimatedCost"),
        cost_currency=status.get("costCurrency"),
        cost_headline=status.get("costHeadline"),
    )
