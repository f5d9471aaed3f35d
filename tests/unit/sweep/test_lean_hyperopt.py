"""hyperopt is loaded without ATPE (`trainsmart.sweep.lean_hyperopt`): scipy.stats stays out of the
operator, and the points drawn are exactly those of a fully imported hyperopt.

Each case runs in a fresh interpreter: which hyperopt a process has depends on its first import.
"""

from __future__ import annotations

import json
import subprocess
import sys

DRAW = """
import json, sys
from trainsmart.api.sweep_spec import HyperparamSweepSpec
from trainsmart.sweep.suggest import TrialOutcome, TrialPoint, suggest
spec = HyperparamSweepSpec.model_validate({
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "algorithm": {"name": "tpe", "seed": 7, "tpe": {"startupTrials": 2}},
    "maxTrials": 8, "trialTemplate": {},
    "parameters": [
        {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1},
        {"name": "width", "path": "trainer.config.model.hiddenWidth", "type": "choice", "values": [16, 32, 64]},
    ],
})
history = [
    TrialPoint(number=0, parameters={"lr": 0.01, "width": 32}, outcome=TrialOutcome.SUCCEEDED, value=0.4),
    TrialPoint(number=1, parameters={"lr": 0.05, "width": 16}, outcome=TrialOutcome.SUCCEEDED, value=0.9),
    TrialPoint(number=2, parameters={"lr": 0.001, "width": 64}, outcome=TrialOutcome.FAILED),
]
points = suggest(spec, history, 3, 7)
print(json.dumps({"points": points, "scipy.stats": "scipy.stats" in sys.modules}))
"""


def _draw(first: str) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", first + DRAW], capture_output=True, text=True, timeout=120, check=True
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_tpe_draws_without_scipy_stats_the_same_points_as_a_full_hyperopt() -> None:
    lean = _draw("")
    full = _draw("import hyperopt.atpe\n")
    assert lean["scipy.stats"] is False
    assert full["scipy.stats"] is True
    assert lean["points"] == full["points"]
    assert len(lean["points"]) == 3  # type: ignore[arg-type]


def test_an_already_imported_hyperopt_is_left_as_it_is() -> None:
    probe = (
        "import sys, hyperopt\n"
        "from trainsmart.sweep.lean_hyperopt import import_hyperopt\n"
        "import_hyperopt()\n"
        "assert hasattr(sys.modules['hyperopt.atpe'], 'suggest')\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=120)
