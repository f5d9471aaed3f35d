"""Every decision about a HyperparamSweep, pure: what to try next, what to stop, when the sweep ends.

* the search: `space` (parameters -> hyperopt), `grid`, `suggest` (the algorithms, replayed from history);
* early stopping: `earlystop` (the rules on bare curves), `trial_stopping` (which trials they see);
* the status: `trial_table` (each trial as the sweep sees it), `sweep_ending`, `sweep_conditions`,
  `sweep_derive`, `sweep_events`;
* the reconcile: `sweep_plan` (what to do now) and `sweep_decision` (derive + plan + the new trials'
  manifests, invalid ones folded into the status).

Nothing here talks to Kubernetes or keeps state between calls: the controller passes in the trials it reads
back from the API and acts on what comes out (`handlers/sweep_controller.py`).
"""

from trainsmart.sweep.earlystop import (
    EarlyStopDecision,
    TrialCurve,
    asha_rungs,
    best_so_far,
    early_stopping_decisions,
)
from trainsmart.sweep.grid import grid_points, parameter_grid
from trainsmart.sweep.space import Scalar, hyperopt_space
from trainsmart.sweep.suggest import TrialOutcome, TrialPoint, next_trial_number, suggest, trial_seed

__all__ = [
    "EarlyStopDecision",
    "Scalar",
    "TrialCurve",
    "TrialOutcome",
    "TrialPoint",
    "asha_rungs",
    "best_so_far",
    "early_stopping_decisions",
    "grid_points",
    "hyperopt_space",
    "next_trial_number",
    "parameter_grid",
    "suggest",
    "trial_seed",
]
