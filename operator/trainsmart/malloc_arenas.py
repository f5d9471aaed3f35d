"""Cap glibc's malloc arenas in the operator process, so memory freed after a burst of jobs is reused.

glibc gives every new thread an arena of its own until there are eight per core, and each arena keeps
what is freed into it for that arena's next allocations. The operator's threads (the API worker pool,
the report endpoint, Kopf's executor) allocate during a burst of thousands of jobs, so that memory ends
up spread over a dozen or more arenas: after all jobs were deleted the RSS stayed about 30 MiB above
where it started, and it grew with the number of threads rather than with anything it held (issue 13's
scale suite; the Python heap, traced, was flat). The work is mostly one asyncio thread, so two arenas
cost no measurable contention and make freed memory reusable by whichever thread allocates next.

Must run before the process starts threads (glibc fixes its arena limit when the first thread needs an
arena). `MALLOC_ARENA_MAX` in the environment wins: glibc has already applied it. Without glibc (musl,
macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import os
from typing import Final

M_ARENA_MAX: Final = -8
"""mallopt's parameter number for the arena limit (glibc's malloc.h)."""
OPERATOR_ARENAS: Final = 2


def cap_malloc_arenas(arenas: int = OPERATOR_ARENAS) -> bool:
    """Limit glibc's malloc arenas to `arenas`; False where the environment decides or there is no glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
