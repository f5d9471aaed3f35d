"""The outcome on disk: a result JSON file and the pod's termination message.

Both exist for when reporting was impossible (endpoint down, token missing, operator restarting): the
result file lives on the checkpoint volume and outlives the pod; the termination message lands in the pod's
status (`lastState.terminated.message`), where the operator and `kubectl describe` can read it.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trainsmart_client.termination_log import termination_message as client_termination_message
from trainsmart_trainer import contract
from trainsmart_trainer.checkpoint import atomic_write
from trainsmart_trainer.contract import EpochValue, ExitCode, FinalResult, FinalStatus
from trainsmart_trainer.objective import BestTracker

log = logging.getLogger(__name__)


_STATUS = {
    ExitCode.SUCCESS: FinalStatus.SUCCEEDED,
    ExitCode.EARLY_STOPPED: FinalStatus.EARLY_STOPPED,
    ExitCode.TERMINATED: FinalStatus.TERMINATED,
}


def final_result(
    code: ExitCode,
    reason: str,
    *,
    epochs_completed: int,
    objective_metric: str,
    best: BestTracker,
    metrics: Mapping[str, float],
    duration_seconds: float,
    history: Sequence[Mapping[str, float]] = (),
) -> FinalResult:
    """The outcome as the contract describes it; non-finite values are left out (JSON cannot carry them).
    `history`: per-epoch metrics (each with its `epoch`), of which the objective's newest values are kept."""
    best_value = best.best if best.best is not None and math.isfinite(best.best) else None
    points = [
        EpochValue(epoch=int(entry["epoch"]), value=entry[objective_metric])
        for entry in history
        if entry.get("epoch", 0) >= 1 and objective_metric in entry and math.isfinite(entry[objective_metric])
    ]
    return FinalResult(
        status=_STATUS.get(code, FinalStatus.FAILED),
        exit_code=int(code),
        reason=reason[:2048],
        epochs_completed=epochs_completed,
        objective_metric=objective_metric,
        best_value=best_value,
        best_epoch=best.best_epoch if best_value is not None else None,
        metrics={key: value for key, value in metrics.items() if math.isfinite(value)},
        duration_seconds=max(duration_seconds, 0.0),
        objective_history=points[-contract.FINAL_HISTORY_MAX_ITEMS :],
    )


def result_document(result: FinalResult, identity: dict[str, Any]) -> dict[str, Any]:
    """What the result file holds: the final result plus who produced it."""
    return {"job": identity, "final": result.model_dump(mode="json", by_alias=True)}


def write_result_file(path: Path, document: dict[str, Any]) -> bool:
    """Atomically write the result JSON; failures are logged, never raised (the run is already over)."""
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    try:
        atomic_write(path, lambda handle: handle.write(text.encode()))
    except OSError as error:
        log.warning("cannot write the result file %s: %s", path, error)
        return False
    return True


def termination_message(result: FinalResult, limit: int = contract.TERMINATION_MESSAGE_MAX_BYTES) -> str:
    """Compact JSON of the result within `limit` bytes, trimmed so it stays parseable (the kubelet would cut
    it mid-string): the client library's function, so the trainer and the wrapper write the same shape."""
    return client_termination_message(result.model_dump(mode="json", by_alias=True, exclude_none=True), limit)


def write_termination_message(path: Path | None, text: str) -> None:
    """Overwrite the termination log; skipped when there is none, logged when it cannot be written."""
    if path is None:
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as error:
        log.warning("cannot write the termination message to %s: %s", path, error)
