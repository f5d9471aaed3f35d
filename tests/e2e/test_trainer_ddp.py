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

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

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
BASE_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("TRAINSMART_", "PET_")) and key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"}
}


def run_trainer(tmp: Path, config: dict[str, object], **extra_env: str) -> subprocess.Popen[bytes]:
    env = {
        **BASE_ENV,
        contract.CONFIG_JSON: json.dumps(config),
        contract.RESULT_PATH: str(tmp / "result.json"),
        contract.CHECKPOINT_DIR: str(tmp / "ckpt"),
        "OMP_NUM_THREADS": "1",
        **extra_env,
    }
    with (tmp / "log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "trainsmart_trainer"], env=env, stdout=log, stderr=log)


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
    final = json.loads((tmp / "result.json").read_text())["final"]
    assert isinstance(final, dict)
    return final


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
    deadline = time.monotonic() + 180
    while not list((tmp_path / "ckpt").glob("checkpoint-000001-*.pt")):
        assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "log").read_text()[-3000:]
        time.sleep(0.05)
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
