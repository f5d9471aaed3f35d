"""The operator caps glibc's malloc arenas before it starts threads, and trims free heap pages back to
the system periodically (`trainsmart.malloc_arenas`).

Each case runs in a fresh interpreter: the arena limit is fixed for a process once a thread needed an
arena, and pytest's own process has threads already. The arenas are counted from glibc's `malloc_info`
report (one `<heap nr=...>` per arena) after twelve threads each allocated while all were alive.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time

import pytest

from trainsmart import malloc_arenas

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from trainsmart.malloc_arenas import cap_malloc_arenas

    capped = cap_malloc_arenas() if sys.argv[1] == "cap" else None
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
    libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
    libc.fclose.argtypes = (ctypes.c_void_p,)
    barrier = threading.Barrier(13)
    kept = []

    def work():
        kept.append(bytearray(1 << 20))  # past pymalloc: a malloc in this thread's arena
        barrier.wait()
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    barrier.wait()
    with tempfile.NamedTemporaryFile(suffix=".xml") as report:
        handle = libc.fopen(report.name.encode(), b"w")
        libc.malloc_info(0, handle)
        libc.fclose(handle)
        arenas = open(report.name).read().count("<heap nr=")
    barrier.wait()
    for thread in threads:
        thread.join()
    print(capped, arenas)
    """
)


def _probe(mode: str, **env: str) -> tuple[str, int]:
    environment = {key: value for key, value in os.environ.items() if key != "MALLOC_ARENA_MAX"} | env
    result = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=environment, check=True, timeout=60
    )
    capped, arenas = result.stdout.split()
    return capped, int(arenas)


def test_twelve_threads_share_two_arenas_once_capped() -> None:
    assert _probe("cap") == ("True", 2)


def test_without_the_cap_threads_get_arenas_of_their_own() -> None:
    """What the cap is for: glibc's default gives new threads new arenas (8 per core, at least 16 here)."""
    _, arenas = _probe("none")
    assert arenas > 2


def test_malloc_arena_max_in_the_environment_wins() -> None:
    assert _probe("cap", MALLOC_ARENA_MAX="4") == ("False", 4)


TRIM_PROBE = textwrap.dedent(
    """
    from trainsmart.malloc_arenas import malloc_trim

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

    blocks = [bytearray(4096) for _ in range(20000)]  # 80 MiB of heap chunks (below the mmap threshold)
    kept = blocks[::8]  # one in eight stays: the heap's top is never free, so glibc cannot shrink it alone
    del blocks
    before = rss_mib()
    assert malloc_trim()
    print(before - rss_mib())
    """
)


def test_malloc_trim_gives_pages_freed_in_the_middle_of_the_heap_back() -> None:
    result = subprocess.run([sys.executable, "-c", TRIM_PROBE], capture_output=True, text=True, check=True, timeout=60)
    assert float(result.stdout) > 40.0  # of the 70 MiB freed between kept blocks


def test_the_periodic_trim_runs_every_interval_until_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(malloc_arenas, "malloc_trim", lambda: calls.append(time.monotonic()) or True)

    async def run() -> int:
        trim = malloc_arenas.PeriodicTrim(interval=0.01)
        trim.start()
        await asyncio.sleep(0.1)
        await trim.stop()
        seen = len(calls)
        await asyncio.sleep(0.05)
        assert len(calls) == seen  # stopped: no more calls
        return seen

    assert asyncio.run(run()) >= 3
