"""`python -m trainsmart_trainer` as a process: exit codes, first log line, termination message.

Pins:
- invalid config exits PERMANENT_FAILURE, printing every problem with its camelCase path, and writes the
  termination message; so do bad command-line arguments (not argparse's 2);
- GPUs requested (NVIDIA_VISIBLE_DEVICES=0) without usable CUDA fails fast with PERMANENT_FAILURE;
- with TRAINSMART_SIMULATED_GPUS=1 the first log line says the GPUs are simulated and training runs on the
  CPU; a TrainingJob manifest given with --config trains and writes its result file;
- --print-report-schema prints the JSON schema the operator validates reports with.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from trainsmart_trainer import contract
from trainsmart_trainer.contract import ExitCode

BASE_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("TRAINSMART_", "PET_", "NVIDIA_", "CUDA_"))
    and key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}
}


def trainer(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trainsmart_trainer", *args],
        env={**BASE_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_invalid_config_is_permanent_and_names_every_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 0\noptimizer: {name: adam, momentum: 0.9}\nlearningRat: 0.1\n")
    termination = tmp_path / "termination-log"
    result = trainer("--config", str(config), env={contract.TERMINATION_LOG: str(termination)})
    assert result.returncode == ExitCode.PERMANENT_FAILURE, result.stderr
    assert "config.epochs: Input should be greater than or equal to 1" in result.stderr
    assert "config.optimizer: momentum does not apply to adam" in result.stderr
    assert "config.learningRat: Extra inputs are not permitted" in result.stderr
    message = json.loads(termination.read_text())
    assert message["exitCode"] == ExitCode.PERMANENT_FAILURE and "config.epochs" in message["reason"]


def test_bad_arguments_are_a_permanent_failure() -> None:
    result = trainer("--no-such-flag")
    assert result.returncode == ExitCode.PERMANENT_FAILURE and "unrecognized arguments" in result.stderr


def test_requested_gpus_without_cuda_fail_fast() -> None:
    result = trainer(env={contract.NVIDIA_VISIBLE_DEVICES: "0", contract.CONFIG_JSON: '{"epochs": 1}'})
    assert result.returncode == ExitCode.PERMANENT_FAILURE
    assert "GPUs were requested (NVIDIA_VISIBLE_DEVICES=0) but CUDA is unusable" in result.stderr
    assert "epoch 1/" not in result.stderr


def test_simulated_gpus_train_on_the_cpu_from_a_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "job.yaml"
    manifest.write_text(
        "apiVersion: trainsmart.dev/v1alpha1\nkind: TrainingJob\nmetadata: {name: demo}\nspec:\n  trainer:\n"
        "    config:\n      epochs: 1\n      dataset: {name: synthetic, numSamples: 200, numFeatures: 4}\n"
        "      model: {name: mlp, hiddenSizes: [8]}\n"
    )
    env = {contract.SIMULATED_GPUS: "1", contract.NVIDIA_VISIBLE_DEVICES: "0,1"}
    result = trainer("--config", str(manifest), "--result-file", str(tmp_path / "r.json"), env=env)
    assert result.returncode == ExitCode.SUCCESS, result.stderr
    first_line = result.stderr.splitlines()[0]
    assert "device: cpu (2 simulated GPUs" in first_line and "training runs on the CPU" in first_line
    assert json.loads((tmp_path / "r.json").read_text())["final"]["status"] == "succeeded"


def test_report_schema_is_printed() -> None:
    result = trainer("--print-report-schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "TrainerReport"
