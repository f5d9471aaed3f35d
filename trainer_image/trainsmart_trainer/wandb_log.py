"""Weights & Biases from the packaged trainer, when the pod asks for it with the usual WANDB_* variables.

Active only when `wandb` is importable and the pod sets WANDB_API_KEY (from a Secret) or WANDB_MODE
(`offline`, `online`; `disabled` turns it off). Everything else is wandb's own reading of the
environment: WANDB_PROJECT, WANDB_ENTITY, WANDB_BASE_URL, and the run identity the operator adds to a
job whose env has a WANDB_ variable (WANDB_RUN_ID from the job's uid, WANDB_RESUME=allow, WANDB_NAME,
and WANDB_RUN_GROUP for a sweep's trial: `trainsmart.builders.env`), which is what makes every attempt of
one job log into the same W&B run.

What is logged: `config` = the run's hyperparameters, one `log(metrics, step=epoch)` per epoch, and the
final metrics, objective and status in the run's summary.

W&B never holds training up: `init` is bounded by `INIT_TIMEOUT_S` (a bad key or an unreachable server
is a warning, then training goes on without W&B), and the final `finish` (which uploads what is left)
by `FINISH_TIMEOUT_S`. Files go where wandb is told (WANDB_DIR), else onto the checkpoint volume (an
offline run is kept for `wandb sync`), else the temporary directory: the trainer's root filesystem is
read-only in a pod.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trainsmart_trainer.contract import FinalResult
from trainsmart_trainer.settings import RuntimeSettings

if TYPE_CHECKING:
    from trainsmart_trainer.hyperparams import HyperparameterValue

log = logging.getLogger(__name__)

API_KEY: Final = "WANDB_API_KEY"
MODE: Final = "WANDB_MODE"
DIR: Final = "WANDB_DIR"
CONSOLE: Final = "WANDB_CONSOLE"
MODE_DISABLED: Final = "disabled"
INIT_TIMEOUT_S: Final = 60.0
FINISH_TIMEOUT_S: Final = 60.0
_STATE_DIRS: Final = ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR")
"""Where wandb keeps settings and caches: under $HOME by default, which a read-only root filesystem lacks."""


def requested(env: Mapping[str, str]) -> bool:
    """Whether the pod asks for W&B: an API key or a mode other than `disabled`."""
    mode = env.get(MODE, "").strip().lower()
    return mode != MODE_DISABLED and bool(env.get(API_KEY) or mode)


def from_env(
    env: Mapping[str, str], settings: RuntimeSettings, hparams: Mapping[str, HyperparameterValue]
) -> WandbLog | None:
    """The W&B tracker, or None when not asked for or when wandb is not installed (said once, at INFO)."""
    if not requested(env):
        return None
    try:
        import wandb  # noqa: F401
    except ImportError:
        log.info("WANDB_* is set but the wandb package is not installed in this image: not logging to W&B")
        return None
    return WandbLog(env, settings, hparams)


class WandbLog:
    """One W&B run per job: started per attempt (resuming the run when the operator gave it an id)."""

    name = "Weights & Biases"

    def __init__(
        self, env: Mapping[str, str], settings: RuntimeSettings, hparams: Mapping[str, HyperparameterValue]
    ) -> None:
        self.env = env
        self.settings = settings
        self.hparams = dict(hparams)
        self.run: Any = None

    def _directory(self) -> str | None:
        """None: wandb's own choice (WANDB_DIR); else the checkpoint volume or the temporary directory."""
        if self.env.get(DIR):
            return None
        return str(self.settings.checkpoint_dir or tempfile.gettempdir())

    def start(self, epoch: int) -> None:
        import wandb

        if not os.access(Path.home(), os.W_OK):
            for name in _STATE_DIRS:
                os.environ.setdefault(name, str(Path(tempfile.gettempdir()) / name.lower()))
        options: dict[str, Any] = {"init_timeout": INIT_TIMEOUT_S}
        if not self.env.get(CONSOLE):
            options["console"] = "off"  # the pod log stays the trainer's own; WANDB_CONSOLE=wrap uploads it
        directory = self._directory()
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(dir=directory, config=self.hparams, settings=wandb.Settings(**options))
        resumed = f", resuming after epoch {epoch}" if epoch else ""
        log.info("Weights & Biases run %s (%s mode)%s", self.run.id, self.run.settings.mode, resumed)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=epoch)

    def finish(self, final: FinalResult) -> None:
        summary: dict[str, Any] = {**final.metrics, "status": final.status.value}
        if final.objective_metric and final.best_value is not None:
            summary[f"best_{final.objective_metric}"] = final.best_value
            summary["best_epoch"] = final.best_epoch
        self.run.summary.update(summary)
        run, self.run = self.run, None
        _bounded(lambda: run.finish(exit_code=final.exit_code), FINISH_TIMEOUT_S, "finishing the W&B run")

    def close(self) -> None:
        """A run that never got its final result (the loop failed before): end it as failed."""
        if self.run is not None:
            run, self.run = self.run, None
            _bounded(lambda: run.finish(exit_code=1), FINISH_TIMEOUT_S, "finishing the W&B run")


def _bounded(call: Any, timeout_s: float, what: str) -> None:
    """Run `call` in a daemon thread and wait at most `timeout_s`: a hung upload must not keep the pod."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            call()
        except Exception as error:
            errors.append(error)

    thread = threading.Thread(target=target, name="trainsmart-wandb", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        log.warning("%s took longer than %.0f s; going on without waiting", what, timeout_s)
    elif errors:
        raise errors[0]
