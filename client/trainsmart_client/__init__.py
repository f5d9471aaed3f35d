"""trainsmart_client: report metrics, progress and checkpoints from any training code to the trainsmart
operator, and learn when to stop. Standard library only, Python >= 3.8.

    import trainsmart_client as ts

    for epoch in range(1, epochs + 1):
        ...
        ts.report({"train_loss": loss, "val_accuracy": acc}, epoch=epoch)
        if ts.stop_requested():      # SIGTERM: suspend, early stop, preemption
            save(ts.checkpoint_dir())
            raise SystemExit(13)     # TERMINATED: the operator resumes the job later

Outside a TrainingJob every call is a no-op (logged once at INFO), so the script runs unchanged on a laptop.
`python3 -m trainsmart_client wrap -- COMMAND` reports the metrics a command prints, with no code change.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any, Mapping

from trainsmart_client import checkpoints as _checkpoints
from trainsmart_client.params import read_params as _read_params
from trainsmart_client.session import Session

__all__ = [
    "Session",
    "checkpoint_dir",
    "finish",
    "latest_checkpoint",
    "params",
    "progress",
    "report",
    "report_checkpoint",
    "stop_requested",
]

_lock = threading.Lock()
_session: Session | None = None
_EXIT_FLUSH_TIMEOUT_S = 5.0


def _default() -> Session:
    """The process's session, created on first use; inside a job it also installs the SIGTERM flag."""
    global _session
    with _lock:
        if _session is None:
            _session = Session()
            atexit.register(_session.finish, _EXIT_FLUSH_TIMEOUT_S)
        session = _session
    if session.environment.in_job:
        session.stop_flag.install()  # retried on each use until called from the main thread
    return session


def report(metrics: Mapping[str, Any], epoch: int | None = None, step: int | None = None, final: bool = False) -> None:
    """Send `metrics` (name -> number). With `epoch` (epochs completed, 1-based) it is an epoch report, the
    one the status history, sweeps and early stopping use; without, it updates the latest values. `final`
    marks the run's last metrics. Only global rank 0 sends; other ranks may call it freely."""
    _default().report(metrics, epoch=epoch, step=step, final=final)


def progress(
    epoch: int, total_epochs: int | None = None, step: int | None = None, total_steps: int | None = None
) -> None:
    """Where training is: `epoch` epochs completed of `total_epochs`, `step` optimizer steps of `total_steps`
    (the ETA in status comes from the step pace)."""
    _default().progress(epoch, total_epochs=total_epochs, step=step, total_steps=total_steps)


def report_checkpoint(path: str | Path, epoch: int | None = None) -> None:
    """Tell the operator a checkpoint was saved at `path` after `epoch` completed epochs (default: the
    latest reported epoch); the job's status then names it."""
    _default().report_checkpoint(str(path), epoch=epoch)


def checkpoint_dir() -> Path | None:
    """The job's checkpoint directory (a volume that survives restarts), None outside a job."""
    _default()
    return _checkpoints.checkpoint_dir()


def latest_checkpoint(pattern: str = "*") -> Path | None:
    """The newest checkpoint matching `pattern` in `checkpoint_dir()`, to resume from; None when none."""
    _default()
    return _checkpoints.latest_checkpoint(pattern)


def params() -> dict[str, Any]:
    """This sweep trial's parameters by name (empty outside a sweep)."""
    _default()
    return _read_params()


def stop_requested() -> bool:
    """True once the pod was asked to stop (SIGTERM): save a checkpoint and exit 13 soon. From the first call
    on, SIGTERM only sets this flag; before it, SIGTERM ends the process as usual (nobody would look)."""
    return _default().stop_flag.is_set()


def finish(timeout_s: float = 10.0) -> bool:
    """Deliver queued reports (waits at most `timeout_s`); also done at interpreter exit."""
    return _default().finish(timeout_s)


_default()
