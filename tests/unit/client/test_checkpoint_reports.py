"""Checkpoints reported through the client: what a script (or a framework callback) saved reaches status.

Pins:
- `report_checkpoint(path, epoch)` sends, in order (never coalesced away), a report whose `checkpoint`
  validates as the contract's CheckpointInfo, with the current epoch when none is given;
- the final report names the newest checkpoint, as the packaged trainer's does;
- outside a job it is a no-op that only remembers the checkpoint.
"""

from __future__ import annotations

from support.client_reports import PostRecorder
from trainsmart_client.job_env import JobEnvironment, read_job_environment
from trainsmart_client.session import Session
from trainsmart_trainer.contract import ReportKind, TrainerReport


def test_checkpoints_reach_the_reports_and_the_final_one(job_env: JobEnvironment, recorder: PostRecorder) -> None:
    session = Session(job_env, post=recorder, progress_interval_s=60.0)
    session.report({"val_loss": 0.5}, epoch=1)
    session.report_checkpoint("/ckpt/epoch-1.pt")
    session.report({"loss": 0.4}, step=15)  # coalesced progress
    session.report_checkpoint("/ckpt/epoch-2.pt", epoch=2)
    session.report({"val_loss": 0.4}, epoch=2, final=True)
    assert session.finish(5)
    reports = [TrainerReport.model_validate(body) for body in recorder.bodies]
    saved = [(r.kind, r.checkpoint.path, r.checkpoint.epoch) for r in reports if r.checkpoint is not None]
    assert saved[:2] == [
        (ReportKind.PROGRESS, "/ckpt/epoch-1.pt", 1),
        (ReportKind.PROGRESS, "/ckpt/epoch-2.pt", 2),
    ]
    assert saved[-1] == (ReportKind.FINAL, "/ckpt/epoch-2.pt", 2)


def test_outside_a_job_a_checkpoint_is_only_remembered(clean_env: dict[str, str], recorder: PostRecorder) -> None:
    session = Session(read_job_environment(clean_env), post=recorder)
    session.report_checkpoint("/tmp/ckpt.pt", epoch=3)
    assert session.finish(1)
    assert recorder.calls == 0
    assert session.last_checkpoint is not None and session.last_checkpoint["epoch"] == 3
