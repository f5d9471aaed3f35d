"""The same report as one PNG (matplotlib, Agg backend: no display needed), for a ticket or a slide: the
sweep's four plots on a 2x2 grid, or the job's two curves with its diagnostics underneath."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from trainsmart.console.report_data import JobReport, LossPoint, SweepReport, report_cost
from trainsmart.console.report_html import PHASE_COLORS, REPORT_EXTRA_HINT, ReportDependencyError


def _title_cost(report: SweepReport | JobReport) -> str:
    """`, estimated cost $1.23` for a title; "$" escaped, or matplotlib would read it as math text."""
    cost = report_cost(report)
    return f", estimated cost {cost}".replace("$", r"\$") if cost is not None else ""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ReportDependencyError(f"the PNG report needs matplotlib: {REPORT_EXTRA_HINT}") from error
    return plt


def _scaled(report: SweepReport, values: list[Any], axis_index: int) -> list[float]:
    """A parallel-coordinates axis mapped to [0, 1] (categories by index, log parameters in log10)."""
    axis = report.parameters[axis_index] if axis_index < len(report.parameters) else None
    numbers: list[float] = []
    for raw in values:
        if axis is not None and axis.categories is not None:
            numbers.append(float(axis.categories.index(raw)) if raw in axis.categories else math.nan)
        elif isinstance(raw, int | float) and axis is not None and axis.log_scale and raw > 0:
            numbers.append(math.log10(raw))
        else:
            numbers.append(float(raw) if isinstance(raw, int | float) else math.nan)
    finite = [n for n in numbers if math.isfinite(n)]
    low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = (high - low) or 1.0
    return [(n - low) / span if math.isfinite(n) else math.nan for n in numbers]


def write_sweep_png(report: SweepReport, path: Path) -> None:
    plt = _pyplot()
    figure, ((curves, by_trial), (parallel, importance)) = plt.subplots(2, 2, figsize=(15, 10))
    figure.suptitle(
        f"sweep {report.namespace}/{report.name}: {report.phase}, best {report.best_trial}{_title_cost(report)}"
    )
    for trial in report.trials:
        if not trial.history:
            continue
        style = {
            "linestyle": ":" if trial.early_stopped else "-",
            "linewidth": 3 if trial.name == report.best_trial else 1,
        }
        curves.plot(
            [p.epoch for p in trial.history], [p.value for p in trial.history], label=f"#{trial.number}", **style
        )
        if trial.early_stopped:
            last = trial.history[-1]
            curves.plot([last.epoch], [last.value], "x", color="black", markersize=10)
    curves.set(title="learning curves (dotted, x: early-stopped)", xlabel="epoch", ylabel=report.objective)
    curves.legend(fontsize="small")
    for trial in report.trials:
        if trial.value is not None:
            by_trial.scatter(
                trial.number,
                trial.value,
                color=PHASE_COLORS.get(trial.phase, "#6c757d"),
                marker="x" if trial.early_stopped else "o",
                s=60,
            )
    if report.best_so_far:
        by_trial.step(*zip(*report.best_so_far, strict=True), where="post", color="#264653", label="best so far")
        by_trial.legend()
    by_trial.set(title=f"{report.objective} by trial ({report.goal})", xlabel="trial", ylabel=report.objective)
    scored = [t for t in report.trials if t.value is not None]
    columns = [_scaled(report, [t.parameters.get(a.name) for t in scored], i) for i, a in enumerate(report.parameters)]
    columns.append(_scaled(report, [t.value for t in scored], len(report.parameters)))
    labels = [a.name for a in report.parameters] + [report.objective]
    values = [t.value for t in scored if t.value is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    colormap = plt.get_cmap("viridis")
    for row, trial in enumerate(scored):
        shade = ((trial.value or 0.0) - low) / ((high - low) or 1.0)
        parallel.plot(range(len(columns)), [column[row] for column in columns], color=colormap(shade), alpha=0.8)
    parallel.set_xticks(range(len(labels)), labels)
    parallel.set(title="parameters against the objective (each axis scaled to 0-1)", yticks=[])
    ranked = sorted(report.importance.items(), key=lambda item: item[1])
    importance.barh([k for k, _ in ranked], [v for _, v in ranked])
    importance.set(title="parameter importance", xlim=(0, 1), xlabel="association with the objective")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_job_png(report: JobReport, path: Path) -> None:
    plt = _pyplot()
    figure, (objective, losses) = plt.subplots(1, 2, figsize=(14, 5.5))
    elapsed = report.timings.get("elapsed", "")
    figure.suptitle(f"job {report.namespace}/{report.name}: {report.phase}, {elapsed}{_title_cost(report)}")
    objective.plot([p.epoch for p in report.history], [p.value for p in report.history], marker="o")
    for diagnostic in report.diagnostics:
        if diagnostic.epoch is not None:
            objective.axvline(diagnostic.epoch, linestyle=":", color="#c1121f")
            objective.annotate(diagnostic.type, (diagnostic.epoch, 0.95), xycoords=("data", "axes fraction"))
    objective.set(title=f"{report.objective or 'objective'} per epoch", xlabel="epoch")
    for label, pick in (("train", _train), ("validation", _validation)):
        points = [(p.epoch, pick(p)) for p in report.loss_curve if pick(p) is not None]
        if points:
            losses.plot(*zip(*points, strict=True), marker="o", label=label)
    losses.set(title="loss per epoch", xlabel="epoch")
    losses.legend()
    notes = [f"{d.severity} {d.type}: {d.message}" for d in report.diagnostics][:4]
    if notes:
        figure.text(0.01, 0.01, "\n".join(notes), fontsize="small", color="#c1121f")
        figure.tight_layout(rect=(0, 0.05 * len(notes), 1, 1))
    else:
        figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _train(point: LossPoint) -> float | None:
    return point.train


def _validation(point: LossPoint) -> float | None:
    return point.validation
