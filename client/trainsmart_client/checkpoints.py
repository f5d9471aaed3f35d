"""Where to save checkpoints and which one to resume from.

The operator mounts the job's checkpoint volume and names it in TRAINSMART_CHECKPOINT_DIR; a restarted or
resumed pod (retry, suspend/resume, a sweep's promoted trial) finds the previous run's files there. What a
checkpoint is stays the script's business (a file, or a directory such as Hugging Face's `checkpoint-500`);
the newest one is the last modified, ties broken by the number in the name, then the name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from trainsmart_client.job_env import CHECKPOINT_DIR

RESULT_FILE_NAME = "result.json"
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
        if not path.name.startswith(".") and path.name != RESULT_FILE_NAME and not path.name.endswith(".tmp")
    ]
    return max(candidates, key=_order) if candidates else None
