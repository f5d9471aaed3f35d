"""The framework callbacks are imported lazily: training images without transformers or Lightning (and the
stdlib-only core) never pay for them.

Pins:
- importing `trainsmart_client`, `trainsmart_client.callbacks` and the shared `callbacks.reporting` loads
  neither torch nor transformers nor lightning;
- `reporting.as_number` takes what frameworks hand over (Python and NumPy scalars, one-element tensors, NaN
  kept for the loss diagnostic) and refuses what is not one number (booleans, text, vectors).
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import torch

from trainsmart_client.callbacks.reporting import as_number, numeric_metrics

PROBE = """
import sys
import trainsmart_client, trainsmart_client.callbacks, trainsmart_client.callbacks.reporting
print(sorted(name for name in ("torch", "transformers", "lightning", "numpy") if name in sys.modules))
"""


def test_the_core_and_the_callbacks_package_import_no_framework(clean_env: dict[str, str]) -> None:
    result = subprocess.run([sys.executable, "-c", PROBE], env=clean_env, capture_output=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "[]"


def test_framework_numbers_become_metrics() -> None:
    values = {
        "int": 3,
        "float": 0.5,
        "numpy": np.float32(0.25),
        "tensor": torch.tensor(0.75),
        "one_element": torch.tensor([2.0]),
        "nan_loss": torch.tensor(float("nan")),
        "flag": True,
        "text": "adam",
        "vector": torch.tensor([1.0, 2.0]),
        "epoch": 1.0,
    }
    metrics = numeric_metrics(values, skip={"epoch"})
    assert set(metrics) == {"int", "float", "numpy", "tensor", "one_element", "nan_loss"}
    assert (metrics["numpy"], metrics["tensor"], metrics["one_element"]) == (0.25, 0.75, 2.0)
    assert math.isnan(metrics["nan_loss"])
    assert as_number(np.array([1.0, 2.0])) is None
