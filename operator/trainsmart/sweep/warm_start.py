"""Warm start (issue 15): another sweep's finished trials as observations for this sweep's suggester.

Pure. The controller reads the sweep that `spec.warmStart.sweep` names (same namespace) on every reconcile
and hands its body here; nothing is copied into this sweep's status, so the history stays a function of
what is stored in the cluster, as the rest of the sweep's is. The other sweep's trial table is used, not
its TrainingJobs: the table survives trialRetention and holds exactly what the suggester needs.

Which trials teach what (as for the sweep's own trials, see `suggest.py`):
* Succeeded and EarlyStopped rows with a value are observations of their value;
* Failed rows are failures (a diverging learning rate stays a bad region), NoMetric included; a row Failed
  because its TrainingJob was deleted unfinished (TrialDeleted) says nothing about its point and is skipped;
* rows still pending, running or suspended are skipped: their results are not known yet.

The warm start is ignored, and `problem` says why (the controller posts it as a WarmStartIgnored Warning),
when the sweep is missing or is this one, its spec does not parse, or it searches another space: different
parameter names or types, or another objective metric (its values would not measure the same thing; a
different goal is fine, values are compared in this sweep's direction). Finer differences (edited bounds,
an option no longer listed) need no refusal: a value the space cannot hold is left out of that trial's
hyperopt point, as for the sweep's own history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from trainsmart.api import HyperparamSweep, HyperparamSweepSpec, HyperparamSweepStatus, TrialPhase, TrialRecord
from trainsmart.api.conditions import Reason, StatusEvent
from trainsmart.api.search_space import Parameter
from trainsmart.sweep.suggest import TrialOutcome, TrialPoint
from trainsmart.sweep.sweep_plan import SweepPlan


@dataclass(frozen=True)
class WarmStartHistory:
    """What a warm start contributes: the other sweep's finished trials, or why there are none."""

    source: str | None = None
    """The sweep named by spec.warmStart; None when the spec has none."""
    points: tuple[TrialPoint, ...] = ()
    problem: str | None = None
    """Why the warm start is ignored; None when it is used (or there is none)."""


def warm_start_history(sweep: HyperparamSweep, source: Mapping[str, Any] | None) -> WarmStartHistory:
    """The warm start of `sweep`, given the body of the sweep its spec.warmStart names (None: not found)."""
    warm = sweep.spec.warm_start
    if warm is None:
        return WarmStartHistory()
    name = warm.sweep
    namespace = sweep.metadata.get("namespace")
    if name == sweep.metadata.get("name"):
        return WarmStartHistory(name, problem=f"warmStart.sweep {name!r} is this sweep itself; name another sweep")
    if source is None:
        return WarmStartHistory(name, problem=f"HyperparamSweep {name!r} was not found in namespace {namespace}")
    try:
        other = HyperparamSweepSpec.model_validate(source.get("spec") or {})
    except pydantic.ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "spec"
        return WarmStartHistory(
            name, problem=f"the spec of HyperparamSweep {name!r} is invalid ({where}: {first['msg']})"
        )
    mismatch = space_mismatch(sweep.spec, other)
    if mismatch is not None:
        return WarmStartHistory(name, problem=f"HyperparamSweep {name!r} searches another space: {mismatch}")
    points = tuple(point for point in map(warm_point, _records(source)) if point is not None)
    return WarmStartHistory(name, points=points)


def space_mismatch(spec: HyperparamSweepSpec, other: HyperparamSweepSpec) -> str | None:
    """Why `other`'s trials cannot seed `spec`'s search, or None when both search the same space."""
    ours, theirs = _types(spec.parameters), _types(other.parameters)
    problems = []
    missing, extra = sorted(ours.keys() - theirs.keys()), sorted(theirs.keys() - ours.keys())
    if missing:
        problems.append(f"it has no parameter {', '.join(missing)}")
    if extra:
        problems.append(f"only it has parameter {', '.join(extra)}")
    problems += [
        f"{name} is {theirs[name]} there, {ours[name]} here"
        for name in sorted(ours.keys() & theirs.keys())
        if ours[name] != theirs[name]
    ]
    if spec.objective.metric != other.objective.metric:
        problems.append(f"it optimizes {other.objective.metric}, this sweep {spec.objective.metric}")
    return "; ".join(problems) or None


def _types(parameters: Sequence[Parameter]) -> dict[str, str]:
    return {parameter.name: parameter.type.value for parameter in parameters}


def _records(source: Mapping[str, Any]) -> list[TrialRecord]:
    """The other sweep's trial table; a table (or row) that does not parse counts as empty (skipped)."""
    try:
        return HyperparamSweepStatus.model_validate(source.get("status") or {}).trials
    except pydantic.ValidationError:
        rows = (source.get("status") or {}).get("trials")
        parsed = []
        for row in rows if isinstance(rows, list) else []:
            try:
                parsed.append(TrialRecord.model_validate(row))
            except pydantic.ValidationError:
                continue
        return parsed


def warm_point(record: TrialRecord) -> TrialPoint | None:
    """A finished row as an observation (see the module doc); None for rows that teach nothing yet."""
    outcome: TrialOutcome
    if record.phase == TrialPhase.SUCCEEDED:
        outcome = TrialOutcome.SUCCEEDED
    elif record.phase == TrialPhase.EARLY_STOPPED:
        outcome = TrialOutcome.EARLY_STOPPED
    elif record.phase == TrialPhase.FAILED and record.reason != Reason.TRIAL_DELETED:
        outcome = TrialOutcome.NO_METRIC if record.reason == Reason.NO_METRIC else TrialOutcome.FAILED
    else:
        return None
    return TrialPoint(record.number, dict(record.parameters), outcome, record.metric_value)


def warm_start_events(
    warm: WarmStartHistory, previous: HyperparamSweepStatus | None, plan: SweepPlan
) -> list[StatusEvent]:
    """Events about the warm start, only when trials are being created (when it matters): a Warning each
    time it is ignored, and one Normal event when the first trials learned from it."""
    if warm.source is None or not plan.create:
        return []
    if warm.problem is not None:
        return [StatusEvent("Warning", Reason.WARM_START_IGNORED, f"warm start ignored: {warm.problem}")]
    if previous is None or not previous.trials:
        return [
            StatusEvent(
                "Normal",
                Reason.WARM_STARTED,
                f"suggesting with {len(warm.points)} finished trials of HyperparamSweep {warm.source!r}",
            )
        ]
    return []
