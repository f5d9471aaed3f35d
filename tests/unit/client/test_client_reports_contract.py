"""The client speaks the operator's report protocol without importing it.

Pins:
- every environment variable name the client reads is the contract's (and so is the parameter naming);
- every kind of report the client produces validates as `contract.TrainerReport`: progress, epoch, a
  NonFiniteLoss diagnostic, final (from `report(final=True)` and from an exit code), with odd metric names
  made valid, NaN/inf left out, an unknown total raised to the epoch, and the job's identity and token;
- the device is told from the environment: CPU by default, CUDA with the device plugin's GPUs, simulated
  GPUs as CPU;
- a non-finite loss is diagnosed once per metric and epoch, not on every line that repeats it;
- final statuses follow the exit codes' meanings (0, 12, 13, 143, anything else).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from support.client_reports import PostRecorder
from trainsmart_client import job_env as client_env
from trainsmart_client import wire
from trainsmart_client.job_env import JobEnvironment, device_info, read_job_environment
from trainsmart_client.params import env_name
from trainsmart_client.session import Session
from trainsmart_trainer import contract
from trainsmart_trainer.contract import ReportKind, TrainerReport


def test_the_variable_names_are_the_contracts() -> None:
    pairs = {
        client_env.REPORT_URL: contract.REPORT_URL,
        client_env.REPORT_TOKEN: contract.REPORT_TOKEN,
        client_env.REPORT_CA_FILE: contract.REPORT_CA_FILE,
        client_env.JOB_NAME: contract.JOB_NAME,
        client_env.JOB_NAMESPACE: contract.JOB_NAMESPACE,
        client_env.CHECKPOINT_DIR: contract.CHECKPOINT_DIR,
        client_env.SIMULATED_GPUS: contract.SIMULATED_GPUS,
        client_env.TERMINATION_LOG: contract.TERMINATION_LOG,
        client_env.RANK: contract.RANK,
        client_env.PET_NODE_RANK: contract.PET_NODE_RANK,
        client_env.WORLD_SIZE: contract.WORLD_SIZE,
        client_env.ATTEMPT: contract.ATTEMPT,
        client_env.OBJECTIVE_METRIC: contract.OBJECTIVE_METRIC,
        client_env.OBJECTIVE_GOAL: contract.OBJECTIVE_GOAL,
        client_env.NVIDIA_VISIBLE_DEVICES: contract.NVIDIA_VISIBLE_DEVICES,
        client_env.PARAMS_FILE: contract.PARAMS_FILE,
        client_env.PARAM_PREFIX: contract.PARAM_ENV_PREFIX,
        client_env.SIMULATED_GPUS_ON: contract.SIMULATED_GPUS_ON,
    }
    assert {mine: theirs for mine, theirs in pairs.items() if mine != theirs} == {}
    for parameter in ("lr", "hidden.width", "batch-size", "model.hiddenSizes"):
        assert env_name(parameter) == contract.param_env_name(parameter)


def sent_reports(recorder: PostRecorder) -> list[TrainerReport]:
    return [TrainerReport.model_validate(body) for body in recorder.bodies]


def finished_session(env: JobEnvironment, recorder: PostRecorder) -> Session:
    return Session(env, post=recorder, progress_interval_s=0.0)


def test_every_kind_of_report_validates_as_a_trainer_report(job_env: JobEnvironment, recorder: PostRecorder) -> None:
    session = finished_session(job_env, recorder)
    session.progress(0, total_epochs=3, step=0, total_steps=30)
    assert session.finish(5)
    session.report({"train loss": 0.9, "1st/metric": 2, "acc%": 0.5})
    assert session.finish(5)
    session.report({"train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.8, "flag": True}, epoch=1, step=10)
    session.report({"train_loss": math.nan, "val_loss": math.inf, "val_accuracy": 0.1}, epoch=2, step=20)
    session.report({"val_accuracy": 0.85}, epoch=3, step=30, final=True)
    assert session.finish(5)
    reports = sent_reports(recorder)
    assert [report.kind for report in reports] == [
        ReportKind.PROGRESS,
        ReportKind.PROGRESS,
        ReportKind.EPOCH,
        ReportKind.EPOCH,
        ReportKind.DIAGNOSTIC,
        ReportKind.FINAL,
    ]
    assert reports[1].metrics == {"train_loss": 0.9, "_1st/metric": 2.0, "acc": 0.5}
    assert reports[2].metrics == {"train_loss": 0.5, "val_loss": 0.6, "val_accuracy": 0.8}
    assert reports[3].metrics == {"val_accuracy": 0.1}
    assert [finding.type.value for finding in reports[4].diagnostics] == ["NonFiniteLoss", "NonFiniteLoss"]
    assert reports[4].diagnostics[0].epoch == 2
    final = reports[5].final
    assert final is not None and final.status.value == "succeeded" and final.exit_code == 0
    assert final.epochs_completed == 3 and final.metrics["val_accuracy"] == 0.85
    assert {report.total_epochs for report in reports} == {3}
    assert all(report.job.name == "digits" and report.job.namespace == "ml" for report in reports)
    assert all(headers["Authorization"] == "Bearer token-of-digits" for headers in recorder.headers)


def test_an_unknown_total_is_raised_to_the_epoch(job_env: JobEnvironment, recorder: PostRecorder) -> None:
    session = finished_session(job_env, recorder)
    session.report({"val_loss": 0.4}, epoch=7)
    assert session.finish(5)
    (report,) = sent_reports(recorder)
    assert (report.epoch, report.total_epochs) == (7, 7)


@pytest.mark.parametrize(
    ("exit_code", "status"),
    [(0, "succeeded"), (12, "early_stopped"), (13, "terminated"), (143, "terminated"), (1, "failed"), (137, "failed")],
)
def test_the_final_report_of_an_exit_code(
    job_env: JobEnvironment, recorder: PostRecorder, exit_code: int, status: str
) -> None:
    session = finished_session(job_env, recorder)
    session.report({"val_loss": 0.3}, epoch=2)
    session.report_exit(exit_code, "" if exit_code == 0 else f"exited {exit_code}")
    session.report_exit(exit_code)  # a second call adds nothing
    assert session.finish(5)
    final = sent_reports(recorder)[-1]
    assert final.kind == ReportKind.FINAL and final.final is not None
    assert (final.final.status.value, final.final.exit_code) == (status, exit_code)
    assert final.final.metrics == {"val_loss": 0.3}
    assert len(recorder.bodies) == 2


def test_a_repeated_non_finite_loss_is_diagnosed_once_per_epoch(
    job_env: JobEnvironment, recorder: PostRecorder
) -> None:
    session = finished_session(job_env, recorder)
    for step in range(50):
        session.report({"loss": math.nan}, step=step)
    session.report({"loss": math.nan}, epoch=1)
    assert session.finish(5)
    diagnostics = [report for report in sent_reports(recorder) if report.kind == ReportKind.DIAGNOSTIC]
    assert len(diagnostics) == 2  # once before the first epoch, once for epoch 1


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, {"type": "cpu", "gpus": 0}),
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, {"type": "cpu", "gpus": 0}),
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-1,GPU-2"}, {"type": "cuda", "gpus": 2}),
        ({"NVIDIA_VISIBLE_DEVICES": "0", "TRAINSMART_SIMULATED_GPUS": "1"}, {"type": "cpu", "gpus": 1}),
    ],
)
def test_the_device_comes_from_the_environment(variables: dict[str, str], expected: dict[str, Any]) -> None:
    info = device_info(variables)
    assert {key: info[key] for key in expected} == expected
    contract.DeviceInfo.model_validate(info)


def test_only_rank_zero_reports_and_the_pod_index_decides_without_a_rank(job_vars: dict[str, str]) -> None:
    assert read_job_environment(job_vars).reports
    assert not read_job_environment({**job_vars, "RANK": "1"}).reports
    without_rank = {key: value for key, value in job_vars.items() if key != "RANK"}
    assert read_job_environment({**without_rank, "PET_NODE_RANK": "0"}).reports
    assert not read_job_environment({**without_rank, "PET_NODE_RANK": "1"}).reports
    assert not read_job_environment({**job_vars, "TRAINSMART_REPORT_URL": "ftp://x"}).in_job


@pytest.mark.parametrize(
    ("value", "expected"), [("2", 2), ("0", 0), (None, None), ("", None), ("x", None), ("-1", None)]
)
def test_the_attempt_goes_into_every_reports_identity_when_the_operator_set_it(
    job_vars: dict[str, str], recorder: PostRecorder, value: str | None, expected: int | None
) -> None:
    """An unusable value is left out rather than sent: the endpoint would refuse the whole report."""
    variables = {key: item for key, item in job_vars.items() if key != contract.ATTEMPT}
    if value is not None:
        variables[contract.ATTEMPT] = value
    session = finished_session(read_job_environment(variables), recorder)
    session.report({"val_loss": 0.2}, epoch=1)
    session.report({"val_loss": 0.1}, epoch=2, final=True)
    assert session.finish(5)
    reports = sent_reports(recorder)
    assert reports and {report.job.attempt for report in reports} == {expected}


def test_a_non_zero_rank_sends_nothing(job_vars: dict[str, str], recorder: PostRecorder) -> None:
    session = Session(read_job_environment({**job_vars, "RANK": "3"}), post=recorder, progress_interval_s=0.0)
    session.report({"val_loss": 0.2}, epoch=1)
    session.report_exit(0)
    assert session.finish(1)
    assert recorder.bodies == []


def test_wire_names_and_final_status_helpers() -> None:
    assert wire.metric_name("eval/loss") == "eval/loss"
    assert wire.metric_name("  ") is None
    assert wire.final_status(0) == "succeeded"
