"""Where to save checkpoints and which one to resume from.

The operator mounts the job's checkpoint volume and names it in TRAINSMART_CHECKPOINT_DIR; a restarted or
resumed pod (retry, suspend/resume, a sweep's promoted trial) finds the previous run's files there. What a
checkpoint is stays the script's business (a file, or a directory such as Hugging Face's `checkpoint-500`);
the newest one is the last modified, ties broken by the number in the name, then the name.

The best checkpoint by the objective (issue 15) is kept apart, in `best/` (`BEST_DIR`): `save_best` asks
the script to write a checkpoint only when the objective improved on the value recorded in
`best/best.json`, into a hidden temporary name that is then renamed into place, and records the new value
after it. So a worse later epoch never replaces it, and neither does a restarted run, since the recorded
value is read from the volume, not from memory. `latest_checkpoint` never returns the `best` entry.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping

from trainsmart_client.job_env import CHECKPOINT_DIR

RESULT_FILE_NAME = "result.json"
BEST_DIR = "best"
"""The best checkpoint's directory in the checkpoint directory (the contract's BEST_CHECKPOINT_DIR)."""
BEST_RECORD = "best.json"
_LOWER_IS_BETTER = ("loss", "rmse", "mae", "error")
_NUMBER = re.compile(r"(\d+)")


def checkpoint_dir(env: Mapping[str, str] | None = None) -> Path | None:
    env = os.environ if env is None else env
    value = env.get(CHECKPOINT_DIR)
    return Path(value) if value else None


def _order(path: Path) -> tuple[float, int, str]:
    numbers = _NUMBER.findall(path.name)
    try:
        modified = path.stat().st_mtime
    except OSError:
        modified = 0.0
    return modified, int(numbers[-1]) if numbers else -1, path.name


def latest_checkpoint(pattern: str = "*", directory: Path | None = None) -> Path | None:
    """The newest entry matching `pattern` (a glob) in the checkpoint directory, or None.

    Hidden entries (temporary files of an atomic save) and the packaged trainer's result file are never
    checkpoints.
    """
    directory = directory if directory is not None else checkpoint_dir()
    if directory is None or not directory.is_dir():
        return None
    candidates = [
        path
        for path in directory.glob(pattern)
        if not path.name.startswith(".")
        and path.name not in (RESULT_FILE_NAME, BEST_DIR)
        and not path.name.endswith(".tmp")
    ]
    return max(candidates, key=_order) if candidates else None


def lower_is_better(metric: str) -> bool:
    """The direction of a metric nobody gave a goal for, guessed from its name as the packaged trainer does."""
    return any(word in metric.lower() for word in _LOWER_IS_BETTER)


def read_best(directory: Path) -> dict[str, Any] | None:
    """The recorded best (`path`, `epoch`, `metric`, `value`) in `directory`, None when there is none."""
    try:
        record = json.loads((directory / BEST_DIR / BEST_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = record.get("value") if isinstance(record, dict) else None
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not isinstance(record.get("metric"), str):
        return None
    return dict(record)


def improves(record: Mapping[str, Any] | None, metric: str, value: float, maximize: bool) -> bool:
    """Whether `value` of `metric` beats the recorded best (strictly); a best of another metric always loses."""
    if not math.isfinite(value):
        return False
    if record is None or record.get("metric") != metric:
        return True
    recorded = float(record["value"])
    return value > recorded if maximize else value < recorded


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    descriptor, temp = tempfile.mkstemp(prefix=".best-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(dict(document), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def save_best_in(
    directory: Path,
    value: float,
    save: Callable[[Path], Any],
    *,
    metric: str,
    maximize: bool,
    epoch: int,
    name: str = "checkpoint",
) -> dict[str, Any] | None:
    """Keep the best checkpoint in `directory/best/`: when `value` improves on the recorded best, call
    `save(path)` to write a file or directory at `path` (a hidden temporary name), rename it to `best/<name>`
    and record the value. Returns the new record, None when it was no improvement."""
    if not improves(read_best(directory), metric, float(value), maximize):
        return None
    folder = directory / BEST_DIR
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".writing-{os.getpid()}-{name}"
    final = folder / name
    for leftover in (temp, folder / f".replaced-{name}"):
        shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)
    try:
        save(temp)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True) if temp.is_dir() else temp.unlink(missing_ok=True)
        raise
    if temp.is_dir() and final.exists():
        # A directory cannot be renamed over a non-empty one: move the old one aside, then drop it.
        os.replace(final, folder / f".replaced-{name}")
    os.replace(temp, final)
    shutil.rmtree(folder / f".replaced-{name}", ignore_errors=True)
    record = {"path": str(final), "epoch": max(int(epoch), 0), "metric": metric, "value": float(value)}
    _write_json(folder / BEST_RECORD, record)  # after the model: the file is never worse than it says
    return record
