"""What an object's MLflow run should hold, and what to send so that it does: pure, no I/O.

`job_run` and `sweep_run` describe the run a TrainingJob or a HyperparamSweep should have (`DesiredRun`:
tags, parameters, per-epoch metrics, run status) from its spec and status alone, so the same object gives
the same run after an operator restart. `plan_run_update` compares that with what MLflow already holds
(`RemoteRun`, read back from `runs/get` or kept from our own writes) and returns only what is missing, in
batches within MLflow's `log-batch` limits:

* metrics: a point is sent only when its step is above the highest step MLflow has for that key (its
  "latest" metric is the one with the highest step), so replaying reports or status after a restart or a
  retry logs nothing twice, and steps go up per key (steps are epochs; a sweep's are trial numbers);
* params: only keys MLflow does not have. MLflow refuses to change a logged parameter, so a key it has
  with another value (a spec edited mid-run) is left as it is and reported back;
* tags: those whose value differs; the run status and end time through `runs/update`.

`child_tag_changes` keeps a sweep's child runs pointing at their parent and exactly one of them tagged
`trainsmart.dev/best=true` (the sweep's best trial; the previous best loses the tag).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from trainsmart.api import HyperparamSweep, HyperparamSweepStatus, TrainingJob, TrainingJobStatus
from trainsmart.api.common import RESERVED_LABEL_PREFIX
from trainsmart.api.conditions import FINISHED_TRIAL_PHASES, SweepPhase, TrainingJobPhase
from trainsmart.api.tracking_spec import TrackingSpec
from trainsmart.names import (
    PARAMETERS_ANNOTATION,
    STOPPED_ANNOTATION,
    SWEEP_NAME_LABEL,
    TRIAL_NUMBER_LABEL,
)
from trainsmart_trainer.contract import ReportKind, TrainerReport

# ---- names ----------------------------------------------------------------------------------------------------

UID_TAG: Final = f"{RESERVED_LABEL_PREFIX}uid"
"""The object's uid: how its run is found again (runs/search), so an operator restart creates no duplicate."""
KIND_TAG: Final = f"{RESERVED_LABEL_PREFIX}kind"
NAMESPACE_TAG: Final = f"{RESERVED_LABEL_PREFIX}namespace"
JOB_TAG: Final = f"{RESERVED_LABEL_PREFIX}job"
ATTEMPT_TAG: Final = f"{RESERVED_LABEL_PREFIX}attempt"
PHASE_TAG: Final = f"{RESERVED_LABEL_PREFIX}phase"
SWEEP_TAG: Final = f"{RESERVED_LABEL_PREFIX}sweep"
TRIAL_TAG: Final = f"{RESERVED_LABEL_PREFIX}trial"
SWEEP_UID_TAG: Final = f"{RESERVED_LABEL_PREFIX}sweep-uid"
"""On a trial's run: its sweep's uid, how the sweep finds its child runs."""
BEST_TAG: Final = f"{RESERVED_LABEL_PREFIX}best"
DELETED_TAG: Final = f"{RESERVED_LABEL_PREFIX}deleted"
"""`true` on the run of an object deleted while its run was open: why the run ended KILLED."""
PARENT_RUN_TAG: Final = "mlflow.parentRunId"
"""MLflow's own tag for nested runs: the UI shows the trials under the sweep's run."""
BEST_PREFIX: Final = "best_"
"""A sweep run's metric: `best_<objective>` at step n is the best objective among trials 0..n."""

# ---- MLflow's limits (log-batch and the entity sizes of its REST API) ----------------------------------------

MAX_BATCH_METRICS: Final = 1000
MAX_BATCH_PARAMS: Final = 100
MAX_BATCH_TAGS: Final = 100
MAX_BATCH_ENTITIES: Final = 1000
MAX_KEY_CHARS: Final = 250
MAX_PARAM_VALUE_CHARS: Final = 500
"""Servers before MLflow 1.28 refuse longer values; newer ones take 6000. Longer values are cut."""
MAX_TAG_VALUE_CHARS: Final = 5000
_KEY_INVALID: Final = re.compile(r"[^A-Za-z0-9_\-./ ]")


class RunStatus(StrEnum):
    """MLflow's run states the operator sets."""

    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


@dataclass(frozen=True)
class MlflowTarget:
    """Where one object's run lives: server, experiment and the Secret with credentials (by name only)."""

    uri: str
    experiment: str
    credentials_secret: str | None = None


def resolve_target(tracking: TrackingSpec | None, default_uri: str | None, namespace: str) -> MlflowTarget | None:
    """The object's MLflow target: its spec over the operator's default URI; None when nothing is tracked
    (neither gives a URI). The experiment defaults to the namespace, for a sweep and its trials alike."""
    mlflow = tracking.mlflow if tracking is not None else None
    uri = (mlflow.tracking_uri if mlflow is not None else None) or default_uri
    if not uri:
        return None
    experiment = (mlflow.experiment if mlflow is not None else None) or namespace
    return MlflowTarget(uri.rstrip("/"), experiment, mlflow.credentials_secret if mlflow is not None else None)


@dataclass(frozen=True, order=True)
class MetricPoint:
    """One metric value at one step (epoch, or trial number for a sweep's run)."""

    key: str
    step: int
    value: float
    timestamp_ms: int = 0


@dataclass(frozen=True)
class DesiredRun:
    """The run an object should have in MLflow, derived from its spec and status only."""

    uid: str
    run_name: str
    start_time_ms: int
    tags: Mapping[str, str]
    params: Mapping[str, str]
    metrics: tuple[MetricPoint, ...]
    status: RunStatus
    end_time_ms: int | None = None
    parent_uid: str | None = None
    """A trial's sweep uid: its run is a child of the sweep's run."""
    best_child: str | None = None
    """A sweep's best trial (its TrainingJob name): that child run carries BEST_TAG."""


@dataclass(frozen=True)
class RemoteRun:
    """What MLflow holds of a run (from runs/get or runs/search, or kept from our own writes)."""

    run_id: str
    status: str = RunStatus.RUNNING
    end_time_ms: int | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    last_steps: Mapping[str, int] = field(default_factory=dict)
    """The highest step MLflow has per metric key."""


@dataclass(frozen=True)
class LogBatch:
    """One runs/log-batch request body's lists (MLflow's JSON shapes)."""

    metrics: tuple[MetricPoint, ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()

    def body(self, run_id: str) -> dict[str, Any]:
        return {
            "run_id": run_id,
            "metrics": [
                {"key": p.key, "value": p.value, "timestamp": p.timestamp_ms, "step": p.step} for p in self.metrics
            ],
            "params": [{"key": key, "value": value} for key, value in self.params],
            "tags": [{"key": key, "value": value} for key, value in self.tags],
        }


@dataclass(frozen=True)
class RunUpdate:
    """What to send to bring a run up to date; empty when it is."""

    batches: tuple[LogBatch, ...] = ()
    status: RunStatus | None = None
    """Set the run status (with `end_time_ms`) through runs/update; None: it is right already."""
    end_time_ms: int | None = None
    conflicting_params: tuple[str, ...] = ()
    """Keys MLflow has with another value: left as they are (MLflow refuses to change a parameter)."""

    @property
    def empty(self) -> bool:
        return not self.batches and self.status is None


@dataclass(frozen=True)
class TagChange:
    """Set (value) or delete (None) one tag of one run."""

    run_id: str
    key: str
    value: str | None


# ---- small helpers --------------------------------------------------------------------------------------------


def mlflow_key(name: str) -> str:
    """`name` as MLflow accepts a key: letters, digits, `_ - . / ` and space, at most 250 characters."""
    return _KEY_INVALID.sub("_", name)[:MAX_KEY_CHARS] or "_"


def to_ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text[:MAX_PARAM_VALUE_CHARS]


def flatten(value: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """A nested object as dotted keys (`config.model.hiddenSizes`), lists and scalars as their JSON text."""
    out: dict[str, str] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, Mapping) and item:
            out.update(flatten(item, name))
        else:
            out[mlflow_key(name)] = _param_value(item)
    return out


def _metadata_time(metadata: Mapping[str, Any], fallback: datetime) -> int:
    text = metadata.get("creationTimestamp")
    if isinstance(text, str):
        try:
            return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    elif isinstance(text, datetime):
        return int(text.timestamp() * 1000)
    return int(fallback.timestamp() * 1000)


def controller_owner_uid(metadata: Mapping[str, Any], kind: str) -> str | None:
    """The uid of the object's controller owner of `kind` (a trial's sweep), or None."""
    for ref in metadata.get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == kind and ref.get("uid"):
            return str(ref["uid"])
    return None


# ---- desired runs ---------------------------------------------------------------------------------------------


def job_run_status(job: TrainingJob, status: TrainingJobStatus) -> RunStatus:
    """FINISHED / FAILED once the job ended, KILLED while its sweep has stopped it (a promoted trial runs
    again: level-based, the run goes back to RUNNING), else RUNNING."""
    if status.phase == TrainingJobPhase.SUCCEEDED:
        return RunStatus.FINISHED
    if status.phase == TrainingJobPhase.FAILED:
        return RunStatus.FAILED
    stopped = (job.metadata.get("annotations") or {}).get(STOPPED_ANNOTATION)
    if status.phase == TrainingJobPhase.SUSPENDED and stopped:
        return RunStatus.KILLED
    return RunStatus.RUNNING


def job_params(job: TrainingJob) -> dict[str, str]:
    """A trial's parameters by name, then the job's shape and its trainer config's flattened values
    (`config.learningRate`, `config.model.hiddenSizes`...). The first of equal keys wins."""
    params: dict[str, str] = {}
    annotation = (job.metadata.get("annotations") or {}).get(PARAMETERS_ANNOTATION)
    if isinstance(annotation, str):
        try:
            decoded = json.loads(annotation)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            params.update({mlflow_key(str(k)): _param_value(v) for k, v in sorted(decoded.items())})
    spec = job.spec
    shape = {"replicas": spec.replicas, "gpusPerReplica": spec.gpus_per_replica}
    for key, value in {**shape, **(_config_params(job))}.items():
        params.setdefault(mlflow_key(key), _param_value(value))
    return params


def _config_params(job: TrainingJob) -> dict[str, str]:
    config = job.spec.trainer.config
    if config is None:
        return {}
    return flatten(config.model_dump(mode="json", by_alias=True, exclude_none=True), "config")


def job_metrics(status: TrainingJobStatus, now: datetime) -> tuple[MetricPoint, ...]:
    """The points the status itself carries: the objective per epoch (bounded history), and once the job
    has ended, every latest value at the last epoch (a final result whose epoch reports never came)."""
    metrics = status.metrics
    if metrics is None:
        return ()
    progress = status.progress
    stamp = to_ms(progress.report_time if progress is not None else None) or int(now.timestamp() * 1000)
    points: list[MetricPoint] = []
    if metrics.objective:
        key = mlflow_key(metrics.objective)
        points += [MetricPoint(key, p.epoch, p.value, stamp) for p in metrics.history if math.isfinite(p.value)]
    if status.phase in (TrainingJobPhase.SUCCEEDED, TrainingJobPhase.FAILED) and progress is not None:
        points += [
            MetricPoint(mlflow_key(key), progress.epoch, value, stamp)
            for key, value in sorted(metrics.latest.items())
            if math.isfinite(value)
        ]
    return tuple(points)


def report_points(reports: Iterable[TrainerReport]) -> list[MetricPoint]:
    """Every metric of the epoch and final reports, at step = the epoch it was measured after. Progress
    reports are left out: their values are mid-epoch, and the epoch's own report follows."""
    points: list[MetricPoint] = []
    for report in reports:
        if report.kind not in (ReportKind.EPOCH, ReportKind.FINAL):
            continue
        stamp = int(report.time.timestamp() * 1000)
        points += [
            MetricPoint(mlflow_key(key), report.epoch, value, stamp)
            for key, value in sorted(report.metrics.items())
            if math.isfinite(value)
        ]
    return points


def job_run(job: TrainingJob, status: TrainingJobStatus, now: datetime) -> DesiredRun:
    """The run of a TrainingJob (a trial's names its sweep and is a child of the sweep's run)."""
    meta = job.metadata
    labels = meta.get("labels") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    tags = {
        UID_TAG: str(meta.get("uid", "")),
        KIND_TAG: "TrainingJob",
        NAMESPACE_TAG: namespace,
        JOB_TAG: name,
        ATTEMPT_TAG: str(status.restarts),
        PHASE_TAG: str(status.phase or TrainingJobPhase.PENDING),
    }
    sweep_uid = controller_owner_uid(meta, "HyperparamSweep")
    if labels.get(SWEEP_NAME_LABEL):
        tags[SWEEP_TAG] = str(labels[SWEEP_NAME_LABEL])
        if labels.get(TRIAL_NUMBER_LABEL) is not None:
            tags[TRIAL_TAG] = str(labels[TRIAL_NUMBER_LABEL])
    if sweep_uid is not None:
        tags[SWEEP_UID_TAG] = sweep_uid
    run_status = job_run_status(job, status)
    ended = run_status in (RunStatus.FINISHED, RunStatus.FAILED)
    return DesiredRun(
        uid=tags[UID_TAG],
        run_name=name,
        start_time_ms=_metadata_time(meta, now),
        tags=tags,
        params=job_params(job),
        metrics=job_metrics(status, now),
        status=run_status,
        end_time_ms=to_ms(status.completion_time) if ended else None,
        parent_uid=sweep_uid,
    )


def _space_summary(parameter: Any) -> str:
    """`loguniform(min=0.0005, max=0.05)`, `choice([16, 32])`: a parameter's distribution in one line."""
    if parameter.values is not None:
        return _param_value(f"{parameter.type.value}({json.dumps(parameter.values)})")
    bounds = {k: getattr(parameter, k) for k in ("min", "max", "q", "mu", "sigma", "step")}
    inner = ", ".join(f"{k}={v}" for k, v in bounds.items() if v is not None)
    return _param_value(f"{parameter.type.value}({inner})")


def sweep_params(sweep: HyperparamSweep) -> dict[str, str]:
    """The search: objective, algorithm, limits and one `space.<name>` per parameter."""
    spec = sweep.spec
    params = {
        "objective.metric": spec.objective.metric,
        "objective.goal": spec.objective.goal.value,
        "algorithm": spec.algorithm.name.value,
        "parallelTrials": str(spec.parallel_trials),
        "earlyStopping": spec.early_stopping.rule.value,
    }
    if spec.max_trials is not None:
        params["maxTrials"] = str(spec.max_trials)
    if spec.objective.target is not None:
        params["objective.target"] = str(spec.objective.target)
    for parameter in spec.parameters:
        params[mlflow_key(f"space.{parameter.name}")] = _space_summary(parameter)
    return params


def best_so_far(sweep: HyperparamSweep, status: HyperparamSweepStatus, stamp_ms: int) -> tuple[MetricPoint, ...]:
    """`best_<objective>` at each trial number n of the finished prefix (trials 0..n all finished): the best
    objective among them. Only the prefix, so steps only ever go up as trials finish out of order."""
    objective = sweep.spec.objective
    key = mlflow_key(BEST_PREFIX + objective.metric)
    best: float | None = None
    points: list[MetricPoint] = []
    for record in sorted(status.trials, key=lambda r: r.number):
        if record.phase not in FINISHED_TRIAL_PHASES:
            break
        value = record.metric_value
        if value is not None and math.isfinite(value) and (best is None or objective.is_better(value, best)):
            best = value
        if best is not None:
            points.append(MetricPoint(key, record.number, best, stamp_ms))
    return tuple(points)


def sweep_run(sweep: HyperparamSweep, status: HyperparamSweepStatus, now: datetime) -> DesiredRun:
    """The parent run of a sweep."""
    meta = sweep.metadata
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    tags = {
        UID_TAG: str(meta.get("uid", "")),
        KIND_TAG: "HyperparamSweep",
        NAMESPACE_TAG: namespace,
        SWEEP_TAG: name,
        PHASE_TAG: str(status.phase or SweepPhase.PENDING),
    }
    if status.phase == SweepPhase.SUCCEEDED:
        run_status = RunStatus.FINISHED
    elif status.phase == SweepPhase.FAILED:
        run_status = RunStatus.FAILED
    else:
        run_status = RunStatus.RUNNING
    ended = run_status != RunStatus.RUNNING
    return DesiredRun(
        uid=tags[UID_TAG],
        run_name=name,
        start_time_ms=_metadata_time(meta, now),
        tags=tags,
        params=sweep_params(sweep),
        metrics=best_so_far(sweep, status, int(now.timestamp() * 1000)),
        status=run_status,
        end_time_ms=(to_ms(status.completion_time) or int(now.timestamp() * 1000)) if ended else None,
        best_child=status.best_trial.name if status.best_trial is not None else None,
    )


def closing_run(desired: DesiredRun, now: datetime) -> DesiredRun:
    """The run of an object that is gone (deleted): a run still open (RUNNING, or KILLED by a sweep's stop
    without an end time) ends KILLED at `now`, tagged DELETED_TAG, so MLflow no longer shows a run that
    nothing will ever end. A run that ended (FINISHED, FAILED) keeps its status and end time: deleting a
    finished job (ttlSecondsAfterFinished included) changes nothing of its record."""
    if desired.status in (RunStatus.FINISHED, RunStatus.FAILED):
        return desired
    return replace(
        desired,
        status=RunStatus.KILLED,
        end_time_ms=int(now.timestamp() * 1000),
        tags={**desired.tags, DELETED_TAG: "true"},
    )


# ---- what to send ---------------------------------------------------------------------------------------------


def new_points(remote: RemoteRun, points: Iterable[MetricPoint]) -> list[MetricPoint]:
    """The points above MLflow's highest step for their key, one per (key, step) (the first given wins),
    in step order per key."""
    chosen: dict[tuple[str, int], MetricPoint] = {}
    for point in points:
        if point.step > remote.last_steps.get(point.key, -1) and (point.key, point.step) not in chosen:
            chosen[(point.key, point.step)] = point
    return sorted(chosen.values(), key=lambda p: (p.key, p.step))


def _batches(
    metrics: Sequence[MetricPoint], params: Sequence[tuple[str, str]], tags: Sequence[tuple[str, str]]
) -> tuple[LogBatch, ...]:
    """Split into log-batch requests within MLflow's per-request limits (params and tags first: a run shows
    its identity before its curves)."""
    batches: list[LogBatch] = []
    rest_p, rest_t, rest_m = list(params), list(tags), list(metrics)
    while rest_p or rest_t or rest_m:
        p, rest_p = rest_p[:MAX_BATCH_PARAMS], rest_p[MAX_BATCH_PARAMS:]
        t, rest_t = rest_t[:MAX_BATCH_TAGS], rest_t[MAX_BATCH_TAGS:]
        room = min(MAX_BATCH_METRICS, MAX_BATCH_ENTITIES - len(p) - len(t))
        m, rest_m = rest_m[:room], rest_m[room:]
        batches.append(LogBatch(tuple(m), tuple(p), tuple(t)))
    return tuple(batches)


def plan_run_update(
    desired: DesiredRun, remote: RemoteRun, points: Iterable[MetricPoint] = (), parent_run_id: str | None = None
) -> RunUpdate:
    """What to send so that `remote` holds `desired` plus the reported `points`."""
    wanted_tags = {key: value[:MAX_TAG_VALUE_CHARS] for key, value in desired.tags.items()}
    if parent_run_id is not None:
        wanted_tags[PARENT_RUN_TAG] = parent_run_id
    tags = sorted((k, v) for k, v in wanted_tags.items() if remote.tags.get(k) != v)
    params = sorted((k, v) for k, v in desired.params.items() if k not in remote.params)
    conflicting = tuple(sorted(k for k, v in desired.params.items() if k in remote.params and remote.params[k] != v))
    metrics = new_points(remote, [*desired.metrics, *points])
    status_right = remote.status == desired.status and (desired.end_time_ms is None or remote.end_time_ms is not None)
    return RunUpdate(
        batches=_batches(metrics, params, tags),
        status=None if status_right else desired.status,
        end_time_ms=desired.end_time_ms,
        conflicting_params=conflicting,
    )


def after_update(remote: RemoteRun, update: RunUpdate) -> RemoteRun:
    """What MLflow holds once `update` went through: kept instead of reading the run back each time."""
    params, tags, steps = dict(remote.params), dict(remote.tags), dict(remote.last_steps)
    for batch in update.batches:
        params.update(batch.params)
        tags.update(batch.tags)
        for point in batch.metrics:
            steps[point.key] = max(point.step, steps.get(point.key, -1))
    status, end = remote.status, remote.end_time_ms
    if update.status is not None:
        status, end = update.status, update.end_time_ms
    return RemoteRun(remote.run_id, status, end, params, tags, steps)


def remote_run_of(run: Mapping[str, Any]) -> RemoteRun:
    """A `run` object of MLflow's REST API (runs/get, runs/search, runs/create)."""
    info, data = run.get("info") or {}, run.get("data") or {}
    end = info.get("end_time")
    return RemoteRun(
        run_id=str(info.get("run_id") or info.get("run_uuid") or ""),
        status=str(info.get("status") or RunStatus.RUNNING),
        end_time_ms=int(end) if end is not None else None,
        params={str(p["key"]): str(p.get("value", "")) for p in data.get("params") or []},
        tags={str(t["key"]): str(t.get("value", "")) for t in data.get("tags") or []},
        last_steps={str(m["key"]): int(m.get("step") or 0) for m in data.get("metrics") or []},
    )


def child_tag_changes(children: Iterable[RemoteRun], parent_run_id: str, best_child: str | None) -> list[TagChange]:
    """A sweep's child runs: each points at `parent_run_id`; BEST_TAG on the best trial's run only."""
    changes: list[TagChange] = []
    for child in children:
        if child.tags.get(PARENT_RUN_TAG) != parent_run_id:
            changes.append(TagChange(child.run_id, PARENT_RUN_TAG, parent_run_id))
        is_best = best_child is not None and child.tags.get(JOB_TAG) == best_child
        if is_best and child.tags.get(BEST_TAG) != "true":
            changes.append(TagChange(child.run_id, BEST_TAG, "true"))
        elif not is_best and BEST_TAG in child.tags:
            changes.append(TagChange(child.run_id, BEST_TAG, None))
    return changes
