"""trainsmart_client: report metrics, progress and checkpoints from any training code to the trainsmart
operator, and learn when to stop. Standard library only, Python >= 3.8.

    import trainsmart_client as ts

    for epoch in range(1, epochs + 1):
        ...
        ts.report({"train_loss": loss, "val_accuracy": acc}, epoch=epoch)
        if ts.stop_requested():      # SIGTERM: suspend, early stop, preemption
            save(ts.checkpoint_dir())
            raise SystemExit(13)     # TERMINATED: the operator resumes the job later
        ts.save_best(acc, lambda path: torch.save(model.state_dict(), path), goal="maximize")

Outside a TrainingJob every call is a no-op (logged once at INFO), so the script runs unchanged on a laptop.
`python3 -m trainsmart_client wrap -- COMMAND` reports the metrics a command prints, with no code change.
"""

from __future__ import annotations

import atexit
import os
import threading
from pathlib import Path
from typing import Any, Callable, Mapping

from trainsmart_client import checkpoints as _checkpoints
from trainsmart_client import job_env as _job_env
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
    "save_best",
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


def save_best(
    value: float,
    save: Callable[[Path], Any],
    *,
    metric: str | None = None,
    goal: str | None = None,
    epoch: int | None = None,
    name: str = "checkpoint",
) -> Path | None:
    """Keep the best checkpoint by the objective: call it after each evaluation with the objective's `value`;
    when that beats the best so far (read from the checkpoint volume, so restarts keep it), `save(path)` is
    called to write your checkpoint (a file or a directory) at `path`, which then becomes
    `<checkpoint_dir>/best/<name>`, and the operator is told (status.checkpoint.best, a sweep's bestTrial).
    Returns that path, or None when the value is no improvement or there is no checkpoint directory.

    `metric`/`goal` (`maximize`/`minimize`) default to a sweep trial's objective from the environment, else
    val_loss; a goal nobody gave is guessed from the name (loss, error, rmse, mae: lower is better)."""
    session = _default()
    directory = _checkpoints.checkpoint_dir()
    if directory is None:
        return None
    env = os.environ
    chosen = metric or env.get(_job_env.OBJECTIVE_METRIC) or session.objective_metric or "val_loss"
    direction = goal or (env.get(_job_env.OBJECTIVE_GOAL) if chosen == env.get(_job_env.OBJECTIVE_METRIC) else None)
    maximize = direction in ("maximize", "max") if direction else not _checkpoints.lower_is_better(chosen)
    saved_after = session.epoch if epoch is None else int(epoch)
    record = _checkpoints.save_best_in(
        directory, value, save, metric=chosen, maximize=maximize, epoch=saved_after, name=name
    )
    if record is None:
        return None
    session.report_best_checkpoint(record["path"], record["epoch"], record["metric"], record["value"])
    return Path(record["path"])


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
