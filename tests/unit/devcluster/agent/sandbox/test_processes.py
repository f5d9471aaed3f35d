"""Container processes as the agent sees them (no root needed).

Pins: exit codes (normal, and 128 + N for signal N); terminate() is SIGTERM, then SIGKILL after the grace,
and idempotent; the whole process group goes, also when the leader exits on its own (a container's
children do not outlive it); recorded (pid, start time) pairs only kill the same process; an exited process
is reaped and its `notify_exit` callbacks run without anyone polling it (no zombie waits for a busy pod
worker), and a callback registered after the exit runs at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from trainsmart.devcluster.agent.sandbox.processes import LocalProcess, exit_code_of, kill_recorded, start_time


def spawn(code: str) -> LocalProcess:
    popen = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdin=subprocess.DEVNULL)
    return LocalProcess(popen)


def wait(proc: LocalProcess, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (code := proc.poll()) is None:
        assert time.monotonic() < deadline, "process did not exit"
        time.sleep(0.01)
    return code


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not state[state.rfind(")") + 2 :].startswith("Z")


def test_exit_codes() -> None:
    assert wait(spawn("raise SystemExit(3)")) == 3
    assert wait(spawn("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")) == 137
    assert exit_code_of(-15) == 143 and exit_code_of(0) == 0


def test_terminate_is_sigterm_then_sigkill() -> None:
    polite = spawn("import time; time.sleep(60)")
    assert polite.poll() is None
    assert polite.terminate(5.0) == 143
    assert polite.terminate(5.0) == 143  # idempotent
    stubborn = spawn(
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    )
    time.sleep(0.3)  # let it install the handler
    started = time.monotonic()
    assert stubborn.terminate(0.3) == 137
    assert time.monotonic() - started < 5


def test_children_die_with_the_leader(tmp_path: Path) -> None:
    pidfile = tmp_path / "child"
    leader = spawn(
        "import subprocess, sys, time\n"
        f"c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(c.pid))\n"
        "time.sleep(0.2)\n"
    )
    assert wait(leader) == 0
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(child)


def test_recorded_processes_are_killed_only_if_still_the_same() -> None:
    proc = spawn("import time; time.sleep(60)")
    started = start_time(proc.pid)
    assert started is not None
    kill_recorded([(proc.pid, started + 1)])  # a different process with the same pid: left alone
    time.sleep(0.1)
    assert proc.poll() is None
    kill_recorded([(proc.pid, started)])
    assert wait(proc) == 137
    assert start_time(os.getpid()) is not None


def test_exit_is_reaped_and_notified_without_polling() -> None:
    notified = threading.Event()
    proc = spawn("import time; time.sleep(0.2)")
    proc.notify_exit(notified.set)
    assert notified.wait(10), "no exit notification"
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)  # already reaped: no zombie left behind
    assert proc.poll() == 0
    late = threading.Event()
    proc.notify_exit(late.set)
    assert late.is_set()
