"""The packaged trainer as a real process, started the way a pod starts it (trainer end-to-end tests).

The environment is this process's minus whatever a launcher or an operator may have left in it
(`TRAINSMART_*`, `PET_*`, the classic rank variables): a test run from inside a pod, or under torchrun,
must not hand the trainer a rendezvous or a report endpoint the test never asked for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from trainsmart_trainer import contract

LAUNCHER_FREE_ENV = {
    key: value
    for key, value in os.environ.items()
    if not key.startswith(("TRAINSMART_", "PET_")) and key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"}
}


def start_trainer(
    config: Mapping[str, object], checkpoint_dir: Path, log: Path, **extra_env: str
) -> subprocess.Popen[bytes]:
    """`python -m trainsmart_trainer` with `config` inline, its checkpoints in `checkpoint_dir`, one OpenMP
    thread (two trainers on a 2-core machine must not fight over cores), stdout and stderr appended to `log`."""
    env = {
        **LAUNCHER_FREE_ENV,
        contract.CONFIG_JSON: json.dumps(config),
        contract.CHECKPOINT_DIR: str(checkpoint_dir),
        "OMP_NUM_THREADS": "1",
        **extra_env,
    }
    with log.open("ab") as sink:
        return subprocess.Popen([sys.executable, "-m", "trainsmart_trainer"], env=env, stdout=sink, stderr=sink)


def final_result(result_file: Path) -> dict[str, object]:
    """The `final` part of a result file (the contract's FinalResult, camelCase)."""
    final = json.loads(result_file.read_text())["final"]
    assert isinstance(final, dict)
    return final
