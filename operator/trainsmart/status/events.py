"""Kubernetes Events for status transitions, computed from (previous, current) status.

Events are emitted on a transition, not on every reconcile: a condition that becomes True is announced
once (Warning for restarts, failures and invalid specs; Normal otherwise). Of the other changes only those
a user acts on or asks about are announced: a resume, and replicas recreated after a restart. The I/O
side posts these after the status patch succeeded, so a retried reconcile does not announce twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from trainsmart.api import ConditionStatus, TrainingJobConditionType, TrainingJobStatus
from trainsmart.status.conditions import TRAININGJOB_CONDITION_ORDER, find_condition
from trainsmart.status.reasons import REPLICAS_RECREATED

EventType = Literal["Normal", "Warning"]

_WARNINGS: Final = frozenset(
    {TrainingJobConditionType.RESTARTING, TrainingJobConditionType.FAILED, TrainingJobConditionType.INVALID_SPEC}
)


@dataclass(frozen=True)
class StatusEvent:
    """One Event to post on the TrainingJob."""

    type: EventType
    reason: str
    message: str


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
            and now.reason == REPLICAS_RECREATED
            and (was is None or was.reason != REPLICAS_RECREATED or was.message != now.message)
        )
        if became_true or resumed or recreated:
            kind: EventType = "Warning" if became_true and type_ in _WARNINGS else "Normal"
            events.append(StatusEvent(kind, now.reason or type_.value, now.message or type_.value))
    return events
