"""The work queue parks far requeues instead of keeping a worker per key (unit tier; issue 13's scale
suite found 5,000 parked workers holding ~21 MiB):

- a requeue at least `park_after` away ends the worker; the key is parked and runs again when due;
- a trigger takes a parked key out of the heap and runs it at once (one run, not two);
- close() drops what is parked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from trainsmart.handlers.queue import WorkQueue

WAIT_S = 5.0


async def _until(predicate: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


def test_a_far_requeue_is_parked_without_a_worker_and_runs_when_due() -> None:
    async def scenario() -> None:
        runs: list[str] = []

        async def reconcile(key: str) -> float | None:
            runs.append(key)
            return 0.2 if len(runs) == 1 else None

        queue: WorkQueue[str] = WorkQueue(reconcile, min_interval=0.0, park_after=0.1)
        queue.trigger("a")
        await _until(lambda: queue.active() == 0)
        assert queue.parked() == 1
        assert runs == ["a"]
        await _until(lambda: len(runs) == 2)
        await _until(lambda: queue.active() == 0)
        assert queue.parked() == 0
        await queue.close()

    asyncio.run(scenario())


def test_a_trigger_unparks_the_key_and_close_drops_the_rest() -> None:
    async def scenario() -> None:
        runs: list[str] = []

        async def reconcile(key: str) -> float | None:
            runs.append(key)
            return 60.0

        queue: WorkQueue[str] = WorkQueue(reconcile, min_interval=0.0, park_after=1.0)
        for key in "ab":
            queue.trigger(key)
        await _until(lambda: queue.active() == 0 and queue.parked() == 2)
        queue.trigger("a")
        await _until(lambda: runs.count("a") == 2)
        await _until(lambda: queue.active() == 0 and queue.parked() == 2)
        await asyncio.sleep(0.05)
        assert runs.count("a") == 2  # the stale heap entry of the first park does not run it again
        await queue.close()
        assert queue.parked() == 0

    asyncio.run(scenario())
