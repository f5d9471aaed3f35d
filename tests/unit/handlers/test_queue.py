"""`handlers.queue.WorkQueue`: per-key serialised reconciles with coalescing, rate limit, requeue, backoff.

Pins:
- triggers of a key that is already queued are merged into one reconcile;
- a trigger that arrives while the key's reconcile runs gives exactly one more run, after it;
- one reconcile per key at a time, while different keys run concurrently, at most `max_concurrent` of
  them (the others wait their turn, their triggers merged);
- the returned delay requeues the key without any trigger; None ends its worker (nothing stays active);
- runs of one key are at least `min_interval` apart;
- a failing reconcile is retried by itself with growing, capped back-off, and success resets it;
- `close` cancels a running reconcile, ends every worker, and later triggers are ignored.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable

import pytest

from trainsmart.handlers.queue import WorkQueue

pytestmark = pytest.mark.asyncio


class Recorder:
    """A reconcile that records its calls; `result(key, n)` decides what the n-th call of a key returns."""

    def __init__(self, result: Callable[[str, int], float | None] = lambda _key, _n: None) -> None:
        self.result = result
        self.calls: list[tuple[str, float]] = []
        self.running: Counter[str] = Counter()
        self.max_running: Counter[str] = Counter()
        self.overlap = 0
        self.hold: asyncio.Event | None = None
        self.started = asyncio.Event()

    async def __call__(self, key: str) -> float | None:
        loop = asyncio.get_running_loop()
        self.calls.append((key, loop.time()))
        self.running[key] += 1
        self.max_running[key] = max(self.max_running[key], self.running[key])
        if sum(self.running.values()) > 1:
            self.overlap += 1
        self.started.set()
        try:
            if self.hold is not None:
                await self.hold.wait()
            else:
                await asyncio.sleep(0)
        finally:
            self.running[key] -= 1
        return self.result(key, self.count(key))

    def count(self, key: str) -> int:
        return sum(1 for called, _ in self.calls if called == key)


async def until(predicate: Callable[[], bool], seconds: float = 5.0) -> None:
    """Poll `predicate` (the queue offers no event to wait on) until it holds; fail after `seconds`."""
    for _ in range(int(seconds / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"still not true after {seconds} s")


async def settle(queue: WorkQueue[str]) -> None:
    """Until every worker has ended."""
    await until(lambda: queue.active() == 0)


async def test_triggers_of_a_queued_key_are_merged_into_one_reconcile() -> None:
    recorder = Recorder()
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.0)
    for _ in range(5):
        queue.trigger("a")
    await settle(queue)
    assert recorder.count("a") == 1
    await queue.close()


async def test_a_trigger_during_a_reconcile_gives_exactly_one_more_run() -> None:
    recorder = Recorder()
    recorder.hold = asyncio.Event()
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.0)
    queue.trigger("a")
    await recorder.started.wait()
    for _ in range(3):
        queue.trigger("a")
    recorder.hold.set()
    await settle(queue)
    assert recorder.count("a") == 2
    assert recorder.max_running["a"] == 1
    await queue.close()


async def test_one_reconcile_per_key_at_a_time_but_keys_run_concurrently() -> None:
    recorder = Recorder()
    recorder.hold = asyncio.Event()
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.0)
    queue.trigger("a")
    queue.trigger("b")
    await until(lambda: sum(recorder.running.values()) == 2)
    queue.trigger("a")  # while a runs: must wait for it
    await asyncio.sleep(0.05)
    assert recorder.running["a"] == 1
    recorder.hold.set()
    await settle(queue)
    assert recorder.max_running == Counter({"a": 1, "b": 1})
    assert recorder.overlap >= 1  # a and b were in progress together
    assert recorder.count("a") == 2
    assert recorder.count("b") == 1
    await queue.close()


async def test_at_most_max_concurrent_reconciles_run_and_waiting_keys_merge_triggers() -> None:
    recorder = Recorder()
    recorder.hold = asyncio.Event()
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.0, max_concurrent=2)
    for key in "abcde":
        queue.trigger(key)
    await until(lambda: sum(recorder.running.values()) == 2)
    await asyncio.sleep(0.05)
    assert sum(recorder.running.values()) == 2
    for key in "cde":
        queue.trigger(key)  # still waiting for a turn: merged into their first run
    recorder.hold.set()
    await settle(queue)
    assert sorted(key for key, _ in recorder.calls) == list("abcde")
    await queue.close()


async def test_the_returned_delay_requeues_without_a_trigger_and_none_ends_the_worker() -> None:
    recorder = Recorder(lambda _key, n: 0.02 if n < 3 else None)
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.0)
    queue.trigger("a")
    await settle(queue)
    assert recorder.count("a") == 3
    assert queue.active() == 0
    first, _second, third = (when for _, when in recorder.calls)
    assert third - first >= 0.04 - 0.005  # two requeues of 0.02 s (loop clock granularity allowed)
    await queue.close()


async def test_runs_of_one_key_are_at_least_min_interval_apart() -> None:
    recorder = Recorder()
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.1)
    queue.trigger("a")
    await recorder.started.wait()
    await asyncio.sleep(0.01)
    queue.trigger("a")
    await settle(queue)
    assert recorder.count("a") == 2
    (_, first), (_, second) = recorder.calls
    assert second - first >= 0.1 - 0.005


async def test_a_failing_reconcile_is_retried_with_growing_capped_backoff() -> None:
    failures = 4

    def result(_key: str, n: int) -> float | None:
        if n <= failures:
            raise RuntimeError(f"boom {n}")
        return None

    recorder = Recorder(result)
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.01, max_backoff=0.05)
    queue.trigger("a")
    await settle(queue)
    assert recorder.count("a") == failures + 1  # retried without any trigger, then succeeded and stopped
    times = [when for _, when in recorder.calls]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # 0.02, 0.04, then capped at 0.05 (min_interval * 2**failures, at most max_backoff)
    assert gaps[0] >= 0.02 - 0.005
    assert gaps[1] >= 0.04 - 0.005
    assert all(gap < 0.05 + 0.5 for gap in gaps)  # capped (generous bound for a loaded machine)
    assert gaps[3] >= 0.05 - 0.005
    await queue.close()


async def test_success_resets_the_backoff() -> None:
    outcomes = iter([RuntimeError("x"), RuntimeError("y"), 0.0, RuntimeError("z"), None])

    def result(_key: str, _n: int) -> float | None:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    recorder = Recorder(result)
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.01, max_backoff=10.0)
    queue.trigger("a")
    await settle(queue)
    times = [when for _, when in recorder.calls]
    assert len(times) == 5
    # after the success (3rd call) the next failure backs off by min_interval * 2 again, not * 8
    assert times[4] - times[3] < 0.08 + 0.5
    assert times[4] - times[3] >= 0.02 - 0.005
    await queue.close()


async def test_close_cancels_a_running_reconcile_and_ignores_later_triggers() -> None:
    recorder = Recorder()
    recorder.hold = asyncio.Event()  # never set: the reconcile would run forever
    queue: WorkQueue[str] = WorkQueue(recorder, min_interval=0.0)
    queue.trigger("a")
    queue.trigger("b")
    await until(lambda: sum(recorder.running.values()) == 2)
    await queue.close()
    assert queue.active() == 0
    assert sum(recorder.running.values()) == 0  # both were cancelled (their finally ran)
    queue.trigger("a")
    await asyncio.sleep(0.02)
    assert queue.active() == 0
    assert recorder.count("a") == 1
