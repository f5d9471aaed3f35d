"""`wait_for`: poll until something holds, then hand back what held.

One signature for every wait the tests do, so a timeout always fails the same way: an AssertionError
that says what was awaited and, when the caller can tell, the state that kept it from happening (a
status, pod states, an operator's log), which is what one needs to read a flaky failure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    what: str = "the condition",
    diagnose: Callable[[], str] | None = None,
    *,
    interval: float = 0.2,
) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy, and return that.

    A call that comes back falsy after `timeout` seconds fails the wait with "timed out ... waiting for
    <what>" and, below it, `diagnose()`; exceptions from `predicate` propagate (a wait must not hide a
    broken probe behind a timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            detail = f"\n{diagnose()}" if diagnose is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)
