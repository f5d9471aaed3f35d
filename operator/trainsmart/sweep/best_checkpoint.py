"""Where a trial's best checkpoint is, as a user mounts it: its claim and the path inside (issue 15).

Pure. The trainer keeps the checkpoint of its best epoch by the sweep's objective (the pods are told the
objective, `builders/env.py`) and reports it; the trial's status holds it as `status.checkpoint.best` with
the path the trainer saw, under the checkpoint volume's mount. A user who wants that model mounts the
claim, so the sweep shows the claim's name and the path relative to the mount. A best checkpoint of another
metric (training code that does not know the sweep's objective) is not the model the trial's value came
from, so it is not shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from trainsmart.api.sweep_status import BestTrialCheckpoint
from trainsmart.api.trainingjob_spec import DEFAULT_CHECKPOINT_MOUNT_PATH
from trainsmart.names import checkpoint_claim_name


def trial_best_checkpoint(job: Mapping[str, Any], metric: str) -> BestTrialCheckpoint | None:
    """The trial TrainingJob's (API dict) best checkpoint by `metric`; None when it has none, it is of another
    metric, or it lies outside the checkpoint volume."""
    best = ((job.get("status") or {}).get("checkpoint") or {}).get("best") or {}
    spec = (job.get("spec") or {}).get("checkpoint") or {}
    path, epoch, value = best.get("path"), best.get("epoch"), best.get("value")
    if best.get("metric") != metric or not spec or not isinstance(path, str) or not isinstance(epoch, int):
        return None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    mount = PurePosixPath(str(spec.get("mountPath") or DEFAULT_CHECKPOINT_MOUNT_PATH))
    try:
        inside = PurePosixPath(path).relative_to(mount)
    except ValueError:
        return None
    name = str((job.get("metadata") or {}).get("name", ""))
    claim = spec.get("claimName") or checkpoint_claim_name(name)
    if not str(inside) or str(inside) == ".":
        return None
    return BestTrialCheckpoint(claim_name=str(claim), path=str(inside), epoch=epoch, value=float(value))
