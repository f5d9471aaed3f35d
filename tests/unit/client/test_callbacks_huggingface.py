"""The Hugging Face `transformers.Trainer` callback, on the real Trainer with a tiny BERT built from a
config (random weights, nothing downloaded) and generated data.

Pins:
- a 2-epoch run with per-epoch evaluation sends one epoch report per epoch (epochs 1 and 2 of 2) holding
  the Trainer's own names: `eval_loss`, `eval_accuracy` and the train `loss`; progress carries the planned
  epochs and optimizer steps; the run's `train_loss` arrives as a latest value; every report validates as
  `contract.TrainerReport`;
- a stop requested mid-epoch ends training after the current optimizer step: `checkpoint-<step>` is saved,
  no evaluation and no epoch report follow, and the run ends with SystemExit(13) (or returns, with
  `exit_on_stop=False`); `resume_from_checkpoint()` finds that checkpoint and a new Trainer resumes there;
- `output_dir()` and `resume_from_checkpoint()` follow TRAINSMART_CHECKPOINT_DIR and fall back outside a job;
- a real SIGTERM to a process training with the callback on the process's own session stops it with exit
  code 13 and a checkpoint in the job's checkpoint directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads; this makes sure nothing can

import transformers

from support.client_reports import PostRecorder
from support.framework_models import STEPS_PER_EPOCH, hf_trainer
from support.paths import REPO
from trainsmart_client.callbacks.huggingface import (
    TrainsmartCallback,
    output_dir,
    resume_from_checkpoint,
)
from trainsmart_client.job_env import JobEnvironment
from trainsmart_client.session import Session
from trainsmart_client.stop_signal import StopFlag
from trainsmart_trainer.contract import ReportKind, TrainerReport


class StopAtStep(transformers.TrainerCallback):
    """Sets the stop flag (what SIGTERM does) when optimizer step `step` begins."""

    def __init__(self, flag: StopFlag, step: int) -> None:
        self.flag, self.step = flag, step

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step + 1 == self.step:
            self.flag.set()


class Evaluations(transformers.TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.steps.append(state.global_step)


@pytest.fixture
def session(job_env: JobEnvironment, recorder: PostRecorder) -> Iterator[Session]:
    session = Session(job_env, post=recorder, progress_interval_s=0.0, stop_flag=StopFlag())
    yield session
    session.finish(5)


def reports(session: Session, recorder: PostRecorder) -> list[TrainerReport]:
    assert session.finish(5)
    return [TrainerReport.model_validate(body) for body in recorder.bodies]


def test_each_epoch_reports_eval_and_train_metrics_by_the_trainers_names(
    session: Session, recorder: PostRecorder, tmp_path: Path
) -> None:
    hf_trainer(tmp_path, [TrainsmartCallback(session)]).train()
    sent = reports(session, recorder)
    epochs = [report for report in sent if report.kind == ReportKind.EPOCH]
    assert [(report.epoch, report.total_epochs, report.step) for report in epochs] == [
        (1, 2, STEPS_PER_EPOCH),
        (2, 2, 2 * STEPS_PER_EPOCH),
    ]
    for report in epochs:
        assert {"eval_loss", "eval_accuracy", "loss"} <= set(report.metrics), report.metrics
        assert 0 <= report.metrics["eval_accuracy"] <= 1
    assert "epoch" not in epochs[0].metrics
    assert any(report.kind == ReportKind.PROGRESS for report in sent)
    assert {report.total_epochs for report in sent} == {2}
    assert (session.total_steps, session.step, session.epoch) == (2 * STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH, 2)
    assert "train_loss" in session.last_metrics


@pytest.mark.parametrize("exit_on_stop", [True, False])
def test_a_stop_ends_training_after_the_current_step_with_a_checkpoint(
    session: Session, recorder: PostRecorder, tmp_path: Path, exit_on_stop: bool
) -> None:
    callback, evaluations = TrainsmartCallback(session, exit_on_stop=exit_on_stop), Evaluations()
    trainer = hf_trainer(tmp_path, [StopAtStep(session.stop_flag, 3), callback, evaluations], save_strategy="epoch")
    if exit_on_stop:
        with pytest.raises(SystemExit) as exited:
            trainer.train()
        assert exited.value.code == 13
    else:
        trainer.train()
    assert callback.stopped and trainer.state.global_step == 3
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checkpoint-3"]
    assert evaluations.steps == []
    assert [report.kind for report in reports(session, recorder) if report.kind != ReportKind.PROGRESS] == []
    assert resume_from_checkpoint(tmp_path) == str(tmp_path / "checkpoint-3")


def test_a_resumed_trainer_continues_from_the_stopping_step(
    session: Session, recorder: PostRecorder, tmp_path: Path
) -> None:
    with pytest.raises(SystemExit):
        hf_trainer(tmp_path, [StopAtStep(session.stop_flag, 3), TrainsmartCallback(session)]).train()
    resumed = Session(session.environment, post=recorder, progress_interval_s=0.0, stop_flag=StopFlag())
    recorder.bodies.clear()
    hf_trainer(tmp_path, [TrainsmartCallback(resumed)]).train(resume_from_checkpoint=resume_from_checkpoint(tmp_path))
    sent = reports(resumed, recorder)
    assert [report.epoch for report in sent if report.kind == ReportKind.EPOCH] == [1, 2]
    assert min(report.step for report in sent) >= 3


def test_the_helpers_follow_the_jobs_checkpoint_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TRAINSMART_CHECKPOINT_DIR", raising=False)
    assert output_dir("local-out") == "local-out"
    assert resume_from_checkpoint() is None
    monkeypatch.setenv("TRAINSMART_CHECKPOINT_DIR", str(tmp_path))
    assert output_dir("local-out") == str(tmp_path)
    assert resume_from_checkpoint() is None
    for step in (5, 40, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-99.json").write_text("{}")  # a file, not a checkpoint
    assert resume_from_checkpoint() == str(tmp_path / "checkpoint-40")


SIGTERM_SCRIPT = """
from pathlib import Path
import transformers
from support.framework_models import hf_trainer
from trainsmart_client.callbacks.huggingface import TrainsmartCallback, output_dir

class Ready(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 2:
            print("ready", flush=True)

hf_trainer(Path(output_dir()), [TrainsmartCallback(), Ready()], epochs=10_000).train()
"""


def test_sigterm_stops_a_training_process_with_exit_13_and_a_checkpoint(
    clean_env: dict[str, str], job_vars: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **clean_env,
        **job_vars,
        "TRAINSMART_CHECKPOINT_DIR": str(tmp_path),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO / "tests"),
    }
    with subprocess.Popen(
        [sys.executable, "-c", SIGTERM_SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    ) as process:
        try:
            assert process.stdout is not None and process.stderr is not None
            assert b"ready\n" in iter(process.stdout.readline, b""), process.stderr.read().decode()[-3000:]
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
        finally:
            process.kill()
        assert code == 13, process.stderr.read().decode()[-3000:]
    (checkpoint,) = list(tmp_path.glob("checkpoint-*"))
    assert int(checkpoint.name.split("-")[1]) >= 2
