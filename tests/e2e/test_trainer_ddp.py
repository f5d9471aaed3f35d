"""DDP on the CPU: two gloo processes started the way the operator starts them (PET_* variables).

Pins:
- PET_NPROC_PER_NODE=2 makes the trainer launch two workers that train one model together (gloo), and they
  reach about the accuracy of a single process on the same data and epochs;
- only rank 0 writes the result and logs epochs; every rank's log line is prefixed with its rank;
- SIGTERM to the pod's main process reaches both workers, which stop at the same step; rank 0 saves the
  checkpoint and the pod exits TERMINATED (not torchrun's 1); restarted, both ranks resume from it (rank 0
  reads it and broadcasts it) and finish.
"""

from __future__ import annotations

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
    "batchSize": 32,
    "epochs": 3,
    "seed": 1,
}


def run_trainer(tmp: Path, config: dict[str, object], **extra_env: str) -> subprocess.Popen[bytes]:
    (tmp / "log").write_bytes(b"")  # each run's log on its own
    env = {contract.RESULT_PATH: str(tmp / "result.json"), **extra_env}
    return start_trainer(config, tmp / "ckpt", tmp / "log", **env)


def pet_env(port: int) -> dict[str, str]:
    return {
        contract.PET_NNODES: "1",
        contract.PET_NPROC_PER_NODE: "2",
        contract.PET_NODE_RANK: "0",
        contract.PET_MASTER_ADDR: "127.0.0.1",
        contract.PET_MASTER_PORT: str(port),
    }


def free_port() -> int:
    from trainsmart_trainer.launch import free_local_port

    return free_local_port()


def final_of(tmp: Path) -> dict[str, object]:
    return final_result(tmp / "result.json")


def test_two_gloo_workers_match_one_process(tmp_path: Path) -> None:
    single, double = tmp_path / "one", tmp_path / "two"
    single.mkdir()
    double.mkdir()
    assert run_trainer(single, CONFIG).wait(timeout=240) == ExitCode.SUCCESS, (single / "log").read_text()[-3000:]
    process = run_trainer(double, CONFIG, **pet_env(free_port()))
    assert process.wait(timeout=240) == ExitCode.SUCCESS, (double / "log").read_text()[-3000:]
    log = (double / "log").read_text()
    assert "starting 2 worker processes" in log and "[rank 1]" in log
    assert "joined process group: rank 1 of 2 (gloo)" in log
    assert log.count("epoch 3/3:") == 1  # rank 0 alone reports epochs
    one, two = final_of(single), final_of(double)
    acc_one = one["metrics"]["test_accuracy"]  # type: ignore[index]
    acc_two = two["metrics"]["test_accuracy"]  # type: ignore[index]
    assert acc_one > 0.85 and acc_two > 0.85
    assert abs(acc_one - acc_two) < 0.06, (acc_one, acc_two)


def test_sigterm_stops_both_workers_at_one_step_with_a_checkpoint(tmp_path: Path) -> None:
    process = run_trainer(tmp_path, {**CONFIG, "epochs": 200}, **pet_env(free_port()))

    def first_checkpoint() -> list[Path]:
        assert process.poll() is None, (tmp_path / "log").read_text()[-3000:]
        return list((tmp_path / "ckpt").glob("checkpoint-000001-*.pt"))

    wait_for(
        first_checkpoint, 180, "the first checkpoint", lambda: (tmp_path / "log").read_text()[-3000:], interval=0.05
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=90) == ExitCode.TERMINATED, (tmp_path / "log").read_text()[-3000:]
    log = (tmp_path / "log").read_text()
    assert "workers exited with [13, 13]" in log
    assert final_of(tmp_path)["status"] == "terminated"
    newest = sorted((tmp_path / "ckpt").glob("checkpoint-*.pt"))[-1]
    assert newest.name > "checkpoint-000001-0000000.pt"

    epochs_done = int(newest.name.split("-")[1])
    restarted = run_trainer(tmp_path, {**CONFIG, "epochs": epochs_done + 1}, **pet_env(free_port()))
    assert restarted.wait(timeout=120) == ExitCode.SUCCESS, (tmp_path / "log").read_text()[-3000:]
    log = (tmp_path / "log").read_text()
    assert f"resumed from {newest}" in log and "workers exited with [0, 0]" in log
    assert final_of(tmp_path)["epochsCompleted"] == epochs_done + 1
