"""A per-job work queue: one reconcile at a time per job, coalesced triggers, rate limit, requeue, backoff.

Why not Kopf's timers or daemons for "reconcile again in N seconds": Kopf puts a finalizer on every object
that has a timer or daemon, so deleting a TrainingJob (by a user, or by its own TTL) would hang whenever
the operator is down, and the children need no cleanup a finalizer could give (they are owned). This queue
gives the same thing without touching the object: watch events (the job's, its pods') and accepted reports
call `trigger`; a worker task per job runs the reconcile, then sleeps until the next trigger or the
requeue time the reconcile returned. Triggers that arrive while a reconcile runs or waits are merged
into one run, and runs of one job are at least `min_interval` apart, which bounds status patches per job
(reports can arrive many times a second). A failing reconcile is retried with capped exponential backoff,
so an unreachable API or a broken object never becomes a retry storm. At most `max_concurrent` reconciles
(of all keys) run at once, the others wait their turn with their triggers merged: a burst of a thousand
jobs then holds a few dozen jobs' bodies, statuses and pods in memory at a time, not a thousand, and the
API sees a bounded number of requests in flight.

A key whose next run is far off (a requeue of at least `park_after` seconds, e.g. every unfinished job's
60 s resync) does not keep a worker task waiting for it: the worker ends, and the key waits as one entry
of a heap that a single timer serves (issue 13: 5,000 parked workers, each a task with its coroutine
frames, Event and timer, held some 4.4 KiB apiece, 21 MiB of the operator's RSS with 5,000 jobs; an entry
of the heap holds about 0.2 KiB). A trigger takes the key out of the heap; a failing key keeps its worker,
which holds its backoff count.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
Reconcile = Callable[[K], Awaitable[float | None]]
"""Reconcile one key; returns seconds until the next reconcile, or None: only on the next trigger."""

DEFAULT_MIN_INTERVAL_S: Final = 1.0
MAX_BACKOFF_S: Final = 60.0
DEFAULT_MAX_CONCURRENT: Final = 32
"""Reconciles in progress at once; twice the API calls in flight (`kube.API_CONCURRENCY`), so the API
threads stay busy while some reconciles compute."""
DEFAULT_PARK_AFTER_S: Final = 5.0
"""A requeue at least this far off parks the key in the timer heap instead of keeping its worker."""


@dataclass
class _Slot:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    due: float | None = None
    """Loop time of a requested requeue (None: none)."""
    failures: int = 0
    """Failed runs in a row (a failing key keeps its worker, so its backoff grows)."""
    task: asyncio.Task[None] | None = None


class WorkQueue(Generic[K]):
    """Runs `reconcile(key)` for triggered keys, serialised per key."""

    def __init__(
        self,
        reconcile: Reconcile[K],
        *,
        min_interval: float = DEFAULT_MIN_INTERVAL_S,
        max_backoff: float = MAX_BACKOFF_S,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT,
        park_after: float = DEFAULT_PARK_AFTER_S,
    ) -> None:
        self._reconcile = reconcile
        self._running = asyncio.Semaphore(max_concurrent)
        self._min_interval = min_interval
        self._max_backoff = max_backoff
        self._park_after = park_after
        self._slots: dict[K, _Slot] = {}
        self._parked: dict[K, float] = {}
        """Keys with no worker whose requeue is due at this loop time."""
        self._heap: list[tuple[float, int, K]] = []
        """(due, tie-breaker, key); entries whose due no longer matches `_parked` are stale and skipped."""
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due = math.inf
        self._closed = False

    def trigger(self, key: K) -> None:
        """Reconcile `key` soon (at once, or `min_interval` after its previous run)."""
        if self._closed:
            return
        self._parked.pop(key, None)  # this run decides its own requeue
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
            slot.task = asyncio.get_running_loop().create_task(self._work(key, slot), name=f"reconcile {key}")
        slot.wake.set()

    def active(self) -> int:
        """Keys with a worker (running, waiting for a turn or for a near requeue)."""
        return len(self._slots)

    def parked(self) -> int:
        """Keys waiting without a worker for a far requeue."""
        return len(self._parked)

    def _park(self, key: K, due: float) -> None:
        self._parked[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        if len(self._heap) > 2 * len(self._parked) + 64:  # stale entries (triggered keys): compact
            self._heap = [(d, n, k) for d, n, k in self._heap if self._parked.get(k) == d]
            heapq.heapify(self._heap)
        self._arm()

    def _arm(self) -> None:
        """Keep one timer for the earliest due entry of the heap."""
        if not self._heap or self._closed:
            return
        due = self._heap[0][0]
        if self._timer is not None and self._timer_due <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = asyncio.get_running_loop().call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer, self._timer_due = None, math.inf
        now = asyncio.get_running_loop().time()
        while self._heap and self._heap[0][0] <= now:
            due, _, key = heapq.heappop(self._heap)
            if self._parked.get(key) == due:
                self.trigger(key)
        self._arm()

    async def close(self) -> None:
        """Stop every worker (a reconcile in progress is cancelled; the next operator redoes it)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parked.clear()
        self._heap.clear()
        tasks = [slot.task for slot in self._slots.values() if slot.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._slots.clear()

    async def _wait(self, slot: _Slot, last_run: float) -> bool:
        """Wait for a trigger or the requeue time; False when there is neither (the worker may end).

        With nothing requeued, the worker still waits out `min_interval` after its last run before it
        ends: a trigger in that window (a report arriving right after the reconcile it caused) must meet
        the rate limit, which a fresh worker would not know about."""
        loop = asyncio.get_running_loop()
        if slot.wake.is_set():
            return True
        if slot.due is None or (slot.failures == 0 and slot.due - loop.time() >= self._park_after):
            # Nothing near is due: linger for the rate limit, then end (a far requeue is parked).
            linger = last_run + self._min_interval - loop.time()
            if linger > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(slot.wake.wait(), linger)
            return slot.wake.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(slot.wake.wait(), max(slot.due - loop.time(), 0.0))
        return True

    async def _work(self, key: K, slot: _Slot) -> None:
        loop = asyncio.get_running_loop()
        last_run = -math.inf
        while await self._wait(slot, last_run):
            pause = last_run + self._min_interval - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            await self._running.acquire()
            # Triggers until here are covered by this run (it reads the state afresh); later ones wake it again.
            slot.wake.clear()
            slot.due = None
            last_run = loop.time()
            try:
                requeue = await self._reconcile(key)
                slot.failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                slot.failures += 1
                requeue = min(self._max_backoff, self._min_interval * 2.0**slot.failures)
                log.exception("reconciling %s failed (attempt %d); retrying in %.0f s", key, slot.failures, requeue)
            finally:
                self._running.release()
            if requeue is not None:
                slot.due = loop.time() + max(requeue, 0.0)
        # No await between the last check and here: a trigger cannot slip in and be lost.
        if self._slots.get(key) is slot:
            del self._slots[key]
            if slot.due is not None and not self._closed:
                self._park(key, slot.due)
