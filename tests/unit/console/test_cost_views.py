"""The estimated cost in `get`, `describe` and `report`, from the recorded sweep priced as the operator prices
it (its status fields added to the copy each test gets: the recording was made without a GPU price).

Pins:
- a job's and a sweep's COST column is the operator's costHeadline (`$1.50`), else estimatedCost with its
  currency; `describe` has a Cost line only when there is a cost;
- `describe` of a sweep adds a COST column to the trial table with each trial's estimatedCost, and has no such
  column when the trials carry none;
- the report data carries each trial's cost and the total; the HTML report shows the total in its summary
  and a cost column in the trial table (none without costs); the job report shows the job's cost; the PNG
  report is written with a `$` in its title.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainsmart.console.api import write_report
from trainsmart.console.report_data import job_report, report_cost, sweep_report
from trainsmart.console.report_html import job_html, sweep_html
from trainsmart.console.views import describe_job, describe_sweep, job_row, sweep_row
from trainsmart.status.cost import format_money

NOW = datetime(2026, 12, 7, 18, 40, tzinfo=UTC)
PRICE_PER_GPU_SECOND = 2.5 / 3600


def priced(recorded: dict[str, Any]) -> dict[str, Any]:
    """`recorded` as if each trial had used (number + 1) GPU-hours at 2.50 USD per GPU-hour: the status fields
    the operator writes with a price (trial jobs: estimatedCost, costCurrency, costHeadline; the sweep's
    trial rows: estimatedCost; the sweep: the sum)."""
    total = 0.0
    rows = {row["name"]: row for row in recorded["sweep"]["status"]["trials"]}
    for job in recorded["trials"]:
        name = job["metadata"]["name"]
        cost = (rows[name]["number"] + 1) * 3600 * PRICE_PER_GPU_SECOND
        job["status"].update(estimatedCost=cost, costCurrency="USD", costHeadline=format_money(cost, "USD"))
        rows[name]["estimatedCost"] = cost
        total += cost
    recorded["sweep"]["status"].update(estimatedCost=total, costCurrency="USD", costHeadline=format_money(total, "USD"))
    return recorded


def test_rows_show_the_cost_headline_else_the_amount_with_its_currency(recorded: dict[str, Any]) -> None:
    data = priced(recorded)
    job = data["trials"][1]
    assert job_row(job, NOW)["COST"] == "$5.00"
    assert sweep_row(data["sweep"], NOW)["COST"] == "$52.50"
    del job["status"]["costHeadline"]
    assert job_row(job, NOW)["COST"] == "5.00 USD"
    assert "Cost:         5.00 USD (estimated)" in describe_job(job, [], [], NOW)


def test_describe_has_a_cost_line_only_with_a_cost(recorded: dict[str, Any]) -> None:
    job = recorded["trials"][0]
    assert not any(line.startswith("Cost:") for line in describe_job(job, [], [], NOW))
    assert not any(line.startswith("Cost:") for line in describe_sweep(recorded["sweep"], [], [], NOW))
    data = priced(recorded)
    assert "Cost:         $2.50 (estimated)" in describe_job(data["trials"][0], [], [], NOW)
    assert "Cost:          $52.50 (estimated)" in describe_sweep(data["sweep"], data["trials"], [], NOW)


def trial_table(lines: list[str]) -> list[str]:
    start = lines.index("Trials:") + 1
    end = next(i for i, line in enumerate(lines) if i > start and not line.startswith("  "))
    return lines[start:end]


def test_describe_sweep_lists_each_trials_cost(recorded: dict[str, Any]) -> None:
    header, *rows = trial_table(describe_sweep(recorded["sweep"], recorded["trials"], [], NOW))
    assert "COST" not in header.split()
    data = priced(recorded)
    header, *rows = trial_table(describe_sweep(data["sweep"], data["trials"], [], NOW))
    columns = header.split()
    assert columns[:6] == ["#", "TRIAL", "PHASE", "EPOCHS", "val_accuracy", "COST"]
    at = header.index("COST")
    assert [row[at:].split()[:2] for row in rows] == [[f"{2.5 * n:.2f}", "USD"] for n in range(1, 7)]


def test_reports_carry_and_show_the_costs(recorded: dict[str, Any], tmp_path: Path) -> None:
    plain = sweep_report(recorded["sweep"], recorded["trials"])
    assert report_cost(plain) is None and all(t.estimated_cost is None for t in plain.trials)
    assert "estimated cost" not in sweep_html(plain)

    data = priced(recorded)
    report = sweep_report(data["sweep"], data["trials"])
    assert [t.estimated_cost for t in report.trials] == [2.5 * n for n in range(1, 7)]
    assert (report.estimated_cost, report.cost_currency, report_cost(report)) == (52.5, "USD", "$52.50")
    page = sweep_html(report)
    assert "<td>estimated cost</td><td>$52.50</td>" in page.replace("\n", "")
    trials = page[page.index('id="trials"') :]
    assert "estimated cost" in trials and "15.00 USD" in trials

    job = job_report(data["trials"][3])
    assert report_cost(job) == "$10.00"
    assert "$10.00" in job_html(job)
    for name, written in (("sweep.png", report), ("job.png", job)):
        assert write_report(written, tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
