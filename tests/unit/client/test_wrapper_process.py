"""`python -m trainsmart_client wrap -- COMMAND` as a process around real child processes.

Pins:
- the wrapper exits with the child's exit code (0, 1, 13) and with 128+N when a signal N killed the child;
  a command that does not exist is 127; no command, or a regex without named groups, is a usage error (2);
- SIGTERM and SIGINT sent to the wrapper reach the child: a child that traps SIGTERM, writes a file and
  exits 13 does exactly that, and the wrapper exits 13;
- stdout comes through byte for byte (non-UTF-8 bytes, a 1 MB line, carriage-return progress bars, a last
  line without a newline) and stderr is the child's own, interleaved as written;
- output stays live: a line the child printed is readable from the wrapper while the child still runs
  (nothing buffers it, a Python child included).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

WRAP = [sys.executable, "-m", "trainsmart_client", "wrap"]


def run_wrapped(
    command: list[str], env: dict[str, str], *options: str, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*WRAP, *options, "--", *command], env=env, capture_output=True, timeout=timeout)


def child_stderr(stderr: bytes) -> bytes:
    """stderr without the wrapper's own log lines."""
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(b"trainsmart-client:"))


@pytest.mark.parametrize("code", [0, 1, 13])
def test_the_wrapper_exits_with_the_childs_exit_code(clean_env: dict[str, str], code: int) -> None:
    result = run_wrapped([sys.executable, "-c", f"import sys; print('bye'); sys.exit({code})"], clean_env)
    assert result.returncode == code
    assert result.stdout == b"bye\n"


@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGKILL, 137), (signal.SIGTERM, 143), (signal.SIGSEGV, 139)])
def test_a_child_killed_by_a_signal_gives_128_plus_its_number(
    clean_env: dict[str, str], signum: int, expected: int
) -> None:
    result = run_wrapped([sys.executable, "-c", f"import os; os.kill(os.getpid(), {int(signum)})"], clean_env)
    assert result.returncode == expected


def test_a_command_that_does_not_exist_is_127(clean_env: dict[str, str]) -> None:
    result = run_wrapped(["/nonexistent/train.sh"], clean_env)
    assert result.returncode == 127
    assert b"/nonexistent/train.sh" in result.stderr


@pytest.mark.parametrize(
    "options", [(), ("--format", "regex", "--pattern", r"loss=([0-9.]+)")], ids=["no command", "unnamed groups"]
)
def test_usage_errors_are_2(clean_env: dict[str, str], options: tuple[str, ...]) -> None:
    command = [] if not options else ["true"]
    result = subprocess.run([*WRAP, *options, "--", *command], env=clean_env, capture_output=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr


TRAPPING_CHILD = """
import signal, sys, time
marker = sys.argv[1]
def stop(signum, frame):
    with open(marker, "w") as out:
        out.write(signal.Signals(signum).name)
    sys.exit(13)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print("ready", flush=True)
time.sleep(60)
sys.exit(0)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signals_are_forwarded_to_the_child(clean_env: dict[str, str], tmp_path: Path, signum: int) -> None:
    marker = tmp_path / "stopped"
    with subprocess.Popen(
        [*WRAP, "--", sys.executable, "-c", TRAPPING_CHILD, str(marker)],
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as wrapper:
        try:
            assert wrapper.stdout is not None
            assert wrapper.stdout.readline() == b"ready\n"
            wrapper.send_signal(signum)
            assert wrapper.wait(timeout=30) == 13
        finally:
            wrapper.kill()
    assert marker.read_text() == signal.Signals(signum).name


MESSY_CHILD = r"""
import os, sys
out, err = sys.stdout.buffer, sys.stderr.buffer
out.write(b"plain line\n"); out.flush()
err.write(b"warning: on stderr\n"); err.flush()
out.write(b"bad bytes \xff\xfe\xc3( end\n")
out.write(b"epoch 1: 10%|#         | loss=0.9\repoch 1: 50%|#####     | loss=0.5\r")
out.write(b'{"epoch": 1, "payload": "' + b"x" * 1000000 + b'", "val_loss": 0.5}\n'); out.flush()
err.write(b"\x1b[31mred error\x1b[0m\n"); err.flush()
out.write(b"no newline at the end")
"""


def test_output_passes_through_byte_for_byte(clean_env: dict[str, str]) -> None:
    direct = subprocess.run([sys.executable, "-c", MESSY_CHILD], env=clean_env, capture_output=True, timeout=60)
    wrapped = run_wrapped([sys.executable, "-c", MESSY_CHILD], clean_env)
    assert wrapped.returncode == direct.returncode == 0
    assert len(direct.stdout) > 1_000_000
    assert wrapped.stdout == direct.stdout
    assert child_stderr(wrapped.stderr) == direct.stderr


def test_output_stays_live_while_the_child_runs(clean_env: dict[str, str], tmp_path: Path) -> None:
    gate = tmp_path / "go"
    child = f"import os, time\nprint('epoch=1 loss=0.5')\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)\n"
    with subprocess.Popen(
        [*WRAP, "--format", "kv", "--", sys.executable, "-c", child],
        env=clean_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as wrapper:
        try:
            assert wrapper.stdout is not None
            started = time.monotonic()
            assert wrapper.stdout.readline() == b"epoch=1 loss=0.5\n"
            assert wrapper.poll() is None  # read while the child still runs: not held back until exit
            assert time.monotonic() - started < 20
            gate.touch()
            assert wrapper.wait(timeout=30) == 0
        finally:
            wrapper.kill()


def test_stdout_closed_by_the_reader_does_not_stop_the_child(clean_env: dict[str, str], tmp_path: Path) -> None:
    done = tmp_path / "done"
    child = f"import sys\nfor i in range(20000): print('line', i)\nopen({str(done)!r}, 'w').close()\n"
    read_end, write_end = os.pipe()
    os.close(read_end)  # whatever reads the container's log went away
    try:
        result = subprocess.run(
            [*WRAP, "--", sys.executable, "-c", child], env=clean_env, stdout=write_end, stderr=subprocess.DEVNULL
        )
    finally:
        os.close(write_end)
    assert result.returncode == 0
    assert done.exists()
