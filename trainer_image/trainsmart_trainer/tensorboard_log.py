"""TensorBoard event files under `<checkpoint volume>/tensorboard/`, one directory (one TensorBoard run)
per job, whatever the number of attempts.

Why these choices:
* on the checkpoint volume, because it is the one place that outlives the pods and that a user can
  already reach (a PVC, or a host directory in the local cluster); no volume, no event files;
* every attempt writes a new event file into the same directory with the epoch as the step, so the
  curves of a restarted job continue where the checkpoint left them. An attempt that resumes after
  epoch k opens its writer with `purge_step=k+1`: TensorBoard then hides what an earlier attempt logged
  for the epochs that are now run again (it got past epoch k but died before the next checkpoint), and
  no step shows two values;
* tags group by split, each keeping the metric's own name (`val/val_loss`, `train/train_accuracy`,
  `test/test_accuracy`, `run/learning_rate`, `run/samples_per_second`), so a search for the name the
  status and reports use finds it;
* hyperparameters as a session-start record in this same directory, not with `SummaryWriter.add_hparams`
  (which writes a separate, nested run per call). No experiment record either: TensorBoard then derives
  the HParams table from every run's hyperparameters and scalar tags, so `--logdir` over several jobs
  (a sweep's trials) compares them all, and the metric columns are the last values of the scalars, the
  final `test/*` ones included.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import FinalResult, FinalStatus
from trainsmart_trainer.settings import RuntimeSettings

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from trainsmart_trainer.hyperparams import HyperparameterValue

log = logging.getLogger(__name__)

DIRECTORY_NAME: Final = "tensorboard"
_GROUPS: Final = (("train_", "train"), ("val_", "val"), ("test_", "test"))
_OTHER_GROUP: Final = "run"


def metric_tag(name: str) -> str:
    """The scalar tag of metric `name`: its split as the group, the name itself after the slash."""
    group = next((group for prefix, group in _GROUPS if name.startswith(prefix)), _OTHER_GROUP)
    return f"{group}/{name}"


def from_settings(
    config: TrainerConfig, settings: RuntimeSettings, hparams: Mapping[str, HyperparameterValue]
) -> TensorBoardLog | None:
    """The writer for this run, or None (turned off, no checkpoint volume, tensorboard not installed)."""
    if not config.tensorboard:
        return None
    if settings.checkpoint_dir is None:
        log.info("no TensorBoard event files: the job has no checkpoint volume to keep them (spec.checkpoint)")
        return None
    if importlib.util.find_spec("tensorboard") is None:  # torch.utils.tensorboard needs it
        log.warning("no TensorBoard event files: the tensorboard package is not installed in this image")
        return None
    return TensorBoardLog(settings.checkpoint_dir / DIRECTORY_NAME, hparams)


class TensorBoardLog:
    """Per-epoch scalars, the run's hyperparameters and its final metrics in one TensorBoard run."""

    name = "TensorBoard"

    def __init__(self, directory: Path, hparams: Mapping[str, HyperparameterValue]) -> None:
        self.directory = directory
        self.hparams = dict(hparams)
        self._writer: SummaryWriter | None = None

    @property
    def writer(self) -> SummaryWriter:
        if self._writer is None:
            raise RuntimeError("the TensorBoard writer is not open")
        return self._writer

    def start(self, epoch: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        self.directory.mkdir(parents=True, exist_ok=True)
        _wait_until_newest(self.directory)
        self._writer = SummaryWriter(log_dir=str(self.directory), purge_step=epoch + 1 if epoch > 0 else None)
        _, session_start, _ = hparams(self.hparams, {})  # type: ignore[no-untyped-call]
        self._add_summary(session_start, epoch)
        self.writer.flush()
        log.info("TensorBoard event files: %s", self.directory)

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        writer = self.writer
        for name, value in metrics.items():
            writer.add_scalar(metric_tag(name), value, epoch)
        writer.flush()  # a user watching the volume sees each epoch as it ends

    def finish(self, final: FinalResult) -> None:
        writer = self.writer
        step = final.epochs_completed
        for name, value in final.metrics.items():
            if name.startswith("test_"):  # the epoch's own metrics are already logged at this step
                writer.add_scalar(metric_tag(name), value, step)
        if final.status != FinalStatus.TERMINATED:  # a stopped run resumes later: it has not ended
            self._add_summary(_session_end(final.status), step)
        writer.flush()

    def _add_summary(self, summary: Any, step: int) -> None:
        """A ready-made Summary into this run's own event file (torch types the file writer as None)."""
        writer: Any = self.writer
        writer.file_writer.add_summary(summary, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _wait_until_newest(directory: Path) -> None:
    """Wait (at most a second) until a new event file's name sorts after every file already there.

    TensorBoard reads a run's files in name order, and a name starts with the creation time in whole
    seconds followed by host, pid and a per-process counter, so two files of one second can sort in the
    wrong order (counter 10 before 9) and the purge of a resumed attempt would then be read first and lost.
    Attempts are separate pods seconds apart in practice; this makes the order hold regardless."""
    newest = 0
    for path in directory.glob("events.out.tfevents.*"):
        parts = path.name.split(".")
        if len(parts) > 3 and parts[3].isdigit():
            newest = max(newest, int(parts[3]))
    while time.time() < newest + 1:
        time.sleep(min(0.05, max(0.0, newest + 1 - time.time())))


def _session_end(status: FinalStatus) -> Any:
    """The HParams plugin's session-end record (torch's helper can only say "success")."""
    from tensorboard.compat.proto.summary_pb2 import Summary  # type: ignore[import-untyped]
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2  # type: ignore[import-untyped]

    succeeded = status in (FinalStatus.SUCCEEDED, FinalStatus.EARLY_STOPPED)
    info = plugin_data_pb2.SessionEndInfo(
        status=api_pb2.STATUS_SUCCESS if succeeded else api_pb2.STATUS_FAILURE, end_time_secs=time.time()
    )
    content = plugin_data_pb2.HParamsPluginData(session_end_info=info)
    summary_metadata = metadata.create_summary_metadata(content)
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=summary_metadata)])
