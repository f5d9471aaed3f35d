"""A container's main process as the agent sees it: poll, terminate, and no stragglers.

The process is started as the leader of a new session and process group, so a signal to the group
reaches what it forked (torchrun's workers, a shell's children). When the leader exits, the rest of its
group is killed, as a container runtime does when a container's init exits. The exit is first observed
with `waitid(..., WNOWAIT)`: the zombie keeps the group id reserved until then, so the group kill can
never hit an unrelated process that happened to get the same number.

Exits are noticed, and the processes reaped, by one `ExitWatcher` thread for all of them (a pidfd per
process turns readable when it exits), not by whoever happens to poll next: a pod worker busy elsewhere
must not leave a zombie behind, nor learn of the exit late (issue 13: a 300-pod burst left ~200 zombies
and pods Running for a minute after their command exited). `notify_exit` is how the lifecycle is told.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)


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
    """`ContainerProcess` over a `subprocess.Popen` started with `start_new_session=True`. Watched by the
    shared `ExitWatcher` from the start, so its exit is reaped (and its group killed) at once."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        on_exit: Callable[[int], None] | None = None,
        *,
        watcher: ExitWatcher | None = None,
    ) -> None:
        self._popen = popen
        self._code: int | None = None
        self._lock = threading.Lock()
        self._exited = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._on_exit = on_exit
        self.started_at = start_time(popen.pid)
        (watcher or exit_watcher()).watch(self)

    @property
    def pid(self) -> int:
        return self._popen.pid

    def notify_exit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the process has exited and been reaped (from the watcher's thread), or at
        once if it already has."""
        with self._lock:
            if self._code is None:
                self._callbacks.append(callback)
                return
        callback()

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
            callbacks, self._callbacks = self._callbacks, []
        self._exited.set()
        if self._on_exit is not None:
            self._on_exit(code)
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("exit callback of pid %d failed", self.pid)
        return code

    def terminate(self, grace_seconds: float) -> int:
        code = self.poll()
        if code is not None:
            return code
        if grace_seconds > 0:  # no grace: SIGKILL alone, as when a node loses power (node_control.py)
            kill_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + max(grace_seconds, 0.0)
        while (left := deadline - time.monotonic()) > 0:
            code = self.poll()
            if code is not None:
                return code
            self._exited.wait(min(left, 0.05))  # the watcher sets it the moment the process is reaped
        kill_group(self.pid, signal.SIGKILL)
        while (code := self.poll()) is None:
            self._exited.wait(0.01)
        return code


class ExitWatcher:
    """One thread that notices every watched process's exit and reaps it there (`LocalProcess.poll`),
    which also runs the process's exit callbacks. Waits on pidfds (epoll), so it costs nothing while
    nothing exits; where pidfds are unavailable (Linux < 5.3), a thread per process blocks in `waitid`
    with WNOWAIT instead (it never reaps anything but through `poll`, so it races with no one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_fd: dict[int, LocalProcess] = {}
        self._epoll: select.epoll | None = None
        self._thread: threading.Thread | None = None

    def watch(self, proc: LocalProcess) -> None:
        try:
            fd = os.pidfd_open(proc.pid)
        except ProcessLookupError:
            proc.poll()  # already reaped
            return
        except (AttributeError, OSError):
            threading.Thread(target=_wait_then_poll, args=(proc,), name=f"exit-{proc.pid}", daemon=True).start()
            return
        with self._lock:
            if self._epoll is None:
                self._epoll = select.epoll()
            self._by_fd[fd] = proc
            self._epoll.register(fd, select.EPOLLIN)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, args=(self._epoll,), name="exits", daemon=True)
                self._thread.start()

    @property
    def watched(self) -> int:
        with self._lock:
            return len(self._by_fd)

    def _loop(self, epoll: select.epoll) -> None:
        while True:
            try:
                events = epoll.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                with self._lock:
                    proc = self._by_fd.pop(fd, None)
                    epoll.unregister(fd)
                os.close(fd)
                if proc is not None:
                    try:
                        proc.poll()
                    except Exception:
                        log.exception("reaping pid %d failed", proc.pid)


def _wait_then_poll(proc: LocalProcess) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    proc.poll()


_WATCHER: ExitWatcher | None = None
_WATCHER_LOCK = threading.Lock()


def exit_watcher() -> ExitWatcher:
    """The process-wide watcher (one thread for every container the agent runs)."""
    global _WATCHER
    with _WATCHER_LOCK:
        if _WATCHER is None:
            _WATCHER = ExitWatcher()
        return _WATCHER


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
