"""Pins: loading the operator (every Kopf handler, both controllers) does not import hyperopt.

hyperopt and what it pulls in (networkx, parts of scipy) add ~40 MiB to the operator's RSS even without
ATPE (`lean_hyperopt`); a cluster without sweeps never pays it, as they are loaded on a sweep's first
suggestion.
"""

from __future__ import annotations

import subprocess
import sys


def test_the_operator_loads_without_hyperopt_until_a_sweep_needs_it() -> None:
    probe = (
        "import sys, trainsmart.main, trainsmart.handlers.sweep_controller, trainsmart.sweep.sweep_plan\n"
        "assert 'hyperopt' not in sys.modules, 'hyperopt imported at load'\n"
        "from trainsmart.api.sweep_spec import HyperparamSweepSpec\n"
        "from trainsmart.sweep import suggest\n"
        "spec = HyperparamSweepSpec.model_validate({'objective': {'metric': 'val_loss', 'goal': 'minimize'},"
        " 'algorithm': {'name': 'tpe'}, 'maxTrials': 2, 'trialTemplate': {},"
        " 'parameters': [{'name': 'lr', 'path': 'trainer.config.learningRate', 'type': 'uniform',"
        " 'min': 0.001, 'max': 0.1}]})\n"
        "assert len(suggest(spec, [], 1, 0)) == 1 and 'hyperopt' in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
