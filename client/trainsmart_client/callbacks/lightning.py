"""A PyTorch Lightning callback: per-epoch train and validation metrics, progress, graceful stop.

    from trainsmart_client.callbacks.lightning import TrainsmartCallback, resume_checkpoint

    trainer = L.Trainer(max_epochs=10, callbacks=[TrainsmartCallback()], ...)
    trainer.fit(model, data, ckpt_path=resume_checkpoint())

What it reports, with the names the LightningModule logs (`self.log("val_loss", ...)`):
* progress: epochs completed of `max_epochs`, optimizer steps of the estimated total (the status's ETA);
* the latest values of `trainer.callback_metrics` while an epoch runs (read at most once a second: each
  read of a tensor on a GPU waits for it);
* one epoch report per completed epoch (what the status history, sweeps and early stopping read) with
  everything in `callback_metrics` then: the epoch's training aggregates and its validation. Lightning
  calls callbacks' `on_train_epoch_end` *before* the module's own, so metrics logged there would be
  missing: the report goes out when the next epoch starts, or when training ends.

On SIGTERM (suspend, a sweep's early stop, preemption) it sets `trainer.should_stop` after the current
batch, saves `stopped-step=<step>.ckpt` into the job's checkpoint directory (`dirpath`) and ends the
process with exit code 13 (`exit_on_stop`), which the operator resumes from that checkpoint. Lightning's
own SIGTERM handling (it raises SIGTERMException, a SystemExit with code 0, at the end of the epoch) is
kept, with the exit code turned into 13.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

import trainsmart_client
from trainsmart_client.callbacks.reporting import Reporter, exit_terminated, log, numeric_metrics
from trainsmart_client.checkpoints import latest_checkpoint
from trainsmart_client.session import Session
from trainsmart_client.wire import EXIT_TERMINATED

__all__ = ["CHECKPOINT_PATTERN", "TrainsmartCallback", "checkpoint_dirpath", "resume_checkpoint"]

CHECKPOINT_PATTERN = "*.ckpt"
LATEST_VALUES_INTERVAL_S = 1.0


def checkpoint_dirpath(default: str | os.PathLike[str] = "checkpoints") -> str:
    """`ModelCheckpoint(dirpath=...)`: the job's checkpoint directory (it survives restarts, suspension and
    a sweep's pause), or `default` outside a job or without `spec.checkpoint`."""
    directory = trainsmart_client.checkpoint_dir()
    return str(directory if directory is not None else default)


def resume_checkpoint(directory: str | os.PathLike[str] | None = None) -> str | None:
    """The newest `.ckpt` in `directory` (default: the job's checkpoint directory), for
    `Trainer.fit(..., ckpt_path=...)`; None for a fresh start."""
    if directory is None:
        path = trainsmart_client.latest_checkpoint(CHECKPOINT_PATTERN)
    else:
        path = latest_checkpoint(CHECKPOINT_PATTERN, directory=Path(directory))
    return str(path) if path is not None else None


class TrainsmartCallback(pl.Callback):
    """Reports a Lightning Trainer's run to the operator and honours `stop_requested()`.

    `session`: report through this session instead of the process's own. `dirpath`: where the checkpoint
    on stop goes (default: the job's checkpoint directory; none there and none given: nothing is saved).
    `exit_on_stop`: end the process with 13 once a stopped run is saved (False: `fit()` returns, and the
    script must exit 13 itself).
    """

    def __init__(
        self,
        session: Session | None = None,
        *,
        dirpath: str | os.PathLike[str] | None = None,
        exit_on_stop: bool = True,
    ) -> None:
        self._reporter = Reporter(session)
        self._dirpath = Path(dirpath) if dirpath is not None else None
        self._exit_on_stop = exit_on_stop
        self._total_epochs: int | None = None
        self._total_steps: int | None = None
        self._pending_epoch: int | None = None
        self._next_values_at = 0.0
        self._latest: dict[str, float] = {}
        self._mid_epoch = False
        self._save_tried = False
        self.stopped = False
        """True once training was stopped on request."""
        self.saved: Path | None = None
        """The checkpoint saved on stop, if any."""

    # ---- reporting -------------------------------------------------------------------------------------

    def _progress(self, trainer: pl.Trainer) -> None:
        self._reporter.progress(
            trainer.current_epoch,
            total_epochs=self._total_epochs,
            step=trainer.global_step,
            total_steps=self._total_steps,
        )

    def _flush_epoch(self, trainer: pl.Trainer) -> None:
        if self._pending_epoch is None:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        self._reporter.report(numeric_metrics(trainer.callback_metrics), epoch=epoch, step=trainer.global_step)

    def _save(self, trainer: pl.Trainer) -> None:
        """The checkpoint of a stopped run, once. Saved at the batch that saw the stop, before the loops wind
        down: Lightning counts an epoch cut short by `should_stop` as completed, so a checkpoint taken
        later would resume at the next epoch and skip the rest of this one; this one resumes mid-epoch."""
        if self._save_tried:
            return
        self._save_tried = True
        directory = self._dirpath or trainsmart_client.checkpoint_dir()
        if directory is None:
            log.warning("stopped without a checkpoint directory: nothing saved (set spec.checkpoint)")
            return
        self.saved = directory / f"stopped-step={trainer.global_step}.ckpt"
        trainer.save_checkpoint(self.saved)

    # ---- Lightning's hooks -----------------------------------------------------------------------------

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        max_epochs = trainer.max_epochs
        self._total_epochs = max_epochs if max_epochs is not None and max_epochs > 0 else None
        steps = trainer.estimated_stepping_batches
        self._total_steps = int(steps) if steps != float("inf") and steps > 0 else None
        self._reporter.stop_requested()  # from now on SIGTERM only sets the flag: Lightning stops gracefully
        self._progress(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_epoch(trainer)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self._progress(trainer)
        now = time.monotonic()
        if now >= self._next_values_at:
            self._next_values_at = now + LATEST_VALUES_INTERVAL_S
            self._latest = numeric_metrics(trainer.callback_metrics)
        if self._latest:
            # A progress report replaces the one not yet sent: carry the latest values so none is lost.
            self._reporter.report(self._latest, step=trainer.global_step)
        if not self.stopped and self._reporter.stop_requested():
            self.stopped = True
            self._mid_epoch = batch_idx + 1 < trainer.num_training_batches
            trainer.should_stop = True
            self._save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not (self.stopped and self._mid_epoch) and not trainer.sanity_checking:
            self._pending_epoch = trainer.current_epoch + 1

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._flush_epoch(trainer)
        if self.stopped:
            self._reporter.finish()
            if self._exit_on_stop:
                raise exit_terminated()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        """Lightning's own SIGTERM path (SIGTERMException, code 0) and our exit on stop both come here."""
        if not isinstance(exception, SystemExit) or not (self.stopped or self._reporter.stop_requested()):
            return
        self.stopped = True
        self._flush_epoch(trainer)
        self._save(trainer)  # the signal came outside a training batch (validation): save here
        self._reporter.finish()
        if self._exit_on_stop:
            exception.code = EXIT_TERMINATED
