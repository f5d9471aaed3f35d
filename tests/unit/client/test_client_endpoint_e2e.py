"""The client against the operator's real report endpoint app (`build_report_app`, served on loopback).

Pins:
- a wrapped, unmodified script's JSON epoch lines arrive in the job's inbox as TrainerReports (epochs 1..3
  with their metrics, then a final report with the exit code), and the wrapper keeps the exit code;
- `--format kv` with a NaN loss line: the finite metrics arrive and a NonFiniteLoss diagnostic with them;
- a script using the library (`ts.report(..., epoch=...)`, `ts.finish()`) lands in the inbox the same way;
- a wrong token is refused by the endpoint (nothing queued) and the run is not held up by it.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from support.client_reports import JOB, Endpoint
from trainsmart_trainer.contract import ReportKind, TrainerReport

pytestmark = pytest.mark.asyncio

JSON_SCRIPT = """
import json, sys
for epoch in range(1, 4):
    print("training...", flush=True)
    print(json.dumps({"epoch": epoch, "train_loss": 1.0 / epoch, "val_accuracy": 0.5 + epoch / 10}), flush=True)
sys.exit(int(sys.argv[1]))
"""

LIBRARY_SCRIPT = """
import trainsmart_client as ts
for epoch in range(1, 3):
    ts.progress(epoch - 1, total_epochs=2)
    ts.report({"val_loss": 0.5 / epoch}, epoch=epoch)
assert ts.finish(10)
"""


async def run(env: dict[str, str], *argv: str) -> int:
    process = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), timeout=60)


def wrap(*options: str) -> list[str]:
    return [sys.executable, "-m", "trainsmart_client", "wrap", *options, "--", sys.executable, "-c"]


async def test_a_wrapped_scripts_epochs_arrive_as_trainer_reports(
    report_endpoint: Endpoint, clean_env: dict[str, str]
) -> None:
    code = await run({**clean_env, **report_endpoint.environ()}, *wrap("--total-epochs", "3"), JSON_SCRIPT, "0")
    assert code == 0
    reports: list[TrainerReport] = report_endpoint.inbox.take(JOB)
    epochs = [report for report in reports if report.kind == ReportKind.EPOCH]
    assert [(report.epoch, report.total_epochs) for report in epochs] == [(1, 3), (2, 3), (3, 3)]
    assert epochs[1].metrics == {"train_loss": 0.5, "val_accuracy": 0.7}
    assert reports[-1].kind == ReportKind.FINAL and reports[-1].final is not None
    assert (reports[-1].final.status.value, reports[-1].final.epochs_completed) == ("succeeded", 3)
    assert report_endpoint.triggered


async def test_a_failing_wrapped_script_keeps_its_exit_code_in_the_final_report(
    report_endpoint: Endpoint, clean_env: dict[str, str]
) -> None:
    assert await run({**clean_env, **report_endpoint.environ()}, *wrap(), JSON_SCRIPT, "11") == 11
    final = report_endpoint.inbox.take(JOB)[-1]
    assert final.final is not None and (final.final.status.value, final.final.exit_code) == ("failed", 11)


async def test_a_nan_loss_line_becomes_a_diagnostic(report_endpoint: Endpoint, clean_env: dict[str, str]) -> None:
    script = "print('epoch=1 train_loss=nan val_accuracy=0.1')"
    assert await run({**clean_env, **report_endpoint.environ()}, *wrap("--format", "kv"), script) == 0
    reports = report_endpoint.inbox.take(JOB)
    kinds = [report.kind for report in reports]
    assert kinds == [ReportKind.EPOCH, ReportKind.DIAGNOSTIC, ReportKind.FINAL]
    assert reports[0].metrics == {"val_accuracy": 0.1}
    assert reports[1].diagnostics[0].type.value == "NonFiniteLoss"


async def test_a_script_using_the_library_lands_in_the_inbox(
    report_endpoint: Endpoint, clean_env: dict[str, str]
) -> None:
    assert await run({**clean_env, **report_endpoint.environ()}, sys.executable, "-c", LIBRARY_SCRIPT) == 0
    epochs = [report for report in report_endpoint.inbox.take(JOB) if report.kind == ReportKind.EPOCH]
    assert [(report.epoch, report.metrics["val_loss"]) for report in epochs] == [(1, 0.5), (2, 0.25)]


async def test_a_wrong_token_is_refused_and_does_not_hold_up_the_run(
    report_endpoint: Endpoint, clean_env: dict[str, str]
) -> None:
    started = time.monotonic()
    code = await run({**clean_env, **report_endpoint.environ(token="stolen")}, *wrap(), JSON_SCRIPT, "0")
    assert code == 0
    assert time.monotonic() - started < 20
    assert report_endpoint.inbox.pending(JOB) == 0
