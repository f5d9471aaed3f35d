"""A container's main process as the agent sees it: poll, terminate, and no stragglers.

The process is started as the leader of a new session and process group, so a signal to the group
reaches what it forked (torchrun's workers, a shell's children). When the leader exits, the rest of its
group is killed, as a container runtime does when a container's init exits. The exit is first observed
with `waitid(..., WNOWAIT)`: the zombie keeps the group id reserved until then, so the group kill can
never hit an unrelated process that happened to get the same number.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def exit_code_of(returncode: int) -> int:
    """Popen's -N (killed by signal N) becomes 128 + N, the way container runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or None.

    Paired with the pid it identifies a process across pid reuse; used to clean up after a crashed agent.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
    rest = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class LocalProcess:
    """`ContainerProcess` over a `subprocess.Popen` started with `start_new_session=True`."""

    def __init__(self, popen: subprocess.Popen[bytes], on_exit: Callable[[int], None] | None = None) -> None:
        self._popen = popen
        self._code: int | None = None
        self._lock = threading.Lock()
        self._on_exit = on_exit
        self.started_at = start_time(popen.pid)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def poll(self) -> int | None:
        with self._lock:
            if self._code is not None:
                return self._code
            if self._popen.returncode is None:
                try:
                    info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    info = None  # reaped behind our back; Popen.wait() below copes
                else:
                    if info is None:
                        return None
            kill_group(self.pid, signal.SIGKILL)
            self._code = exit_code_of(self._popen.wait())
            code = self._code
        if self._on_exit is not None:
            self._on_exit(code)
        return code

    def terminate(self, grace_seconds: float) -> int:
        code = self.poll()
        if code is not None:
            return code
        kill_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + max(grace_seconds, 0.0)
        while time.monotonic() < deadline:
            code = self.poll()
            if code is not None:
                return code
            time.sleep(0.02)
        kill_group(self.pid, signal.SIGKILL)
        while (code := self.poll()) is None:
            time.sleep(0.01)
        return code


def pids_in_namespace(ns_file: Path, kind: str) -> list[int]:
    """Processes whose `kind` namespace (`net`, `mnt`, ...) is the one pinned at `ns_file`."""
    try:
        target = os.stat(ns_file)
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/{kind}")
        except OSError:
            continue
        if (st.st_ino, st.st_dev) == (target.st_ino, target.st_dev):
            found.append(int(entry))
    return found


def kill_pids(pids: Iterable[int], *, wait_seconds: float = 2.0) -> None:
    """SIGKILL each pid and wait (briefly) until they are gone, so namespaces can really be freed."""
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_seconds
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _alive(p)]
        if pids:
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not state[state.rfind(")") + 2 :].startswith("Z")


def kill_recorded(records: Iterable[tuple[int, int]]) -> None:
    """Kill process groups recorded as (pid, start time) by an earlier agent, if still the same process."""
    for pid, started in records:
        if start_time(pid) == started:
            kill_group(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
