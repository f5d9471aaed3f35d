"""Which operator replica acts under Kopf peering, and the pod label that routes reports to it.

Pins: a replica acts only when its own entry is live and no other live peer reaches its priority (a tie
pauses both, as Kopf does); dead entries (lastseen + lifetime passed, or unreadable) do not count; the
loop labels once at start, then writes only on change, and an API error does not end it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from trainsmart.handlers.standby import is_active, keep_active_label

NOW = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1.0, lifetime: int = 60) -> dict[str, Any]:
    return {"priority": priority, "lifetime": lifetime, "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat()}


def test_the_highest_live_priority_acts_and_the_other_stands_by() -> None:
    peers = {"a@pod-1": peer(10), "b@pod-2": peer(20)}
    assert is_active(peers, 20, NOW) and not is_active(peers, 10, NOW)


def test_a_tie_pauses_both() -> None:
    assert not is_active({"a": peer(7), "b": peer(7)}, 7, NOW)


def test_dead_or_unreadable_peers_do_not_count() -> None:
    peers = {"me": peer(10), "gone": peer(99, seen_ago=61), "junk": {"priority": 50, "lastseen": "yesterday"}}
    assert is_active(peers, 10, NOW)


def test_without_its_own_live_entry_a_replica_does_not_act() -> None:
    assert not is_active({}, 10, NOW)
    assert not is_active({"me": peer(10, seen_ago=120)}, 10, NOW)
    assert is_active({"me": {"priority": 10, "lifetime": 60, "lastseen": "2026-11-21T07:59:59"}}, 10, NOW)


def test_the_label_is_written_at_start_then_only_on_change_and_errors_are_survived() -> None:
    rounds: list[dict[str, Any] | Exception] = [
        {"me": peer(10)},
        {"me": peer(10)},
        RuntimeError("apiserver away"),
        {"me": peer(10), "new": peer(20)},
        {"me": peer(10), "new": peer(20)},
    ]
    labels: list[bool] = []

    async def read_peers() -> dict[str, Any]:
        if not rounds:
            raise asyncio.CancelledError
        item = rounds.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    async def set_label(active: bool) -> None:
        labels.append(active)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(keep_active_label(read_peers, set_label, 10, interval=0, clock=lambda: NOW))
    assert labels == [True, False]
