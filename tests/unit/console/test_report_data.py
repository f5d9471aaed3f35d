"""Report data from a recorded sweep and its trials (no cluster).

Pins:
- every trial of the table is a row in number order, with its parameters, value and epochs; the
  early-stopped ones are marked; curves come from the trials' own statuses, and a trial whose TrainingJob
  is gone keeps its row without a curve;
- best-so-far follows the objective's goal (maximize: never falls; minimize: never rises);
- importance ranks the parameter that decides the objective first (the learning rate in the recorded
  sweep), is 0..1, and is empty with fewer than 3 scored trials;
- a job report has its curves, diagnostics and timings (per-epoch time, GPU time);
- `write_report` writes self-contained HTML with every plot (plotly.js inline, no CDN), a PNG and JSON,
  and refuses other suffixes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from trainsmart.console.api import write_report
from trainsmart.console.report_data import job_report, sweep_report
from trainsmart.console.report_html import JOB_PLOT_IDS, SWEEP_PLOT_IDS


def test_every_trial_is_a_row_in_order_with_its_curve_and_early_stops_marked(recorded: dict[str, Any]) -> None:
    report = sweep_report(recorded["sweep"], recorded["trials"])
    assert [t.number for t in report.trials] == [0, 1, 2, 3, 4, 5]
    assert [t.name for t in report.trials if t.early_stopped] == ["digits-lr-2", "digits-lr-5"]
    assert all(t.phase == "EarlyStopped" for t in report.trials if t.early_stopped)
    for trial in report.trials:
        assert trial.history is not None and len(trial.history) == trial.epochs
        assert trial.value == max(p.value for p in trial.history)
    assert (report.best_trial, report.objective, report.goal) == ("digits-lr-0", "val_accuracy", "maximize")
    assert report.early_stopping == "median"


def test_a_deleted_trial_keeps_its_row_without_a_curve(recorded: dict[str, Any]) -> None:
    kept = [job for job in recorded["trials"] if job["metadata"]["name"] != "digits-lr-3"]
    report = sweep_report(recorded["sweep"], kept)
    (gone,) = [t for t in report.trials if t.name == "digits-lr-3"]
    assert gone.history is None and gone.value is not None and gone.parameters["batch"] == 1


def test_best_so_far_follows_the_goal(recorded: dict[str, Any]) -> None:
    sweep = recorded["sweep"]
    # Reorder so the best is not trial 0: the line must step up.
    values = [0.2, 0.5, 0.4, 0.9, 0.1, 0.95]
    for row, value in zip(sweep["status"]["trials"], values, strict=True):
        row["metricValue"] = value
    assert [v for _, v in sweep_report(sweep, []).best_so_far] == [0.2, 0.5, 0.5, 0.9, 0.9, 0.95]
    sweep["spec"]["objective"]["goal"] = "minimize"
    assert [v for _, v in sweep_report(sweep, []).best_so_far] == [0.2, 0.2, 0.2, 0.2, 0.1, 0.1]


def test_importance_ranks_the_learning_rate_first(recorded: dict[str, Any]) -> None:
    importance = sweep_report(recorded["sweep"], recorded["trials"]).importance
    assert set(importance) == {"lr", "batch"}
    assert all(0 <= v <= 1 for v in importance.values())
    assert importance["lr"] > importance["batch"]


def test_importance_is_empty_with_too_few_scored_trials(recorded: dict[str, Any]) -> None:
    sweep = recorded["sweep"]
    sweep["status"]["trials"] = sweep["status"]["trials"][:2]
    assert sweep_report(sweep, recorded["trials"]).importance == {}


def test_a_job_report_has_curves_diagnostics_and_timings(recorded: dict[str, Any]) -> None:
    job = recorded["trials"][0]
    job["status"]["diagnostics"] = [
        {"type": "Overfitting", "severity": "Warning", "message": "validation loss rose", "epoch": 5}
    ]
    report = job_report(job)
    assert [p.epoch for p in report.history] == [1, 2, 3, 4, 5, 6]
    assert [p.epoch for p in report.loss_curve] == [1, 2, 3, 4, 5, 6]
    assert all(p.train is not None and p.validation is not None for p in report.loss_curve)
    assert report.diagnostics[0].type == "Overfitting" and report.diagnostics[0].epoch == 5
    assert report.timings["epochs"] == "6/6" and report.timings["per epoch"].endswith("s")
    assert report.sweep == "digits-lr" and report.phase == "Succeeded"


def test_reports_are_written_as_self_contained_html_png_and_json(recorded: dict[str, Any], tmp_path: Path) -> None:
    sweep = sweep_report(recorded["sweep"], recorded["trials"])
    page = write_report(sweep, tmp_path / "sweep.html").read_text()
    assert all(f'id="{plot}"' in page for plot in SWEEP_PLOT_IDS)
    assert not re.search(r"<script[^>]+src=", page) and "Plotly.newPlot" in page
    job_page = write_report(job_report(recorded["trials"][0]), tmp_path / "job.html").read_text()
    assert all(f'id="{plot}"' in job_page for plot in JOB_PLOT_IDS)
    for name, data in (("sweep.png", sweep), ("job.png", job_report(recorded["trials"][0]))):
        assert write_report(data, tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    written = json.loads(write_report(sweep, tmp_path / "sweep.json").read_text())
    assert written == json.loads(json.dumps(dataclasses.asdict(sweep), default=str))
    with pytest.raises(ValueError, match=r"use \.html, \.png or \.json"):
        write_report(sweep, tmp_path / "sweep.pdf")
