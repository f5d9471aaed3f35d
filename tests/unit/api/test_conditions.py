"""Condition bookkeeping: one per type, lastTransitionTime moves only when the status changes.

Pins:
- a new condition is stamped with `now` at whole seconds; an unchanged status keeps the old stamp even
  when reason or message change; a changed status gets a new stamp;
- set_condition replaces in place and keeps the other types; merge_conditions applies several;
- naive datetimes are refused (status times must be RFC 3339 with a zone);
- ordered() gives the documented TrainingJob order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from trainsmart.api import Condition, ConditionStatus
from trainsmart.api.conditions import (
    find_condition,
    is_condition_true,
    merge_conditions,
    ordered,
    set_condition,
    to_api_time,
)

T0 = datetime(2025, 1, 1, 12, 0, 0, 654321, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)
TRUE, FALSE = ConditionStatus.TRUE, ConditionStatus.FALSE


@pytest.mark.parametrize(
    ("first", "second", "expected_time"),
    [
        (TRUE, TRUE, to_api_time(T0)),
        (FALSE, FALSE, to_api_time(T0)),
        (FALSE, TRUE, to_api_time(T1)),
        (TRUE, FALSE, to_api_time(T1)),
    ],
)
def test_transition_time(first: ConditionStatus, second: ConditionStatus, expected_time: datetime) -> None:
    conditions = set_condition([], "Running", first, "A", "first", T0, 1)
    conditions = set_condition(conditions, "Running", second, "B", "second", T1, 2)
    (condition,) = conditions
    assert condition.last_transition_time == expected_time
    assert (condition.reason, condition.message, condition.observed_generation) == ("B", "second", 2)


def test_times_are_whole_seconds_and_aware() -> None:
    (condition,) = set_condition([], "Created", TRUE, "ChildrenCreated", "ok", T0)
    assert condition.last_transition_time == datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone"):
        set_condition([], "Created", TRUE, "ChildrenCreated", "ok", datetime(2025, 1, 1))


def test_set_keeps_other_types_and_position() -> None:
    conditions = set_condition([], "Created", TRUE, "A", "a", T0)
    conditions = set_condition(conditions, "Running", FALSE, "B", "b", T0)
    conditions = set_condition(conditions, "Created", FALSE, "C", "c", T1)
    assert [c.type for c in conditions] == ["Created", "Running"]
    assert not is_condition_true(conditions, "Created")
    assert find_condition(conditions, "Missing") is None


def test_merge() -> None:
    previous = set_condition([], "Created", TRUE, "A", "a", T0)
    previous = set_condition(previous, "Foreign", TRUE, "X", "x", T0)
    updates = [
        Condition(type="Created", status=TRUE, reason="A2", message="a2"),
        Condition(type="Running", status=TRUE, reason="R", message="r"),
    ]
    merged = merge_conditions(previous, updates, T1)
    by_type = {c.type: c for c in merged}
    assert by_type["Created"].last_transition_time == to_api_time(T0)
    assert by_type["Created"].reason == "A2"
    assert by_type["Running"].last_transition_time == to_api_time(T1)
    assert by_type["Foreign"].reason == "X"


def test_ordered() -> None:
    conditions = [
        Condition(type=t, status=FALSE, reason="R", message="m")
        for t in ("Zeta", "InvalidSpec", "Running", "Created", "Alpha")
    ]
    assert [c.type for c in ordered(conditions)] == ["Created", "Running", "InvalidSpec", "Alpha", "Zeta"]
