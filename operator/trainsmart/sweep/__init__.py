"""The pure side of HyperparamSweep: search space -> hyperopt, grid search, `suggest`, early stopping.

Nothing here talks to Kubernetes or keeps state between calls: the controller passes in the trials it reads
back from the API and acts on what comes out.
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
