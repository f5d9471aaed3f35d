"""A sweep's or a job's report as one self-contained HTML page: plotly.js is inlined once (no CDN: the
page opens where there is no internet, and keeps working when attached to a ticket), every plot is a
plotly figure, and tables are plain HTML.

Plot ids are fixed (`PLOT_IDS`), so a test (and a user's script) can find each plot on the page.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any, Final

from trainsmart.console.report_data import JobReport, LossPoint, SweepReport, TrialData, report_cost
from trainsmart.console.views import format_amount, format_duration, format_number

REPORT_EXTRA_HINT: Final = "pip install 'trainsmart[report]'"
SWEEP_PLOT_IDS: Final = ("learning-curves", "objective-by-trial", "parallel-coordinates", "parameter-importance")
JOB_PLOT_IDS: Final = ("objective-curve", "loss-curve")
PHASE_COLORS: Final = {
    "Succeeded": "#2a9d8f",
    "EarlyStopped": "#e9c46a",
    "Failed": "#e76f51",
    "Running": "#457b9d",
    "Pending": "#adb5bd",
}
PLOT_HEIGHT: Final = "460px"

_STYLE: Final = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.9em; } td, th { padding: 3px 10px; border-bottom: 1px solid #ddd; }
th { text-align: left; } .plot { height: 460px; } .muted { color: #777; }
.Warning { color: #b5838d; } .Error { color: #c1121f; }
"""


class ReportDependencyError(RuntimeError):
    """plotly or matplotlib is not installed: the report extra is optional, the operator image lacks it."""


def _plotly() -> Any:
    try:
        import plotly.graph_objects as go
    except ImportError as error:
        raise ReportDependencyError(f"the HTML report needs plotly: {REPORT_EXTRA_HINT}") from error
    return go


def _figure_html(figure: Any, div_id: str) -> str:
    rendered: str = figure.to_html(
        full_html=False, include_plotlyjs=False, div_id=div_id, default_height=PLOT_HEIGHT, config={"responsive": True}
    )
    return rendered


def _page(title: str, body: Sequence[str]) -> str:
    from plotly.offline import get_plotlyjs

    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title>",
            f"<style>{_STYLE}</style>",
            f'<script type="text/javascript">{get_plotlyjs()}</script>',
            "</head><body>",
            *body,
            "</body></html>",
        ]
    )


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    lines = [f'<table id="{css_id}">' if css_id else "<table>", f"<tr>{head}</tr>"]
    for row in rows:
        lines.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>")
    lines.append("</table>")
    return "\n".join(lines)


def _trial_label(trial: TrialData) -> str:
    return f"#{trial.number} {trial.name}"


# ---- sweep ----------------------------------------------------------------------------------------------


def learning_curves_figure(report: SweepReport) -> Any:
    go = _plotly()
    figure = go.Figure()
    for trial in report.trials:
        if not trial.history:
            continue
        best = trial.name == report.best_trial
        figure.add_trace(
            go.Scatter(
                x=[p.epoch for p in trial.history],
                y=[p.value for p in trial.history],
                mode="lines+markers",
                name=_trial_label(trial)
                + (" (early-stopped)" if trial.early_stopped else "")
                + (" best" if best else ""),
                line={"width": 4 if best else 1.5, "dash": "dot" if trial.early_stopped else "solid"},
                marker={
                    "symbol": ["circle"] * (len(trial.history) - 1) + ["x" if trial.early_stopped else "circle"],
                    "size": [5] * (len(trial.history) - 1) + [12 if trial.early_stopped else 5],
                },
            )
        )
    figure.update_layout(
        title="Learning curves: every trial (dotted, x: early-stopped)",
        xaxis_title="epoch",
        yaxis_title=report.objective,
    )
    return figure


def objective_by_trial_figure(report: SweepReport) -> Any:
    go = _plotly()
    figure = go.Figure()
    for trial_phase in sorted({t.phase for t in report.trials}):
        trials = [t for t in report.trials if t.phase == trial_phase and t.value is not None]
        if not trials:
            continue
        figure.add_trace(
            go.Scatter(
                x=[t.number for t in trials],
                y=[t.value for t in trials],
                mode="markers",
                name=trial_phase,
                text=[t.name for t in trials],
                marker={
                    "size": 11,
                    "color": PHASE_COLORS.get(trial_phase, "#6c757d"),
                    "symbol": "x" if trial_phase == "EarlyStopped" else "circle",
                },
            )
        )
    figure.add_trace(
        go.Scatter(
            x=[n for n, _ in report.best_so_far],
            y=[v for _, v in report.best_so_far],
            mode="lines",
            line={"shape": "hv", "color": "#264653", "width": 2},
            name="best so far",
        )
    )
    figure.update_layout(
        title=f"{report.objective} by trial ({report.goal})", xaxis_title="trial", yaxis_title=report.objective
    )
    return figure


def parallel_coordinates_figure(report: SweepReport) -> Any:
    """Parameters against the objective, one line per trial with a value. Categorical parameters become
    their index with the values as tick labels; log-scale parameters are drawn as log10 (plotly's
    parallel coordinates have no log axis)."""
    go = _plotly()
    trials = [t for t in report.trials if t.value is not None]
    dimensions = []
    for axis in report.parameters:
        values: list[float] = []
        for trial in trials:
            raw = trial.parameters.get(axis.name)
            if axis.categories is not None:
                values.append(float(axis.categories.index(raw)) if raw in axis.categories else math.nan)
            elif isinstance(raw, int | float) and axis.log_scale and raw > 0:
                values.append(math.log10(raw))
            else:
                values.append(float(raw) if isinstance(raw, int | float) else math.nan)
        dimension: dict[str, Any] = {"label": f"log10({axis.name})" if axis.log_scale else axis.name, "values": values}
        if axis.categories is not None:
            dimension["tickvals"] = list(range(len(axis.categories)))
            dimension["ticktext"] = [str(c) for c in axis.categories]
        dimensions.append(dimension)
    objective = [t.value for t in trials]
    dimensions.append({"label": report.objective, "values": objective})
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": objective,
                "colorscale": "Viridis",
                "reversescale": report.goal == "minimize",
                "showscale": True,
            },
            dimensions=dimensions,
        )
    )
    figure.update_layout(title="Parameters against the objective")
    return figure


def importance_figure(report: SweepReport) -> Any:
    go = _plotly()
    ranked = sorted(report.importance.items(), key=lambda item: item[1])
    figure = go.Figure(go.Bar(x=[v for _, v in ranked], y=[k for k, _ in ranked], orientation="h"))
    figure.update_layout(
        title="Parameter importance (|Spearman rho| numeric, correlation ratio categorical)",
        xaxis={"range": [0, 1], "title": "association with the objective"},
    )
    return figure


def sweep_html(report: SweepReport) -> str:
    figures = dict(
        zip(
            SWEEP_PLOT_IDS,
            (
                learning_curves_figure(report),
                objective_by_trial_figure(report),
                parallel_coordinates_figure(report),
                importance_figure(report),
            ),
            strict=True,
        )
    )
    names = [a.name for a in report.parameters]
    summary = [
        ("phase", report.phase),
        ("objective", f"{report.goal} {report.objective}"),
        ("best", f"{report.best_trial} {format_number(report.best_value)}" if report.best_trial else "-"),
        ("algorithm", report.algorithm),
        ("early stopping", report.early_stopping),
        ("trials", str(len(report.trials))),
        ("elapsed", format_duration(report.elapsed_seconds)),
        ("GPU time", f"{report.gpu_seconds / 3600:.3f} GPU-hours"),
    ]
    cost = report_cost(report)
    if cost is not None:
        summary.append(("estimated cost", cost))
    # A cost column only when the operator prices GPU time (the trials then have their estimatedCost).
    costed = any(t.estimated_cost is not None for t in report.trials)
    rows = [
        [
            t.number,
            t.name,
            t.phase,
            "-" if t.epochs is None else t.epochs,
            "-" if t.value is None else format_number(t.value),
            *([format_amount(t.estimated_cost, report.cost_currency)] if costed else []),
            *(format_number(t.parameters.get(n)) for n in names),
            t.reason or ("" if t.history is not None else "trial deleted: no curve"),
        ]
        for t in report.trials
    ]
    body = [
        f"<h1>Sweep {html.escape(report.namespace)}/{html.escape(report.name)}</h1>",
        _table(["", ""], summary, "summary"),
        *(
            f"<h2>{html.escape(div_id.replace('-', ' '))}</h2>{_figure_html(f, div_id)}"
            for div_id, f in figures.items()
        ),
        "<h2>trials</h2>",
        _table(
            [
                "#",
                "trial",
                "phase",
                "epochs",
                report.objective,
                *(["estimated cost"] if costed else []),
                *names,
                "note",
            ],
            rows,
            "trials",
        ),
    ]
    return _page(f"sweep {report.name}", body)


# ---- job ------------------------------------------------------------------------------------------------


def objective_curve_figure(report: JobReport) -> Any:
    go = _plotly()
    figure = go.Figure(
        go.Scatter(
            x=[p.epoch for p in report.history],
            y=[p.value for p in report.history],
            mode="lines+markers",
            name=report.objective or "objective",
        )
    )
    for diagnostic in report.diagnostics:
        if diagnostic.epoch is not None:
            figure.add_vline(x=diagnostic.epoch, line_dash="dot", annotation_text=diagnostic.type)
    figure.update_layout(title=f"{report.objective or 'objective'} per epoch", xaxis_title="epoch")
    return figure


def loss_curve_figure(report: JobReport) -> Any:
    go = _plotly()
    figure = go.Figure()
    for label, pick in (("train", _train), ("validation", _validation)):
        points = [(p.epoch, pick(p)) for p in report.loss_curve if pick(p) is not None]
        figure.add_trace(
            go.Scatter(x=[e for e, _ in points], y=[v for _, v in points], mode="lines+markers", name=label)
        )
    figure.update_layout(title="Loss per epoch", xaxis_title="epoch", yaxis_title="loss")
    return figure


def job_html(report: JobReport) -> str:
    figures = dict(zip(JOB_PLOT_IDS, (objective_curve_figure(report), loss_curve_figure(report)), strict=True))
    summary = [("phase", report.phase), ("objective", report.objective or "-"), *report.timings.items()]
    if report.sweep:
        summary.append(("sweep", report.sweep))
    cost = report_cost(report)
    if cost is not None:
        summary.append(("estimated cost", cost))
    diagnostics = [
        [d.severity, d.type, "-" if d.epoch is None else d.epoch, d.message, d.suggestion or ""]
        for d in report.diagnostics
    ]
    metrics = [[k, format_number(v), format_number(report.best.get(k, "-"))] for k, v in sorted(report.latest.items())]
    body = [
        f"<h1>TrainingJob {html.escape(report.namespace)}/{html.escape(report.name)}</h1>",
        _table(["", ""], summary, "summary"),
        *(
            f"<h2>{html.escape(div_id.replace('-', ' '))}</h2>{_figure_html(f, div_id)}"
            for div_id, f in figures.items()
        ),
        "<h2>diagnostics</h2>",
        _table(["severity", "type", "epoch", "message", "suggestion"], diagnostics, "diagnostics")
        if diagnostics
        else '<p class="muted">none</p>',
        "<h2>metrics</h2>",
        _table(["metric", "latest", "best"], metrics, "metrics"),
    ]
    return _page(f"job {report.name}", body)


def _train(point: LossPoint) -> float | None:
    return point.train


def _validation(point: LossPoint) -> float | None:
    return point.validation
