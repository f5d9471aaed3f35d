"""Checkpoints that survive a crash at any instant, and resuming from the newest one that is intact.

A checkpoint is written to a temporary file in the same directory, fsync'ed, renamed over its final name
(atomic on POSIX) and the directory fsync'ed, so a reader sees either the old set of files or the new one,
never half a file. Files are named `checkpoint-<epochs done>-<steps into the next epoch>.pt`, which orders
them without reading them. On resume the newest file that loads and has every expected key wins; a
corrupt one (a disk error, a copy cut short by hand) is skipped with a warning, and older ones are tried.

The best checkpoint by the objective lives apart, in `best/checkpoint.pt` (`BEST_CHECKPOINT_DIR`): the same
format (a full checkpoint, so it can be loaded like any other), plus the metric, value and epoch it is the
best of. It is replaced, atomically, only by a strictly better value of the same metric, and that decision
reads the value recorded in the file itself, so a restarted run (which may resume from an older position
than the best epoch) never overwrites it with a worse epoch. The newest checkpoints, kept for resuming, are
untouched by it and it is never one of them (it is not named like them).

Files are loaded with `weights_only=True`: the volume may be shared, and unpickling arbitrary objects from
it would let whoever can write there run code in the trainer. So RNG states are stored as tensors and
plain lists, not as numpy objects.
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import torch

from trainsmart_trainer.contract import BEST_CHECKPOINT_DIR, BestCheckpointInfo, ObjectiveDirection

log = logging.getLogger(__name__)

FORMAT: Final = "trainsmart-checkpoint"
VERSION: Final = 1
_NAME = re.compile(r"^checkpoint-(\d{6,})-(\d{7,})\.pt$")
_TEMP_PREFIX: Final = ".checkpoint-tmp-"
REQUIRED_KEYS: Final = frozenset({"format", "version", "epoch", "step_in_epoch", "global_step", "model", "optimizer"})


@dataclass(frozen=True, order=True)
class CheckpointName:
    """Position a checkpoint was taken at: epochs completed, then batches into the following epoch."""

    epoch: int
    step_in_epoch: int

    @property
    def filename(self) -> str:
        return f"checkpoint-{self.epoch:06d}-{self.step_in_epoch:07d}.pt"

    @classmethod
    def parse(cls, filename: str) -> CheckpointName | None:
        match = _NAME.match(filename)
        return cls(int(match.group(1)), int(match.group(2))) if match else None


def list_checkpoints(directory: Path) -> list[tuple[CheckpointName, Path]]:
    """Checkpoint files in `directory`, newest first (temporary files are never listed)."""
    if not directory.is_dir():
        return []
    named = [(name, path) for path in directory.iterdir() if (name := CheckpointName.parse(path.name)) is not None]
    return sorted(named, reverse=True)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def atomic_write(path: Path, write: Any) -> None:
    """Run `write(fileobj)` into a temp file next to `path`, then fsync and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temp = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def save(directory: Path, state: dict[str, Any], keep: int) -> Path:
    """Write `state` (which has `epoch` and `step_in_epoch`) atomically; delete all but the newest `keep`."""
    name = CheckpointName(int(state["epoch"]), int(state["step_in_epoch"]))
    path = directory / name.filename
    payload = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda handle: torch.save(payload, handle))
    for _, old in list_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
    return path


def remove_stale_temp_files(directory: Path) -> None:
    """Temp files left by a process killed mid-save are garbage: the rename never happened."""
    for folder in (directory, directory / BEST_CHECKPOINT_DIR):
        if folder.is_dir():
            for path in folder.glob(f"{_TEMP_PREFIX}*"):
                path.unlink(missing_ok=True)


def load_file(path: Path) -> dict[str, Any]:
    """Load and sanity-check one checkpoint; raises ValueError for anything unusable."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises a zoo of types for truncated/garbled files
        raise ValueError(f"cannot load {path.name}: {type(error).__name__}: {error}") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not a trainsmart checkpoint")
    if state.get("version") != VERSION:
        raise ValueError(f"{path.name} has format version {state.get('version')}, this trainer reads {VERSION}")
    missing = REQUIRED_KEYS - state.keys()
    if missing:
        raise ValueError(f"{path.name} lacks {sorted(missing)}")
    return state


def load_newest_valid(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads, skipping (with a warning) any that does not; None if there is none."""
    for _, path in list_checkpoints(directory):
        try:
            return path, load_file(path)
        except ValueError as error:
            log.warning("skipping corrupt or incomplete checkpoint: %s", error)
    return None


# ---- the best checkpoint by the objective -----------------------------------------------------------------

BEST_FILE_NAME: Final = "checkpoint.pt"


def best_path(directory: Path) -> Path:
    """Where the best checkpoint of the run saving into `directory` lives."""
    return directory / BEST_CHECKPOINT_DIR / BEST_FILE_NAME


def read_best(directory: Path) -> BestCheckpointInfo | None:
    """What the best checkpoint in `directory` is the best of; None when there is none or it is unusable
    (then the next save replaces it, which is what an unreadable best deserves)."""
    path = best_path(directory)
    if not path.is_file():
        return None
    try:
        record = load_file(path).get("best_checkpoint")
        if not isinstance(record, dict):
            raise ValueError(f"{path.name} records no best value")
        return BestCheckpointInfo.model_validate({**record, "path": str(path)})
    except ValueError as error:  # pydantic's ValidationError is a ValueError
        log.warning("ignoring the best checkpoint %s: %s", path, error)
        return None


def improves_on(current: BestCheckpointInfo | None, metric: str, value: float, direction: ObjectiveDirection) -> bool:
    """Whether `value` of `metric` should replace the best checkpoint `current`: a finite value strictly
    better than the recorded one; a best of another metric (the objective changed) is always replaced."""
    if not math.isfinite(value):
        return False
    return current is None or current.metric != metric or direction.is_better(value, current.value)


def save_best(directory: Path, state: dict[str, Any], metric: str, value: float) -> BestCheckpointInfo:
    """Write `state` (which has `epoch`) atomically as the best checkpoint, recording `metric`'s `value`."""
    path = best_path(directory)
    record = {"metric": metric, "value": float(value), "epoch": int(state["epoch"])}
    payload = {"format": FORMAT, "version": VERSION, **state, "best_checkpoint": record}
    atomic_write(path, lambda handle: torch.save(payload, handle))
    return BestCheckpointInfo(path=str(path), **record)


# ---- RNG state, in forms weights_only loading accepts ----------------------------------------------------


def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy's legacy global and Python's `random` states."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {"version": py_version, "internal": list(py_internal), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_everything(seed: int) -> None:
    """Seed torch (all devices), numpy's global and Python's `random`: same seed, same run on the CPU."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of capture_rng; parts that are missing (e.g. CUDA on a CPU node) are left alone."""
    torch.set_rng_state(state["torch"])
    np_part = state["numpy"]
    keys = np_part["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, np_part["pos"], np_part["has_gauss"], np_part["cached_gaussian"]))
    python_part = state["python"]
    random.setstate((python_part["version"], tuple(python_part["internal"]), python_part["gauss"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
