"""`bench/gpu_check.py`, the one-command GPU check, keeps working on machines without a GPU.

Pins:
- without `--cpu` on a machine with no usable CUDA it exits 0 and says it skipped, and why;
- `--cpu --quick` runs every check's code path on the CPU (trainer fp32 and bf16 on digits and a generated
  image set, a 1-process gloo group, trainer vs bare-loop throughput), prints PASS for each, skips the GPU
  memory gauge, and exits 0, within a minute.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "bench" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_without_a_gpu_it_skips_saying_why_and_exits_0() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the script would run the real checks")
    result = _run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SKIPPED: no usable GPU (" in result.stdout
    assert "torch " in result.stdout and "CUDA " in result.stdout
    assert "PASS" not in result.stdout and "FAIL" not in result.stdout


def test_cpu_quick_passes_every_check_on_the_cpu() -> None:
    result = _run("--cpu", "--quick")
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    for check in (
        "trainer digits/mlp fp32",
        "trainer digits/mlp bf16",
        "trainer images/cnn fp32",
        "trainer images/cnn bf16",
        "distributed 1-process gloo",
        "throughput trainer vs bare loop",
    ):
        assert f"PASS {check}: " in output, output
    assert "AMP ignored on CPU as documented" in output
    assert "SKIP GPU-memory gauge" in output
    assert "FAIL" not in output
    assert "cpu: all checks passed" in output
