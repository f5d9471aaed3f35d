"""Kubernetes Events about a sweep: its status transitions, and what was done to its trials.

Pure, like the TrainingJob's (`status/job_events.py`): the controller posts these after the status patch
succeeded (transitions) or after the API call that did the thing (trial actions), so a retried reconcile
does not announce twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from trainsmart.api import ConditionStatus, HyperparamSweepStatus, SweepConditionType
from trainsmart.api.common import ParameterValue
from trainsmart.api.conditions import EventType, Reason, StatusEvent, find_condition
from trainsmart.names import PARAMETERS_ANNOTATION
from trainsmart.sweep.sweep_conditions import SWEEP_CONDITION_ORDER
from trainsmart.sweep.sweep_plan import TrialAction

_WARNING_TYPES: Final = frozenset(
    {SweepConditionType.FAILED, SweepConditionType.INVALID_SPEC, SweepConditionType.BUDGET_EXHAUSTED}
)


def sweep_events(previous: HyperparamSweepStatus | None, current: HyperparamSweepStatus) -> list[StatusEvent]:
    """One Event for each condition that became True (Running excepted: the trials' own creation Events
    announce it), Warning for Failed, InvalidSpec and BudgetExhausted; and a Warning when a maxCost turns
    out not to apply (no GPU price configured: BudgetExhausted False, NoPriceConfigured)."""
    before = previous.conditions if previous is not None else []
    events: list[StatusEvent] = []
    budget = find_condition(current.conditions, SweepConditionType.BUDGET_EXHAUSTED)
    if budget is not None and budget.reason == Reason.NO_PRICE_CONFIGURED:
        was = find_condition(before, SweepConditionType.BUDGET_EXHAUSTED)
        if was is None or was.reason != Reason.NO_PRICE_CONFIGURED:
            events.append(StatusEvent("Warning", Reason.NO_PRICE_CONFIGURED, budget.message or budget.reason))
    for type_ in SWEEP_CONDITION_ORDER:
        now = find_condition(current.conditions, type_)
        if now is None or now.status != ConditionStatus.TRUE or type_ == SweepConditionType.RUNNING:
            continue
        was = find_condition(before, type_)
        if was is None or was.status != ConditionStatus.TRUE:
            kind: EventType = "Warning" if type_ in _WARNING_TYPES else "Normal"
            events.append(StatusEvent(kind, now.reason or str(type_), now.message or str(type_)))
    return events


def trial_created_event(manifest: Mapping[str, Any]) -> StatusEvent:
    meta = manifest["metadata"]
    return StatusEvent("Normal", Reason.TRIAL_CREATED, f"{meta['name']}: {meta['annotations'][PARAMETERS_ANNOTATION]}")


def trial_stopped_event(action: TrialAction) -> StatusEvent | None:
    """A stop the sweep decided (a hold by the sweep's own suspension, reason None, is not announced)."""
    if action.reason is None:
        return None
    return StatusEvent("Normal", Reason.TRIAL_STOPPED, f"{action.name}: {action.message}")


def trial_resumed_event(action: TrialAction) -> StatusEvent | None:
    """An ASHA promotion or a resume after the sweep's suspension."""
    if action.reason == Reason.PROMOTED:
        return StatusEvent("Normal", Reason.TRIAL_PROMOTED, f"{action.name}: {action.message}")
    if action.reason == Reason.RESUMED:
        return StatusEvent("Normal", Reason.TRIAL_RESUMED, f"{action.name}: the sweep resumed")
    return None


def invalid_trial_event(number: int, parameters: Mapping[str, ParameterValue], problem: str) -> StatusEvent:
    return StatusEvent("Warning", Reason.INVALID_TRIAL, f"trial {number} {dict(parameters)}: {problem}")
