"""Setting conditions the Kubernetes way: one per type, `lastTransitionTime` moves only when status does.

`kubectl wait`, dashboards and alerts read `lastTransitionTime` as "since when is this so"; rewriting it on
every reconcile would make every status patch a change and every condition look brand new. Times are cut
to whole seconds because that is what the apiserver keeps (metav1.Time): a status read back must compare
equal to the one written, or the I/O side would patch forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Final

from trainsmart.api import Condition, ConditionStatus, TrainingJobConditionType

# The order conditions are written in, so that the same state always serializes the same way.
TRAININGJOB_CONDITION_ORDER: Final = tuple(TrainingJobConditionType)


def to_api_time(moment: datetime) -> datetime:
    """`moment` at the apiserver's precision (whole seconds); it must be timezone-aware."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no timezone; pass an aware datetime (e.g. datetime.now(UTC))")
    return moment.replace(microsecond=0)


def find_condition(conditions: Iterable[Condition], type_: str) -> Condition | None:
    """The condition of `type_`, or None."""
    return next((condition for condition in conditions if condition.type == type_), None)


def is_condition_true(conditions: Iterable[Condition], type_: str) -> bool:
    """Whether a condition of `type_` exists with status True."""
    condition = find_condition(conditions, type_)
    return condition is not None and condition.status == ConditionStatus.TRUE


def make_condition(
    previous: Condition | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> Condition:
    """A condition of `type_`; it keeps `previous`'s lastTransitionTime when the status is unchanged."""
    unchanged = previous is not None and previous.status == status and previous.last_transition_time is not None
    transition = previous.last_transition_time if unchanged and previous is not None else to_api_time(now)
    return Condition(
        type=type_,
        status=status,
        reason=reason,
        message=message,
        last_transition_time=transition,
        observed_generation=observed_generation,
    )


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int | None = None,
) -> list[Condition]:
    """`conditions` with `type_` set (replaced in place, or appended); the others untouched."""
    updated = make_condition(
        find_condition(conditions, type_), type_, status, reason, message, now, observed_generation
    )
    out = [condition for condition in conditions if condition.type != type_]
    position = next((i for i, condition in enumerate(conditions) if condition.type == type_), len(out))
    out.insert(position, updated)
    return out


def merge_conditions(previous: Sequence[Condition], updates: Sequence[Condition], now: datetime) -> list[Condition]:
    """`updates` (their lastTransitionTime ignored) applied over `previous`, transitions kept as above.

    Conditions of types not in `updates` are kept as they were, so another writer's types survive.
    """
    out = list(previous)
    for update in updates:
        out = set_condition(
            out,
            update.type,
            update.status,
            update.reason or update.type,
            update.message or "",
            now,
            update.observed_generation,
        )
    return out


def ordered(conditions: Iterable[Condition], order: Sequence[str] = TRAININGJOB_CONDITION_ORDER) -> list[Condition]:
    """Conditions in `order`, unknown types after them by name: a stable list for stable patches."""
    rank = {type_: i for i, type_ in enumerate(order)}
    return sorted(conditions, key=lambda condition: (rank.get(condition.type, len(rank)), condition.type))
