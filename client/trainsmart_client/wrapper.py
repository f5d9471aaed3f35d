"""Run a training command unchanged and report the metrics it prints or writes to TensorBoard.

The wrapper stands between the container runtime and the user's command, so it must be invisible:

* output: the child's stdout goes through a pipe and is written to our stdout as each read returns, byte
  for byte (no decoding, no line buffering), so logs stay live; stderr is the child's own (inherited), so
  it is not touched at all. Metric lines are parsed from a copy, after the bytes were passed on;
* signals: SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are forwarded to the child (the process
  Kubernetes signals is the wrapper, PID 1 of the container). SIGINT is not forwarded when we are the
  terminal's foreground process group: the terminal has already sent Ctrl-C to the child too;
* buffering: a Python child gets PYTHONUNBUFFERED=1 (unless set), so its metric lines arrive when printed;
* exit code: the child's, or 128+N when a signal N killed it (what a shell reports), 127/126 when the
  command cannot be found/executed; then the run's final report (status from the exit code) is sent;
* termination message: on rank 0, the same final result is written to the container's termination log,
  so the job still ends with its final metrics when no report reached the operator. Not when the command
  failed: the file then stays empty and the pod's FallbackToLogsOnError policy puts the log tail (the
  traceback) there, which says more than "exited with status 1" could.

Reporting must never break the run: a parser or sender failure is logged, and the child and its output
carry on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Sequence

from trainsmart_client import wire
from trainsmart_client.event_files import EventDirectoryWatcher, Scalar
from trainsmart_client.line_parsers import LineParser, LineSplitter, ParsedLine, decode
from trainsmart_client.session import Session
from trainsmart_client.termination_log import write_termination_message

log = logging.getLogger("trainsmart_client.wrap")

FORWARDED_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
)
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126
READ_SIZE = 64 * 1024
DRAIN_AFTER_EXIT_S = 2.0
"""After the child exits, how long output may still come from processes it left behind (that inherited
the pipe) before the wrapper stops reading."""
DEFAULT_TENSORBOARD_POLL_S = 5.0


def exit_status(returncode: int) -> int:
    """A child's return code as the shell's exit status: -N (killed by signal N) becomes 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def child_environment() -> dict[str, str]:
    """Ours, with Python's output unbuffered unless the user chose otherwise: through a pipe a Python child
    would otherwise hold its lines back in 8 KiB blocks, and epoch metrics would arrive late (or at exit),
    too late for a sweep's early stopping."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def apply_line(session: Session, parsed: ParsedLine) -> None:
    """One parsed line into the session: an epoch report when it names a whole epoch, else progress."""
    if parsed.total_epochs is not None:
        session.set_total_epochs(parsed.total_epochs)
    if parsed.epoch is not None:
        session.report(parsed.metrics, epoch=parsed.epoch, step=parsed.step)
        return
    if parsed.epoch_fraction is not None or parsed.total_steps is not None:
        epoch = int(parsed.epoch_fraction) if parsed.epoch_fraction is not None else session.epoch
        session.progress(epoch, step=parsed.step, total_steps=parsed.total_steps)
    if parsed.metrics:
        session.report(parsed.metrics, step=parsed.step)


def apply_scalars(session: Session, scalars: Sequence[Scalar], epoch_key: str) -> None:
    """TensorBoard scalars, one report per step: an epoch report when the step has a scalar tagged with the
    epoch key (or every step, with `--epoch-key step`: the script logs per epoch), else progress."""
    by_step: dict[int, dict[str, float]] = {}
    for scalar in scalars:
        by_step.setdefault(scalar.step, {})[scalar.tag] = scalar.value
    for step in sorted(by_step):
        values = by_step[step]
        epoch_value = step if epoch_key == "step" else values.pop(epoch_key, None)
        if epoch_value is not None and epoch_value >= 0 and epoch_value == int(epoch_value):
            session.report(values, epoch=int(epoch_value), step=max(step, 0))
        elif values:
            session.report(values, step=max(step, 0))


class _TensorBoardFollower(threading.Thread):
    """Polls the event directory and reports each step once its values are complete: a step's scalars are
    held back until a later step appears or a poll finds nothing new (writers flush a step in pieces)."""

    def __init__(self, session: Session, directory: Path, epoch_key: str, interval_s: float) -> None:
        super().__init__(name="trainsmart-client-tensorboard", daemon=True)
        self._session = session
        self._watcher = EventDirectoryWatcher(directory)
        self._epoch_key = epoch_key
        self._interval = interval_s
        self._held: list[Scalar] = []
        self.stopped = threading.Event()

    def poll_once(self, final: bool = False) -> None:
        fresh = self._watcher.poll()
        scalars = self._held + fresh
        if not fresh or final:
            ready, self._held = scalars, []
        else:
            newest = max(scalar.step for scalar in scalars)
            ready = [scalar for scalar in scalars if scalar.step < newest]
            self._held = [scalar for scalar in scalars if scalar.step >= newest]
        if ready:
            apply_scalars(self._session, ready, self._epoch_key)

    def run(self) -> None:
        while not self.stopped.wait(self._interval):
            try:
                self.poll_once()
            except Exception:  # reporting must never take the run down
                log.exception("reading TensorBoard events from %s failed", self._watcher.directory)

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=self._interval + 5)
        try:
            self.poll_once(final=True)
        except Exception:
            log.exception("reading TensorBoard events from %s failed", self._watcher.directory)


def _write_all(fd: int, data: bytes) -> bool:
    """Write `data` to `fd` completely; False once the reader went away (output is then discarded)."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError:
            return False
        except OSError as error:
            log.debug("writing output failed: %s", error)
            return False
        view = view[written:]
    return True


def _terminal_has_foreground() -> bool:
    """Whether this process group owns the controlling terminal (then Ctrl-C reached the child already)."""
    for stream in (sys.stdin, sys.stderr, sys.stdout):
        try:
            fd = stream.fileno()
            if os.isatty(fd):
                return os.tcgetpgrp(fd) == os.getpgrp()
        except (AttributeError, OSError, ValueError):
            continue
    return False


class Wrapper:
    """Runs `command` under `session`, parsing its stdout with `parser` (None: pass through only)."""

    def __init__(
        self,
        command: Sequence[str],
        session: Session,
        parser: LineParser | None,
        *,
        tensorboard_dir: Path | None = None,
        epoch_key: str = "epoch",
        tensorboard_poll_s: float = DEFAULT_TENSORBOARD_POLL_S,
        stdout_fd: int = 1,
        finish_timeout_s: float = 10.0,
    ) -> None:
        self.command = list(command)
        self.session = session
        self.parser = parser
        self.tensorboard_dir = tensorboard_dir
        self.epoch_key = epoch_key
        self.tensorboard_poll_s = tensorboard_poll_s
        self.stdout_fd = stdout_fd
        self.finish_timeout_s = finish_timeout_s
        self._child: subprocess.Popen[bytes] | None = None
        self._parse_failures = 0

    def _forward(self, signum: int, _frame: FrameType | None) -> None:
        child = self._child
        if child is None or child.poll() is not None:
            return
        if signum == signal.SIGINT and _terminal_has_foreground():
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    def _parse(self, lines: list[bytes]) -> None:
        parser = self.parser
        if parser is None:
            return
        for raw in lines:
            if not raw:
                continue
            try:
                parsed = parser(decode(raw))
                if parsed is not None:
                    apply_line(self.session, parsed)
            except Exception:  # a parser bug must not cost the user their training output
                self._parse_failures += 1
                if self._parse_failures == 1:
                    log.exception("parsing an output line failed (further failures are not logged)")

    def run(self) -> int:
        """Run the command to its end; returns the wrapper's exit status (also reported as the final one)."""
        previous = {signum: signal.signal(signum, self._forward) for signum in FORWARDED_SIGNALS}
        follower = None
        try:
            try:
                self._child = subprocess.Popen(self.command, stdout=subprocess.PIPE, bufsize=0, env=child_environment())
            except FileNotFoundError as error:
                log.error("cannot run %s: %s", self.command[0], error)
                status, reason = EXIT_NOT_FOUND, f"command not found: {self.command[0]}"
            except PermissionError as error:
                log.error("cannot run %s: %s", self.command[0], error)
                status, reason = EXIT_NOT_EXECUTABLE, f"command not executable: {self.command[0]}"
            else:
                if self.tensorboard_dir is not None:
                    follower = _TensorBoardFollower(
                        self.session, self.tensorboard_dir, self.epoch_key, self.tensorboard_poll_s
                    )
                    follower.start()
                self._pump(self._child)
                status = exit_status(self._child.wait())
                reason = "" if status == 0 else f"the command exited with status {status}"
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if follower is not None:
            follower.stop()
        self._conclude(status, reason)
        return status

    def _conclude(self, status: int, reason: str) -> None:
        """Final report, termination message, then the bounded flush; none of it may change the exit status.
        The message is written before the flush, which may wait on an endpoint that never answers."""
        try:
            final = self.session.report_exit(status, reason)
            if self.session.environment.rank == 0 and final.get("status") != wire.FAILED:
                write_termination_message(final)
            self.session.finish(self.finish_timeout_s)
        except Exception:
            log.exception("reporting the end of the run failed")

    def _pump(self, child: subprocess.Popen[bytes]) -> None:
        """Copy the child's stdout to ours until it closes, or a little after the child exited."""
        assert child.stdout is not None
        fd = child.stdout.fileno()
        splitter = LineSplitter()
        output_open = True
        exited_at: float | None = None
        while True:
            timeout = 0.5 if exited_at is None else max(0.0, exited_at + DRAIN_AFTER_EXIT_S - time.monotonic())
            readable, _, _ = select.select([fd], [], [], timeout)
            if readable:
                chunk = os.read(fd, READ_SIZE)
                if not chunk:
                    break
                if output_open:
                    output_open = _write_all(self.stdout_fd, chunk)
                self._parse(splitter.feed(chunk))
            elif exited_at is not None:
                break
            if exited_at is None and child.poll() is not None:
                exited_at = time.monotonic()
        self._parse(splitter.flush())
        child.stdout.close()
