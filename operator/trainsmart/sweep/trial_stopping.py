"""The sweep's early-stopping rule applied to its trials: trial views -> curves -> the rule's decision.

`earlystop` holds the rules themselves, on bare learning curves; this module decides which trials the
rule sees and in which state (running, paused at a rung, finished), so the trial table only describes
trials and never decides about them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from trainsmart.api import HyperparamSweep, TrialPhase, apply_parameters
from trainsmart.api.common import ParameterValue
from trainsmart.api.conditions import Reason
from trainsmart.sweep.earlystop import CurveState, EarlyStopDecision, TrialCurve, early_stopping_decisions
from trainsmart.sweep.trial_table import TrialView

EPOCHS_PATH: Final = "trainer.config.epochs"


def _curve_state(trial: TrialView) -> CurveState:
    if trial.active or trial.phase == TrialPhase.SUSPENDED:
        return "running"
    if trial.phase == TrialPhase.EARLY_STOPPED and trial.exists and not trial.job_finished:
        return "paused"
    return "finished"


def max_epochs(sweep: HyperparamSweep) -> int:
    """The epochs a trial runs when not stopped, by the template (`trial_epochs` has each trial's own)."""
    return sweep.spec.trial_template.trainer.effective_config().epochs


def _sets_epochs(path: str) -> bool:
    """Whether a parameter at `path` sets the epochs: at trainer.config.epochs or an object above it."""
    return EPOCHS_PATH.startswith(path) and EPOCHS_PATH[len(path) : len(path) + 1] in ("", ".")


def trial_epochs(sweep: HyperparamSweep, parameters: Mapping[str, ParameterValue]) -> int:
    """The epochs a trial with `parameters` runs when not stopped: the template's unless a parameter sets
    `trainer.config.epochs` (or an object above it), so the rules judge it by its own length."""
    reaching = {
        parameter.path: parameters[parameter.name]
        for parameter in sweep.spec.parameters
        if parameter.path is not None and _sets_epochs(parameter.path) and parameter.name in parameters
    }
    if not reaching:
        return max_epochs(sweep)
    try:
        return apply_parameters(sweep.spec.trial_template, reaching).trainer.effective_config().epochs
    except ValueError:  # a value that makes no valid spec never became a trial with a curve
        return max_epochs(sweep)


def stop_decision(sweep: HyperparamSweep, trials: Sequence[TrialView], *, draining: bool) -> EarlyStopDecision:
    """The early-stopping rule's decision over the live trials (a deleted trial has no curve any more;
    see sweep_plan for why retention waits while a rule is on). Promotions only of paused trials that
    the rule stopped: a trial stopped for the goal or the budget stays stopped."""
    spec = sweep.spec
    curves = [
        TrialCurve(
            name=trial.name,
            number=trial.number,
            values=trial.curve,
            state=_curve_state(trial),
            max_epochs=trial_epochs(sweep, trial.parameters),
        )
        for trial in trials
        if trial.exists and (trial.phase != TrialPhase.EARLY_STOPPED or trial.stopped == Reason.EARLY_STOPPED)
    ]
    decision = early_stopping_decisions(
        spec.early_stopping,
        spec.objective.goal,
        max_epochs(sweep),
        curves,
        metric=spec.objective.metric,
        draining=draining,
    )
    return decision


def promotions_pending(sweep: HyperparamSweep, trials: Sequence[TrialView]) -> bool:
    """Whether the early-stopping rule would resume a paused trial now: a sweep whose last trials all
    paused at a rung has not ended while one of them is to go on."""
    if sweep.spec.suspend or len(trials) < sweep.spec.planned_trials():
        return False
    return bool(stop_decision(sweep, trials, draining=True).promote)
