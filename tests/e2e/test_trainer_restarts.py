"""The packaged trainer as real processes, killed and restarted the way Kubernetes does it.

Pins:
- SIGKILL mid-training, then a restart with the same checkpoint directory: the restart resumes from the
  newest checkpoint (its epoch counter continues, it does not start at epoch 1) and ends exactly where an
  uninterrupted run with the same seed ends;
- SIGTERM mid-training: a checkpoint is written, the process exits TERMINATED (13), the result file says
  so, and a restart continues from that checkpoint to success.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from support.trainer_process import final_result, start_trainer
from support.waiting import wait_for
from trainsmart_trainer import contract
from trainsmart_trainer.contract import ExitCode

pytestmark = pytest.mark.e2e

CONFIG = {
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "hiddenSizes": [32]},
    "learningRate": 0.01,
    "batchSize": 16,
    "seed": 5,
}


def start(epochs: int, checkpoints: Path, log: Path) -> subprocess.Popen[bytes]:
    return start_trainer({**CONFIG, "epochs": epochs}, checkpoints, log)


def epochs_logged(log: Path) -> list[int]:
    return [int(n) for n in re.findall(r"epoch (\d+)/\d+:", log.read_text())]


def result(checkpoints: Path) -> dict[str, object]:
    return final_result(checkpoints / contract.RESULT_FILE_NAME)


def test_sigkill_then_restart_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference = start(5, reference_dir, tmp_path / "reference.log")
    assert reference.wait(timeout=240) == ExitCode.SUCCESS

    log = tmp_path / "killed.log"
    first = start(5, killed_dir, log)
    wait_for(
        lambda: len(list(killed_dir.glob("checkpoint-000002-*.pt"))) > 0, 180, "the epoch-2 checkpoint", interval=0.05
    )
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    done_before = max(epochs_logged(log))
    assert 2 <= done_before < 5, "the kill must land mid-run"

    log.write_text("")
    second = start(5, killed_dir, log)
    assert second.wait(timeout=240) == ExitCode.SUCCESS, log.read_text()[-3000:]
    text = log.read_text()
    resumed_at = int(re.search(r"resumed from .*checkpoint-(\d{6})-0000000\.pt", text).group(1))  # type: ignore[union-attr]
    assert resumed_at >= 2
    assert epochs_logged(log) == list(range(resumed_at + 1, 6))  # continues; never starts again at epoch 1
    final, expected = result(killed_dir), result(reference_dir)
    assert final["epochsCompleted"] == 5
    metrics, reference_metrics = final["metrics"], expected["metrics"]
    assert isinstance(metrics, dict) and isinstance(reference_metrics, dict)
    assert metrics["test_accuracy"] > 0.85
    assert metrics["test_accuracy"] == reference_metrics["test_accuracy"]
    assert metrics["val_loss"] == reference_metrics["val_loss"]


def test_sigterm_checkpoints_and_exits_terminated_then_resumes(tmp_path: Path) -> None:
    checkpoints, log = tmp_path / "ckpt", tmp_path / "run.log"
    process = start(200, checkpoints, log)
    wait_for(
        lambda: len(list(checkpoints.glob("checkpoint-000001-*.pt"))) > 0, 180, "the first checkpoint", interval=0.05
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == ExitCode.TERMINATED, log.read_text()[-3000:]
    final = result(checkpoints)
    assert final["status"] == "terminated" and final["exitCode"] == ExitCode.TERMINATED
    newest = sorted(checkpoints.glob("checkpoint-*.pt"))[-1]
    match = re.match(r"checkpoint-(\d+)-(\d+)\.pt", newest.name)
    assert match is not None
    saved_at = (int(match.group(1)), int(match.group(2)))
    assert saved_at > (1, 0), "SIGTERM must save the state it stopped at, not rely on the last epoch checkpoint"
    assert "received SIGTERM: stopped after" in log.read_text()

    log.write_text("")
    resumed = start(saved_at[0] + 1, checkpoints, log)
    assert resumed.wait(timeout=120) == ExitCode.SUCCESS, log.read_text()[-3000:]
    assert f"resumed from {newest}" in log.read_text()
    assert epochs_logged(log) == [saved_at[0] + 1]
