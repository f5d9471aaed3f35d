"""glibc's allocator in the operator process: arenas capped, free memory given back after bursts.

glibc gives every new thread an arena of its own until there are eight per core, and each arena keeps
what is freed into it for that arena's next allocations. The operator's threads (the API worker pool,
the report endpoint, Kopf's executor) allocate during a burst of thousands of jobs, so that memory ends
up spread over a dozen or more arenas: after all jobs were deleted the RSS stayed about 30 MiB above
where it started, and it grew with the number of threads rather than with anything it held (issue 13's
scale suite; the Python heap, traced, was flat). The work is mostly one asyncio thread, so two arenas
cost no measurable contention and make freed memory reusable by whichever thread allocates next.

`cap_malloc_arenas` must run before the process starts threads (glibc fixes its arena limit when the first
thread needs an arena). `MALLOC_ARENA_MAX` in the environment wins: glibc has already applied it.

glibc returns freed memory to the system only from the top of its heap; pages freed in the middle stay in
the process until `malloc_trim` gives them back. After thousands of jobs were created and deleted that was
10-20 MiB of the operator's RSS (bench/scale.py with /debug/memory?trim=1), so `PeriodicTrim` calls it every
ten seconds, in a worker thread: it walks every arena (10-15 ms with a 250 MiB heap, 45 ms when it has much
to give back), too long to hold the event loop, while a thread only holds one arena's lock at a time.

Without glibc (musl, macOS) all of this does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import os
from typing import Any, Final

from trainsmart.loop_task import LoopTask

M_ARENA_MAX: Final = -8
"""mallopt's parameter number for the arena limit (glibc's malloc.h)."""
OPERATOR_ARENAS: Final = 2
TRIM_INTERVAL_S: Final = 10.0


@functools.cache
def _libc_function(name: str) -> Any:
    """A function of the process's C library, or None where it has no such function (not glibc); looked
    up once (the trim runs every few seconds)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError):
        return None


def cap_malloc_arenas(arenas: int = OPERATOR_ARENAS) -> bool:
    """Limit glibc's malloc arenas to `arenas`; False where the environment decides or there is no glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): free pages of every arena back to the system; False where there is no glibc."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True


class PeriodicTrim(LoopTask):
    """A task in the running loop that calls `malloc_trim` every `interval` seconds; `start` in the loop,
    `stop` before it ends. Without glibc it never starts."""

    def __init__(self, interval: float = TRIM_INTERVAL_S) -> None:
        super().__init__("malloc trim")
        self._interval = interval

    def start(self) -> None:
        if _libc_function("malloc_trim") is not None:
            super().start()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._interval)
            await loop.run_in_executor(None, malloc_trim)
