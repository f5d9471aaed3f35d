"""The wrapper's final result in the termination message: how a custom job's outcome reaches the operator
when no report did.

Pins:
- the message is the contract's FinalResult, parsed as the operator parses it, within 4096 bytes however
  many epochs and metrics the run had: the objective's newest per-epoch values are kept, as the packaged
  trainer keeps them, and the client's limits and default objective are the contract's and the operator's;
- the objective is the named one (then also in every report), else the operator's default when the run
  reported it; a repeated epoch (a restarted count) replaces the newer values; no objective, no history;
- where: TRAINSMART_TERMINATION_LOG when its directory is writable; a missing directory, or a path that
  cannot be written, is skipped or logged, never raised;
- `wrap` around a real command whose report endpoint is unreachable writes the message (exit status kept,
  final metrics and history in it), also when the command was stopped (SIGTERM, exit 143); a failed
  command leaves the file empty (the kubelet then shows the log tail), and so does every rank but 0.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from support.client_reports import PostRecorder
from trainsmart.status.report_fold import DEFAULT_OBJECTIVE
from trainsmart_client import wire
from trainsmart_client.job_env import TERMINATION_LOG, JobEnvironment
from trainsmart_client.session import Session
from trainsmart_client.termination_log import (
    MESSAGE_MAX_BYTES,
    termination_log_path,
    termination_message,
    write_termination_message,
)
from trainsmart_trainer import contract
from trainsmart_trainer.contract import FinalResult, TrainerReport

WRAP = [sys.executable, "-m", "trainsmart_client", "wrap"]


def test_the_limits_and_the_default_objective_are_the_contracts() -> None:
    assert MESSAGE_MAX_BYTES == contract.TERMINATION_MESSAGE_MAX_BYTES
    assert wire.FINAL_HISTORY_MAX_ITEMS == contract.FINAL_HISTORY_MAX_ITEMS
    assert wire.DEFAULT_OBJECTIVE == DEFAULT_OBJECTIVE


@pytest.mark.parametrize("epochs", [1, 64, 1000])
@pytest.mark.parametrize("metric_count", [2, 60])
def test_the_message_is_a_final_result_within_the_limit(
    job_env: JobEnvironment, recorder: PostRecorder, epochs: int, metric_count: int
) -> None:
    session = Session(job_env, post=recorder)
    extra = {f"train_metric_with_a_long_name_{i:03d}": 0.123456789 for i in range(metric_count)}
    for epoch in range(1, epochs + 1):
        session.report({"val_loss": 1.0 / epoch, "test_accuracy": 0.88, **extra}, epoch=epoch)
    text = termination_message(session.final_result(0, ""))
    assert len(text.encode()) <= contract.TERMINATION_MESSAGE_MAX_BYTES
    parsed = FinalResult.model_validate_json(text)
    assert (parsed.status.value, parsed.epochs_completed, parsed.objective_metric) == ("succeeded", epochs, "val_loss")
    assert parsed.metrics["val_loss"] == pytest.approx(1.0 / epochs)
    assert parsed.objective_history and parsed.objective_history[-1].epoch == epochs  # the newest kept
    assert len(parsed.objective_history) <= min(epochs, contract.FINAL_HISTORY_MAX_ITEMS)
    if metric_count == 2:
        assert parsed.metrics["test_accuracy"] == 0.88
        assert len(parsed.objective_history) == min(epochs, contract.FINAL_HISTORY_MAX_ITEMS)  # it all fits
    session.finish(0)


def test_a_named_objective_is_reported_and_its_history_kept(job_env: JobEnvironment, recorder: PostRecorder) -> None:
    session = Session(job_env, post=recorder, progress_interval_s=0.0, objective_metric="val accuracy")
    for epoch, value in ((1, 0.5), (2, 0.6), (3, 0.7), (2, 0.65), (3, 0.75)):  # a restart counted 2 and 3 again
        session.report({"val_accuracy": value, "val_loss": 1 - value}, epoch=epoch)
    final = session.report_exit(0)
    assert session.finish(5)
    reports = [TrainerReport.model_validate(body) for body in recorder.bodies]
    assert {report.objective_metric for report in reports} == {"val_accuracy"}
    assert final["objectiveMetric"] == "val_accuracy"
    assert final["objectiveHistory"] == [
        {"epoch": 1, "value": 0.5},
        {"epoch": 2, "value": 0.65},
        {"epoch": 3, "value": 0.75},
    ]
    assert reports[-1].final is not None and reports[-1].final.objective_history[-1].value == 0.75


def test_without_an_objective_there_is_no_history(job_env: JobEnvironment, recorder: PostRecorder) -> None:
    session = Session(job_env, post=recorder)
    session.report({"accuracy": 0.5}, epoch=1)
    final = session.final_result(1, "the command exited with status 1")
    assert "objectiveMetric" not in final and "objectiveHistory" not in final
    assert FinalResult.model_validate(final).status.value == "failed"
    session.finish(0)


def test_where_the_message_goes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    named = tmp_path / "termination-log"
    assert termination_log_path({TERMINATION_LOG: str(named)}) == named
    assert termination_log_path({TERMINATION_LOG: str(tmp_path / "missing" / "log")}) is None
    final = wire.build_final_result(exit_code=0, epochs_completed=1, metrics={"loss": 0.5}, duration_seconds=1.0)
    assert write_termination_message(final, {TERMINATION_LOG: str(named)}) == named
    assert json.loads(named.read_text()) == final
    with caplog.at_level(logging.WARNING):
        assert write_termination_message(final, {TERMINATION_LOG: str(tmp_path)}) is None  # a directory
    assert "cannot write the termination message" in caplog.text


EPOCH_LINES = (
    "import json\n"
    "for epoch in (1, 2, 3):\n"
    "    print(json.dumps({'epoch': epoch, 'train_loss': 1.0 / epoch, 'val_loss': 2.0 / epoch}))\n"
)


def wrap(env: dict[str, str], script: str) -> subprocess.CompletedProcess[bytes]:
    command = [*WRAP, "--total-epochs", "3", "--", sys.executable, "-c", script]
    return subprocess.run(command, env=env, capture_output=True, timeout=60, check=False)


def test_wrap_writes_the_final_result_when_the_endpoint_is_unreachable(
    clean_env: dict[str, str], job_vars: dict[str, str], tmp_path: Path
) -> None:
    message = tmp_path / "termination-log"
    done = wrap({**clean_env, **job_vars, TERMINATION_LOG: str(message)}, EPOCH_LINES)
    assert done.returncode == 0, done.stderr
    final = FinalResult.model_validate_json(message.read_text())
    assert (final.status.value, final.exit_code, final.epochs_completed) == ("succeeded", 0, 3)
    assert final.metrics == {"train_loss": pytest.approx(1 / 3), "val_loss": pytest.approx(2 / 3)}
    assert final.objective_metric == "val_loss"
    assert [(point.epoch, point.value) for point in final.objective_history] == [
        (1, 2.0),
        (2, 1.0),
        (3, pytest.approx(2 / 3)),
    ]


def test_a_stopped_command_writes_a_terminated_result(
    clean_env: dict[str, str], job_vars: dict[str, str], tmp_path: Path
) -> None:
    message = tmp_path / "termination-log"
    stopped = EPOCH_LINES + "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"
    assert wrap({**clean_env, **job_vars, TERMINATION_LOG: str(message)}, stopped).returncode == 143
    final = FinalResult.model_validate_json(message.read_text())
    assert (final.status.value, final.exit_code, final.epochs_completed) == ("terminated", 143, 3)


def test_failed_commands_and_other_ranks_leave_the_message_to_the_kubelet(
    clean_env: dict[str, str], job_vars: dict[str, str], tmp_path: Path
) -> None:
    message = tmp_path / "termination-log"
    env = {**clean_env, **job_vars, TERMINATION_LOG: str(message)}
    assert wrap(env, EPOCH_LINES + "raise SystemExit(3)\n").returncode == 3
    assert not message.exists()
    assert wrap({**env, "RANK": "1", "WORLD_SIZE": "2"}, EPOCH_LINES).returncode == 0
    assert not message.exists()
    assert wrap(env, EPOCH_LINES).returncode == 0
    assert FinalResult.model_validate_json(message.read_text()).status.value == "succeeded"
