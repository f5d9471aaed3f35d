"""A Hugging Face `transformers.Trainer` callback: progress, train and eval metrics, graceful stop.

    from trainsmart_client.callbacks.huggingface import TrainsmartCallback, output_dir, resume_from_checkpoint

    args = TrainingArguments(output_dir=output_dir("out"), eval_strategy="epoch", save_strategy="epoch", ...)
    trainer = Trainer(model, args, ..., callbacks=[TrainsmartCallback()])
    trainer.train(resume_from_checkpoint=resume_from_checkpoint())

What it reports, in the Trainer's own words (metric names exactly as the Trainer logs them, so `eval_loss`,
`eval_accuracy`, the train `loss`, `learning_rate`, and the run's `train_loss` at the end):
* progress: epochs completed of `num_train_epochs`, optimizer steps of `max_steps` (the status's ETA);
* every log as the latest values;
* one epoch report per completed epoch (what the status history, sweeps and early stopping read): the
  latest train values plus that epoch's evaluation. The Trainer evaluates *after* `on_epoch_end`, so the
  report waits for the evaluation, or for the next epoch or the end when none comes.

On SIGTERM (suspend, a sweep's early stop, preemption) it ends training after the current optimizer step:
`should_training_stop`, and `should_save` so the Trainer writes `checkpoint-<step>` into `output_dir`
first; the epoch-end evaluation is skipped (the grace period is short). When training has ended that way
the process exits with 13 (`exit_on_stop`), which the operator resumes from that checkpoint.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

import trainsmart_client
from trainsmart_client.callbacks.reporting import Reporter, exit_terminated, is_whole, numeric_metrics
from trainsmart_client.session import Session

__all__ = ["TrainsmartCallback", "output_dir", "resume_from_checkpoint"]

EVAL_PREFIX = "eval_"
_NOT_METRICS = frozenset({"epoch", "step"})


def output_dir(default: str | os.PathLike[str] = "outputs") -> str:
    """`TrainingArguments.output_dir`: the job's checkpoint directory (it survives restarts, suspension and
    a sweep's pause), or `default` outside a job or without `spec.checkpoint`."""
    directory = trainsmart_client.checkpoint_dir()
    return str(directory if directory is not None else default)


def resume_from_checkpoint(directory: str | os.PathLike[str] | None = None) -> str | None:
    """The `checkpoint-<step>` to hand `Trainer.train(resume_from_checkpoint=...)`: the highest step in
    `directory` (default: the job's checkpoint directory), as the Trainer itself picks it; None for a
    fresh start (no directory, or nothing saved yet)."""
    folder = Path(directory) if directory is not None else trainsmart_client.checkpoint_dir()
    if folder is None or not folder.is_dir():
        return None
    last: str | None = get_last_checkpoint(str(folder))  # type: ignore[no-untyped-call]
    return last


class TrainsmartCallback(TrainerCallback):
    """Reports a Trainer's run to the operator and honours `stop_requested()`.

    `session`: report through this session instead of the process's own. `exit_on_stop`: raise
    SystemExit(13) at the end of a run that was stopped on request (False: `train()` returns and the
    script must exit 13 itself).
    """

    def __init__(self, session: Session | None = None, *, exit_on_stop: bool = True) -> None:
        self._reporter = Reporter(session)
        self._exit_on_stop = exit_on_stop
        self._total_epochs: int | None = None
        self._total_steps: int | None = None
        self._train: dict[str, float] = {}
        self._eval: dict[str, float] = {}
        self._pending_epoch: int | None = None
        self.stopped = False
        """True once this callback ended training because a stop was requested."""

    # ---- reporting -------------------------------------------------------------------------------------

    def _progress(self, state: TrainerState) -> None:
        self._reporter.progress(
            math.floor(state.epoch or 0.0),
            total_epochs=self._total_epochs,
            step=state.global_step,
            total_steps=self._total_steps,
        )

    def _flush_epoch(self, state: TrainerState) -> None:
        """Send the completed epoch's report: the latest train values and the evaluations since it began."""
        if self._pending_epoch is None:
            return
        epoch, self._pending_epoch = self._pending_epoch, None
        self._reporter.report({**self._train, **self._eval}, epoch=epoch, step=state.global_step)
        self._eval = {}

    # ---- the Trainer's events --------------------------------------------------------------------------

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._total_epochs = max(math.ceil(state.num_train_epochs), 1) if state.num_train_epochs else None
        self._total_steps = state.max_steps if state.max_steps and state.max_steps > 0 else None
        self._progress(state)

    def on_epoch_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._flush_epoch(state)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self._progress(state)
        if self._train:
            # A progress report replaces the one not yet sent: carry the latest values so none is lost.
            self._reporter.report(self._train, step=state.global_step)
        if not self.stopped and self._reporter.stop_requested():
            self.stopped = True
            control.should_training_stop = True
            control.should_save = True

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        epoch = state.epoch or 0.0
        if is_whole(epoch) and epoch >= 1:
            self._pending_epoch = round(epoch)
        if self.stopped:
            # The checkpoint was saved at the stopping step; evaluating or saving again only eats the
            # grace period.
            control.should_evaluate = False
            control.should_save = False

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        values = numeric_metrics(logs or {}, skip=_NOT_METRICS)
        if not values:
            return
        self._train.update({name: value for name, value in values.items() if not name.startswith(EVAL_PREFIX)})
        self._reporter.report(values, step=state.global_step)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._eval.update(numeric_metrics(metrics or {}, skip=_NOT_METRICS))
        self._flush_epoch(state)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._flush_epoch(state)
        if self._train:
            self._reporter.report(self._train, step=state.global_step)  # the run's train_loss, runtime, ...
        if self.stopped:
            self._reporter.finish()
            if self._exit_on_stop:
                raise exit_terminated()
