"""Pure: a watched object's body -> the few values its Prometheus series are made of.

Only these small records are kept per object, never the bodies: with 1,000 jobs the operator's memory
must stay small, and a body carries a spec, conditions and a 500-point history the metrics do not need.
Bodies are read defensively (plain dict access, no pydantic parse): a status the metrics cannot read
yields fewer series, never an exception in a watch handler.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from trainsmart.api import SWEEP_KIND, TrainingJobPhase
from trainsmart.api.conditions import TRACKING_READY
from trainsmart.names import SWEEP_NAME_LABEL, TRIAL_NUMBER_LABEL

SPLITS: Final = ("train", "val", "test")
"""The `split` label values of the loss and accuracy gauges (a fixed set: label values stay bounded)."""
GPU_HOLDING_PHASES: Final = frozenset(
    {"", TrainingJobPhase.PENDING, TrainingJobPhase.RUNNING, TrainingJobPhase.RESTARTING}
)
"""Phases in which a job wants its GPUs ("" = not yet reconciled); suspended and finished jobs hold none."""


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """What the metrics show of one TrainingJob."""

    namespace: str
    name: str
    sweep: str = ""
    trial: str = ""
    phase: str = ""
    gpus_requested: int = 0
    gpus_running: int = 0
    restarts: int = 0
    gpu_seconds: float = 0.0
    estimated_cost: float | None = None
    cost_currency: str = ""
    epoch: float | None = None
    total_epochs: float | None = None
    progress_ratio: float | None = None
    samples_per_second: float | None = None
    objective_metric: str = ""
    objective: float | None = None
    objective_best: float | None = None
    loss: tuple[tuple[str, float], ...] = ()
    accuracy: tuple[tuple[str, float], ...] = ()
    tracking_not_ready: str = ""
    """The reason of a TrackingReady condition that is False ("" when True, Unknown or absent)."""


@dataclass(frozen=True, slots=True)
class SweepSnapshot:
    """What the metrics show of one HyperparamSweep."""

    namespace: str
    name: str
    phase: str = ""
    objective_metric: str = ""
    best: float | None = None
    trials: tuple[tuple[str, int], ...] = ()
    """(state, count) for each trial state, states as in the trial table (Pending, Running, ...)."""
    planned: int | None = None
    estimated_cost: float | None = None
    cost_currency: str = ""
    tracking_not_ready: str = ""
    """As JobSnapshot's."""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    """A finite number, or None (booleans and strings are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _count(value: Any, default: int = 0) -> int:
    number = _number(value)
    return int(number) if number is not None and number >= 0 else default


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def trial_identity(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(sweep, trial) of a trial TrainingJob, ("", "") for a standalone job. The sweep's labels first; the
    controlling owner reference of kind HyperparamSweep as a fallback (labels can be edited away)."""
    labels = _map(meta.get("labels"))
    sweep = _text(labels.get(SWEEP_NAME_LABEL))
    if not sweep:
        owners = meta.get("ownerReferences")
        for ref in owners if isinstance(owners, list) else ():
            ref = _map(ref)
            if ref.get("kind") == SWEEP_KIND and ref.get("controller"):
                sweep = _text(ref.get("name"))
    if not sweep:
        return "", ""
    trial = _text(labels.get(TRIAL_NUMBER_LABEL))
    name = _text(meta.get("name"))
    if not trial and name.startswith(f"{sweep}-"):
        trial = name[len(sweep) + 1 :]
    return sweep, trial or name


def tracking_not_ready(status: Mapping[str, Any]) -> str:
    """The reason of the status's TrackingReady condition when it is False, else ""."""
    conditions = status.get("conditions")
    for item in conditions if isinstance(conditions, list) else ():
        item = _map(item)
        if item.get("type") == TRACKING_READY and item.get("status") == "False":
            return _text(item.get("reason")) or "Unknown"
    return ""


def _by_split(latest: Mapping[str, Any], suffix: str) -> tuple[tuple[str, float], ...]:
    found = ((split, _number(latest.get(f"{split}_{suffix}"))) for split in SPLITS)
    return tuple((split, value) for split, value in found if value is not None)


def job_snapshot(body: Mapping[str, Any]) -> JobSnapshot:
    """The snapshot of a TrainingJob body as the watch delivers it."""
    meta, spec, status = _map(body.get("metadata")), _map(body.get("spec")), _map(body.get("status"))
    sweep, trial = trial_identity(meta)
    phase = _text(status.get("phase"))
    gpus = _count(spec.get("gpusPerReplica"))
    progress, metrics = _map(status.get("progress")), _map(status.get("metrics"))
    latest, best = _map(metrics.get("latest")), _map(metrics.get("best"))
    objective = _text(metrics.get("objective"))
    percent = _number(progress.get("percent"))
    return JobSnapshot(
        namespace=_text(meta.get("namespace")),
        name=_text(meta.get("name")),
        sweep=sweep,
        trial=trial,
        phase=phase,
        gpus_requested=gpus * _count(spec.get("replicas"), 1) if phase in GPU_HOLDING_PHASES else 0,
        gpus_running=gpus * _count(_map(status.get("replicas")).get("running")),
        restarts=_count(status.get("restarts")),
        gpu_seconds=_number(status.get("gpuSeconds")) or 0.0,
        estimated_cost=_number(status.get("estimatedCost")),
        cost_currency=_text(status.get("costCurrency")),
        epoch=_number(progress.get("epoch")),
        total_epochs=_number(progress.get("totalEpochs")),
        progress_ratio=percent / 100.0 if percent is not None else None,
        samples_per_second=_number(progress.get("samplesPerSecond")),
        objective_metric=objective,
        objective=_number(latest.get(objective)) if objective else None,
        objective_best=_number(best.get(objective)) if objective else None,
        loss=_by_split(latest, "loss"),
        accuracy=_by_split(latest, "accuracy"),
        tracking_not_ready=tracking_not_ready(status),
    )


_TRIAL_COUNTS: Final = (
    ("Pending", "pending"),
    ("Running", "running"),
    ("Succeeded", "succeeded"),
    ("Failed", "failed"),
    ("EarlyStopped", "earlyStopped"),
)


def sweep_snapshot(body: Mapping[str, Any]) -> SweepSnapshot:
    """The snapshot of a HyperparamSweep body as the watch delivers it."""
    meta, spec, status = _map(body.get("metadata")), _map(body.get("spec")), _map(body.get("status"))
    counts = _map(status.get("counts"))
    planned = _number(counts.get("planned"))
    return SweepSnapshot(
        namespace=_text(meta.get("namespace")),
        name=_text(meta.get("name")),
        phase=_text(status.get("phase")),
        objective_metric=_text(_map(spec.get("objective")).get("metric")),
        best=_number(_map(status.get("bestTrial")).get("metricValue")),
        trials=tuple((state, _count(counts.get(field))) for state, field in _TRIAL_COUNTS) if counts else (),
        planned=int(planned) if planned else None,
        estimated_cost=_number(status.get("estimatedCost")),
        cost_currency=_text(status.get("costCurrency")),
        tracking_not_ready=tracking_not_ready(status),
    )
