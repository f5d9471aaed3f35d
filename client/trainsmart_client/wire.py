"""Reports as the operator's endpoint accepts them (`TrainerReport` in the operator's contract), built as
plain dicts: this package cannot use the contract's pydantic models, so a unit test validates what these
functions produce against them.

The rules the schema imposes and these builders keep: camelCase keys, no unknown keys, no NaN/inf (JSON
cannot carry them), `totalEpochs` >= 1, `final` present exactly on final reports, metric names the status
can hold (`^[A-Za-z_][A-Za-z0-9_./-]*$`, at most 128 characters).
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

PROGRESS = "progress"
EPOCH = "epoch"
DIAGNOSTIC = "diagnostic"
FINAL = "final"

MAX_METRICS = 64
"""The status keeps at most 64 metrics per job; more in one report would only be cut there."""
MAX_NAME_CHARS = 128
_NAME_BAD_CHARS = re.compile(r"[^A-Za-z0-9_./-]")

FINAL_HISTORY_MAX_ITEMS = 64
"""Objective values a final result carries (the newest epochs), as the contract's FinalResult allows."""
DEFAULT_OBJECTIVE = "val_loss"
"""The metric the operator tracks when nobody names one (its status's default objective)."""

FAILED = "failed"
"""The FinalResult status of a run that failed (any exit code but 0, 12, 13 and 143)."""

EXIT_TERMINATED = 13
EXIT_EARLY_STOPPED = 12
_MESSAGE_MAX_CHARS = 1024


def metric_name(raw: str) -> str | None:
    """`raw` made into a name the status accepts (`val loss` -> `val_loss`), None when nothing is left."""
    name = _NAME_BAD_CHARS.sub("_", raw.strip())[:MAX_NAME_CHARS].strip("_") or ""
    if not name:
        return None
    return name if name[0].isalpha() or name[0] == "_" else ("_" + name)[:MAX_NAME_CHARS]


def split_finite(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """(finite metrics by sanitised name, non-finite ones): what can be sent, and what must be diagnosed.

    Booleans and non-numbers are left out: `True` is not a metric value even though Python counts it as 1.
    """
    finite: dict[str, float] = {}
    non_finite: dict[str, float] = {}
    for raw, value in metrics.items():
        name = metric_name(str(raw))
        if name is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        number = float(value)
        if math.isfinite(number):
            if len(finite) < MAX_METRICS or name in finite:
                finite[name] = number
        else:
            non_finite[name] = number
    return finite, non_finite


def is_loss(name: str) -> bool:
    return "loss" in name.lower()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def build_report(
    kind: str,
    *,
    identity: Mapping[str, Any],
    device: Mapping[str, Any],
    epoch: int,
    total_epochs: int,
    step: int = 0,
    metrics: Mapping[str, float] | None = None,
    eta_seconds: float | None = None,
    diagnostics: list[dict[str, Any]] | None = None,
    final: Mapping[str, Any] | None = None,
    time: str | None = None,
    objective_metric: str = "",
    checkpoint: Mapping[str, Any] | None = None,
    best_checkpoint: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One report. `total_epochs` is raised to `epoch` (and to 1) when the script never said how many epochs
    it runs: the schema needs a total, and the status's percent must not pass 100."""
    report: dict[str, Any] = {
        "schemaVersion": 1,
        "job": dict(identity),
        "kind": kind,
        "time": time or now_iso(),
        "step": max(int(step), 0),
        "epoch": max(int(epoch), 0),
        "totalEpochs": max(int(total_epochs), int(epoch), 1),
        "metrics": dict(metrics or {}),
        "device": dict(device),
    }
    if eta_seconds is not None and math.isfinite(eta_seconds) and eta_seconds >= 0:
        report["etaSeconds"] = eta_seconds
    if objective_metric:
        report["objectiveMetric"] = objective_metric
    if diagnostics:
        report["diagnostics"] = diagnostics
    if checkpoint is not None:
        report["checkpoint"] = dict(checkpoint)
    if best_checkpoint is not None:
        report["bestCheckpoint"] = dict(best_checkpoint)
    if final is not None:
        report["final"] = dict(final)
    return report


def checkpoint_info(path: str, epoch: int, time: str | None = None) -> dict[str, Any]:
    """The report's `checkpoint`: where the state after `epoch` completed epochs was saved, and when."""
    return {"path": str(path), "epoch": max(int(epoch), 0), "time": time or now_iso()}


def best_checkpoint_info(path: str, epoch: int, metric: str, value: float) -> dict[str, Any]:
    """The report's `bestCheckpoint`: the checkpoint of the best `metric` value so far, and that value."""
    return {"path": str(path), "epoch": max(int(epoch), 0), "metric": metric, "value": float(value)}


def non_finite_loss_diagnostic(name: str, value: float, epoch: int | None, step: int | None) -> dict[str, Any]:
    """The NonFiniteLoss finding for one metric, in the contract's `Diagnostic` shape."""
    where = f" at epoch {epoch}" if epoch is not None else (f" at step {step}" if step is not None else "")
    finding: dict[str, Any] = {
        "type": "NonFiniteLoss",
        "severity": "Error",
        "message": f"{name} is {value}{where}: training has diverged or the inputs contain NaN/inf."[
            :_MESSAGE_MAX_CHARS
        ],
        "suggestion": "Lower the learning rate, clip gradients, and check the data for NaN or infinite values.",
    }
    if epoch is not None:
        finding["epoch"] = max(int(epoch), 0)
    if step is not None:
        finding["step"] = max(int(step), 0)
    return finding


def final_status(exit_code: int) -> str:
    """The FinalResult status for a process exit code (the operator's ExitCode meanings)."""
    if exit_code == 0:
        return "succeeded"
    if exit_code == EXIT_EARLY_STOPPED:
        return "early_stopped"
    if exit_code in (EXIT_TERMINATED, 128 + 15):
        return "terminated"
    return FAILED


def build_final_result(
    *,
    exit_code: int,
    epochs_completed: int,
    metrics: Mapping[str, float],
    duration_seconds: float,
    reason: str = "",
    objective_metric: str = "",
    objective_history: Sequence[tuple[int, float]] = (),
) -> dict[str, Any]:
    """The `final` block: how the run ended and its last metrics (exit codes above 255 are clamped).
    `objective_history`: (epoch, value) of the objective after each epoch; the newest 64 are kept, as the
    packaged trainer keeps them, so a status that missed those epoch reports can still fill its history."""
    result: dict[str, Any] = {
        "status": final_status(exit_code),
        "exitCode": min(max(int(exit_code), 0), 255),
        "epochsCompleted": max(int(epochs_completed), 0),
        "metrics": dict(metrics),
        "durationSeconds": max(float(duration_seconds), 0.0),
    }
    if reason:
        result["reason"] = reason[:2048]
    if objective_metric:
        result["objectiveMetric"] = objective_metric
        points = [
            {"epoch": int(epoch), "value": float(value)}
            for epoch, value in objective_history
            if int(epoch) >= 1 and math.isfinite(value)
        ]
        if points:
            result["objectiveHistory"] = points[-FINAL_HISTORY_MAX_ITEMS:]
    return result
