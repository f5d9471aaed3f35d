"""The TrackingReady condition (issue 14): how the experiment-tracking sync is doing, as a status condition.

The sync (`trainsmart.tracking.mlflow_sync`) runs off the reconcile path and only says how it is doing
(`TrackingHealth`); the controllers put that into the status they derived, with this pure function, right
before the patch-if-changed. So an unreachable tracking server shows in status without ever delaying a
reconcile, and a status read back compares equal to the one written (the condition changes only when the
health does).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from trainsmart.api.conditions import (
    TRACKING_READY,
    ConditionStatus,
    Reason,
    StatusT,
    find_condition,
    set_condition,
)


class TrackingState(StrEnum):
    """Where the sync of one object's run stands."""

    PENDING = Reason.TRACKING_PENDING
    SYNCED = Reason.TRACKING_SYNCED
    UNREACHABLE = Reason.TRACKING_UNREACHABLE
    REFUSED = Reason.TRACKING_REFUSED
    CREDENTIALS_MISSING = Reason.TRACKING_CREDENTIALS_MISSING


@dataclass(frozen=True)
class TrackingHealth:
    """The sync's word on one object: its state and a sentence without secrets (URIs carry none: admission
    refuses credentials in them)."""

    state: TrackingState
    message: str


def with_tracking_condition(status: StatusT, health: TrackingHealth | None, now: datetime) -> StatusT:
    """`status` with TrackingReady set from `health`; None (tracking not configured) removes it.

    PENDING keeps a TrackingReady the status already has: after an operator restart the sync knows nothing
    until its first attempt, and the stored word is the best one until then (no flapping to Unknown)."""
    conditions = status.conditions
    if health is None:
        if find_condition(conditions, TRACKING_READY) is None:
            return status
        return status.model_copy(update={"conditions": [c for c in conditions if c.type != TRACKING_READY]})
    if health.state == TrackingState.PENDING:
        if find_condition(conditions, TRACKING_READY) is not None:
            return status
        value = ConditionStatus.UNKNOWN
    else:
        value = ConditionStatus.TRUE if health.state == TrackingState.SYNCED else ConditionStatus.FALSE
    generation = getattr(status, "observed_generation", None)
    updated = set_condition(conditions, TRACKING_READY, value, health.state.value, health.message, now, generation)
    return status.model_copy(update={"conditions": updated})
