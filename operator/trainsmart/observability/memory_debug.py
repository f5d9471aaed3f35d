"""A memory debug hook, off unless `TRAINSMART_DEBUG_MEMORY` is set: `GET /debug/memory` on the metrics port
answers what the operator process holds, to tell a leak (objects still referenced) from allocator
slack (freed memory the allocator keeps for reuse) when RSS does not come back (issue 13's scale suite).

The answer is JSON: RSS, live objects by type after a full collection (objgraph's `most_common_types`,
without objgraph) and, with `TRAINSMART_DEBUG_MEMORY=trace`, the Python heap as tracemalloc counts it and
its biggest allocation sites (tracing starts with the metrics server, before any job is seen). Query `?trim=1`
first asks glibc to return free heap memory to the system (`malloc_trim(0)`), so the RSS before and after
shows how much of it was slack. Never on by default: tracemalloc costs memory and CPU on every allocation.
"""

from __future__ import annotations

import collections
import gc
import os
import tracemalloc
from pathlib import Path
from typing import Any, Final

from trainsmart.malloc_arenas import malloc_trim

DEBUG_MEMORY_ENV: Final = "TRAINSMART_DEBUG_MEMORY"
DEBUG_MEMORY_PATH: Final = "/debug/memory"
TRACE_FRAMES: Final = 4


def memory_debug_enabled() -> bool:
    return os.environ.get(DEBUG_MEMORY_ENV, "") not in ("", "0")


def start_tracing() -> None:
    """Start tracemalloc when the hook asks for tracing (idempotent)."""
    if os.environ.get(DEBUG_MEMORY_ENV, "") == "trace" and not tracemalloc.is_tracing():
        tracemalloc.start(TRACE_FRAMES)


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_report(*, trim: bool = False, top: int = 25) -> dict[str, Any]:
    """RSS (before and after a collection and an optional trim), object counts by type, allocation sites."""
    report: dict[str, Any] = {"rss_mib": rss_bytes() / 2**20}
    report["collected"] = gc.collect()
    if trim:
        report["trimmed"] = malloc_trim()
    report["rss_after_mib"] = rss_bytes() / 2**20
    counts = collections.Counter(type(obj).__name__ for obj in gc.get_objects())
    report["objects"] = counts.most_common(top)
    if tracemalloc.is_tracing():
        snapshot = tracemalloc.take_snapshot()
        stats = snapshot.statistics("traceback")[:top]
        report["traced_mib"] = tracemalloc.get_traced_memory()[0] / 2**20
        report["sites"] = [
            {"kib": stat.size / 1024, "count": stat.count, "where": [str(frame) for frame in stat.traceback]}
            for stat in stats
        ]
    return report
