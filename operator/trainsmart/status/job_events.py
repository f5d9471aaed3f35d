"""Kubernetes Events for status transitions, computed from (previous, current) status.

Events are emitted on a transition, not on every reconcile: a condition that becomes True is announced
once (Warning for restarts, failures and invalid specs; Normal otherwise). Of the other changes only those
a user acts on or asks about are announced: a resume, and replicas recreated after a restart. The I/O
side posts these after the status patch succeeded, so a retried reconcile does not announce twice.
"""

from __future__ import annotations

from typing import Final

from trainsmart.api import ConditionStatus, TrainingJobConditionType, TrainingJobStatus
from trainsmart.api.conditions import TRAININGJOB_CONDITION_ORDER, EventType, Reason, StatusEvent, find_condition

_WARNINGS: Final = frozenset(
    {TrainingJobConditionType.RESTARTING, TrainingJobConditionType.FAILED, TrainingJobConditionType.INVALID_SPEC}
)


def status_events(previous: TrainingJobStatus | None, current: TrainingJobStatus) -> list[StatusEvent]:
    """The Events announcing what changed between two statuses, in condition order."""
    events: list[StatusEvent] = []
    before = previous.conditions if previous is not None else []
    for type_ in TRAININGJOB_CONDITION_ORDER:
        now = find_condition(current.conditions, type_)
        was = find_condition(before, type_)
        if now is None:
            continue
        became_true = now.status == ConditionStatus.TRUE and (was is None or was.status != ConditionStatus.TRUE)
        resumed = (
            type_ == TrainingJobConditionType.SUSPENDED
            and now.status != ConditionStatus.TRUE
            and was is not None
            and was.status == ConditionStatus.TRUE
        )
        recreated = (
            type_ == TrainingJobConditionType.RESTARTING
            and now.reason == Reason.REPLICAS_RECREATED
            and (was is None or was.reason != Reason.REPLICAS_RECREATED or was.message != now.message)
        )
        if became_true or resumed or recreated:
            kind: EventType = "Warning" if became_true and type_ in _WARNINGS else "Normal"
            events.append(StatusEvent(kind, now.reason or type_.value, now.message or type_.value))
    return events


def diagnostic_events(previous: TrainingJobStatus | None, current: TrainingJobStatus) -> list[StatusEvent]:
    """Events for trainer diagnostics that are new in `current` (Normal for Info findings, else Warning)."""
    seen = {(item.type, item.message) for item in (previous.diagnostics if previous is not None else [])}
    events: list[StatusEvent] = []
    for item in current.diagnostics:
        if (item.type, item.message) in seen:
            continue
        kind: EventType = "Normal" if item.severity.value == "Info" else "Warning"
        message = item.message + (f" Suggestion: {item.suggestion}" if item.suggestion else "")
        events.append(StatusEvent(kind, item.type, message))
    return events
