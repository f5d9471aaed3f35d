"""The client's best checkpoint: any training code keeps the model of its best epoch (issue 15).

Pins:
- `save_best_in` asks the script to save only when the value strictly beats the recorded best (by the goal),
  renames what it wrote (a file or a directory) to `best/<name>` and records metric, value and epoch; a worse
  later epoch and a restart (a fresh process reading the record from the volume) leave it in place;
- `latest_checkpoint` never returns the `best` entry;
- a session's best checkpoint goes out in order as the contract's BestCheckpointInfo and again in the final
  report; `ts.save_best` follows a sweep trial's objective from the environment.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import trainsmart_client as ts
from support.client_reports import PostRecorder
from trainsmart_client import checkpoints
from trainsmart_client.job_env import JobEnvironment
from trainsmart_client.session import Session
from trainsmart_trainer.contract import BestCheckpointInfo, ReportKind, TrainerReport


def writer(content: str) -> Callable[[Path], None]:
    def save(path: Path) -> None:
        path.write_text(content)

    return save


def test_only_an_improvement_is_saved_and_a_restart_keeps_the_best(tmp_path: Path) -> None:
    saves = []
    for epoch, value in enumerate([0.90, 0.969, 0.944], start=1):
        saves.append(
            checkpoints.save_best_in(
                tmp_path, value, writer(f"epoch {epoch}"), metric="val_accuracy", maximize=True, epoch=epoch
            )
        )
    assert [record is not None for record in saves] == [True, True, False]
    assert (tmp_path / "best" / "checkpoint").read_text() == "epoch 2"
    assert checkpoints.read_best(tmp_path) == {
        "path": str(tmp_path / "best" / "checkpoint"),
        "epoch": 2,
        "metric": "val_accuracy",
        "value": 0.969,
    }
    # "After a restart": nothing in memory, the record on the volume decides.
    never = checkpoints.save_best_in(tmp_path, 0.95, writer("x"), metric="val_accuracy", maximize=True, epoch=3)
    assert never is None and (tmp_path / "best" / "checkpoint").read_text() == "epoch 2"
    assert [p.name for p in (tmp_path / "best").iterdir() if p.name.startswith(".")] == []


def test_a_directory_checkpoint_replaces_the_previous_best_directory(tmp_path: Path) -> None:
    def save_dir(tag: str) -> Callable[[Path], None]:
        def save(path: Path) -> None:
            path.mkdir()
            (path / "weights").write_text(tag)

        return save

    checkpoints.save_best_in(tmp_path, 0.5, save_dir("first"), metric="val_loss", maximize=False, epoch=1, name="hf")
    checkpoints.save_best_in(tmp_path, 0.4, save_dir("second"), metric="val_loss", maximize=False, epoch=2, name="hf")
    assert (tmp_path / "best" / "hf" / "weights").read_text() == "second"
    assert sorted(p.name for p in (tmp_path / "best").iterdir()) == ["best.json", "hf"]


def test_latest_checkpoint_never_returns_the_best_entry(tmp_path: Path) -> None:
    (tmp_path / "epoch-1.pt").write_text("x")
    checkpoints.save_best_in(tmp_path, 0.1, writer("b"), metric="val_loss", maximize=False, epoch=1)
    assert checkpoints.latest_checkpoint(directory=tmp_path) == tmp_path / "epoch-1.pt"


def test_the_best_checkpoint_is_reported_in_order_and_in_the_final_report(
    job_env: JobEnvironment, recorder: PostRecorder
) -> None:
    session = Session(job_env, post=recorder, progress_interval_s=60.0)
    session.report({"val_accuracy": 0.969}, epoch=4)
    session.report_best_checkpoint("/ckpt/best/checkpoint", 4, "val_accuracy", 0.969)
    session.report({"val_accuracy": 0.944}, epoch=5, final=True)
    assert session.finish(5)
    reports = [TrainerReport.model_validate(body) for body in recorder.bodies]
    expected = BestCheckpointInfo(path="/ckpt/best/checkpoint", epoch=4, metric="val_accuracy", value=0.969)
    carried = [(r.kind, r.best_checkpoint) for r in reports if r.best_checkpoint is not None]
    assert carried == [(ReportKind.PROGRESS, expected), (ReportKind.FINAL, expected)]


def test_save_best_follows_a_trials_objective_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINSMART_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setenv("TRAINSMART_OBJECTIVE_METRIC", "val_accuracy")
    monkeypatch.setenv("TRAINSMART_OBJECTIVE_GOAL", "maximize")
    monkeypatch.setattr(ts, "_session", None, raising=False)
    assert ts.save_best(0.8, writer("a"), epoch=1) == tmp_path / "best" / "checkpoint"
    assert ts.save_best(0.7, writer("b"), epoch=2) is None  # lower accuracy: no improvement
    record = checkpoints.read_best(tmp_path)
    assert record is not None and (record["metric"], record["epoch"]) == ("val_accuracy", 1)
