"""The HyperparamSweep controller's I/O side: read -> parse -> derive -> plan -> patch status -> act.

The same shape as the TrainingJob controller, for the same reasons: every reconcile reads the sweep and
its trial TrainingJobs afresh (trials found by the sweep-name label, kept only when the sweep is their
controller owner), derives the status with pure functions, patches it only when it changed (with the
resourceVersion it was derived from as a precondition) and carries out the plan only after that patch
succeeded. So a trial's result is in the sweep's table before retention may delete the trial, and an
operator killed at any point loses and duplicates nothing: trial names are deterministic and creation
is create-if-absent, and the suggester's history is rebuilt from the children and the table each time.

Triggers: every watch event of the sweep, every event of a TrainingJob labelled as one of its trials
(the TrainingJob controller's status patches included: that is how trial progress reaches the sweep), and
the plan's `requeue_after` (the duration budget). Events of the controller's own status patch are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import pydantic

from trainsmart.admission.rules import validate_sweep
from trainsmart.api import ConditionStatus, HyperparamSweep, HyperparamSweepStatus, TrialRecord
from trainsmart.builders.trial import (
    PARAMETERS_ANNOTATION,
    build_trial,
    resume_patch,
    suspend_patch,
    trial_selector,
)
from trainsmart.kube import Kube, ObjectRef, StatusConflictError, merge_patch
from trainsmart.reports import JobKey
from trainsmart.status.sweep import SWEEP_CONDITION_ORDER, derive_sweep_status, invalid_sweep_status
from trainsmart.status.sweep_plan import PROMOTED, RESUMED, SweepPlan, plan_sweep
from trainsmart.status.sweep_trials import INVALID_TRIAL, invalid_trial_message, invalid_trial_record

log = logging.getLogger(__name__)

RESYNC_S: Final = 60.0
"""Reconcile an unfinished sweep at least this often (GPU-hour budget, a lost watch event)."""
_WARNING_TYPES: Final = frozenset({"Failed", "InvalidSpec", "BudgetExhausted"})


def _now() -> datetime:
    return datetime.now(UTC)


def parse_previous_status(body: Mapping[str, Any]) -> HyperparamSweepStatus | None:
    """The stored status, or None when there is none or it does not parse (it is then rebuilt from the
    children; rows of trials already deleted by retention are lost then, and their numbers not reused)."""
    raw = body.get("status")
    if not raw:
        return None
    try:
        return HyperparamSweepStatus.model_validate(raw)
    except pydantic.ValidationError:
        log.warning("ignoring an unreadable status on sweep %s", (body.get("metadata") or {}).get("name"))
        return None


def parse_sweep(body: Mapping[str, Any]) -> HyperparamSweep | list[str]:
    """The parsed sweep, or every problem the admission webhook would have refused it for."""
    problems = validate_sweep(body)
    if problems:
        return [str(problem) for problem in problems]
    try:
        return HyperparamSweep.model_validate({**body, "status": None})
    except pydantic.ValidationError as error:  # pragma: no cover - validate_sweep parses the same spec
        return [str(error)]


def sweep_events(previous: HyperparamSweepStatus | None, current: HyperparamSweepStatus) -> list[tuple[str, str, str]]:
    """(type, reason, message) for each condition that became True (Running excepted: it is announced by
    the trials' own creation Events)."""
    before = {c.type: c for c in (previous.conditions if previous is not None else [])}
    out = []
    for type_ in SWEEP_CONDITION_ORDER:
        now = next((c for c in current.conditions if c.type == type_), None)
        if now is None or now.status != ConditionStatus.TRUE or type_ == "Running":
            continue
        was = before.get(type_)
        if was is None or was.status != ConditionStatus.TRUE:
            kind = "Warning" if type_ in _WARNING_TYPES else "Normal"
            out.append((kind, now.reason or str(type_), now.message or str(type_)))
    return out


def _derive_and_plan(
    sweep: HyperparamSweep, trials: list[dict[str, Any]], previous: HyperparamSweepStatus | None, now: datetime
) -> tuple[HyperparamSweepStatus, SweepPlan]:
    status = derive_sweep_status(sweep, trials, previous, now)
    return status, plan_sweep(sweep, trials, status, now)


class SweepController:
    """Reconciles HyperparamSweeps; one per operator process."""

    def __init__(self, kube: Kube, *, clock: Callable[[], datetime] = _now) -> None:
        self.kube = kube
        self.clock = clock
        self._written_versions: dict[JobKey, str] = {}

    def is_own_echo(self, key: JobKey, body: Mapping[str, Any]) -> bool:
        """True for the watch event of the controller's own last status patch."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        return version is not None and self._written_versions.get(key) == version

    def forget(self, key: JobKey) -> None:
        self._written_versions.pop(key, None)

    async def reconcile(self, key: JobKey) -> float | None:
        """One reconcile of sweep `key`; returns seconds until the next one is due (None: next event)."""
        body = await self.kube.get_sweep(key.namespace, key.name)
        if body is None:
            self.forget(key)
            return None
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # its trials go with it by owner reference
        previous = parse_previous_status(body)
        parsed = parse_sweep(body)
        if isinstance(parsed, list):
            return await self._reconcile_invalid(key, body, previous, parsed)
        sweep = parsed
        trials = await self.kube.list_trials(key.namespace, trial_selector(key.name))
        now = self.clock()
        # In a worker thread: TPE's suggestion is CPU work (hyperopt, tens to hundreds of ms), and the event
        # loop also serves the trainers' reports, which time out when it is blocked.
        status, plan = await asyncio.to_thread(_derive_and_plan, sweep, trials, previous, now)
        try:
            events = await self._write_status(key, body, previous, status)
        except StatusConflictError:
            log.info("sweep %s changed while reconciling; deriving again", key)
            return 0.0
        if events is None:
            return None
        acted, invalid = await self._act(key, sweep, plan)
        events += acted
        if invalid and not await self._record_invalid(key, body, status, invalid):
            return 0.0
        ref = ObjectRef.of(body)
        for kind, reason, message in events:
            await self.kube.post_event(ref, kind, reason, message)
        if plan.requeue_after is not None:
            return min(plan.requeue_after, RESYNC_S)
        return None if plan.terminal else RESYNC_S

    async def _reconcile_invalid(
        self, key: JobKey, body: Mapping[str, Any], previous: HyperparamSweepStatus | None, problems: list[str]
    ) -> float | None:
        """InvalidSpec (every problem listed) and its Event; nothing else until the spec changes, which is
        an event of its own: no retry storm on a bad spec."""
        generation = (body.get("metadata") or {}).get("generation")
        now = self.clock()
        status = invalid_sweep_status(previous, generation if isinstance(generation, int) else None, problems, now)
        try:
            events = await self._write_status(key, body, previous, status)
        except StatusConflictError:
            return 0.0
        ref = ObjectRef.of(body)
        for kind, reason, message in events or []:
            await self.kube.post_event(ref, kind, reason, message)
        return None

    async def _write_status(
        self,
        key: JobKey,
        body: Mapping[str, Any],
        previous: HyperparamSweepStatus | None,
        status: HyperparamSweepStatus,
    ) -> list[tuple[str, str, str]] | None:
        """Patch the status if it changed; the Events its transitions announce (None: the sweep is gone)."""
        old = previous.to_api() if previous is not None else {}
        new = status.to_api()
        if old == new:
            return []
        version = str((body.get("metadata") or {}).get("resourceVersion", ""))
        updated = await self.kube.patch_sweep_status(key.namespace, key.name, version, merge_patch(old, new))
        if updated is None:
            self.forget(key)
            return None
        self._written_versions[key] = str((updated.get("metadata") or {}).get("resourceVersion", ""))
        return sweep_events(previous, status)

    async def _record_invalid(
        self, key: JobKey, body: Mapping[str, Any], status: HyperparamSweepStatus, invalid: list[TrialRecord]
    ) -> bool:
        """Put trials whose point made an invalid spec into the table as Failed (InvalidTrial), so the
        suggester counts them and moves on to the next number instead of proposing the same point forever.
        False when the patch met a conflict (the caller reconciles again; the point is then recorded then)."""
        recorded = status.model_copy(update={"trials": [*status.trials, *invalid]})
        version = self._written_versions.get(key) or str((body.get("metadata") or {}).get("resourceVersion", ""))
        patch = merge_patch(status.to_api(), recorded.to_api())
        try:
            updated = await self.kube.patch_sweep_status(key.namespace, key.name, version, patch)
        except StatusConflictError:
            return False
        if updated is not None:
            self._written_versions[key] = str((updated.get("metadata") or {}).get("resourceVersion", ""))
        return True

    async def _act(
        self, key: JobKey, sweep: HyperparamSweep, plan: SweepPlan
    ) -> tuple[list[tuple[str, str, str]], list[TrialRecord]]:
        """Carry out `plan`; returns the Events that announce what was done, and the rows of trials whose
        parameters made an invalid TrainingJob (never created)."""
        namespace = key.namespace
        events: list[tuple[str, str, str]] = []
        invalid: list[TrialRecord] = []
        for action in plan.suspend:
            patch = suspend_patch(action.reason, action.message)
            done = await self.kube.patch_trainingjob(namespace, action.name, action.uid, patch)
            if done and action.reason is not None:
                events.append(("Normal", "TrialStopped", f"{action.name}: {action.message}"))
        for action in plan.resume:
            if await self.kube.patch_trainingjob(namespace, action.name, action.uid, resume_patch()):
                if action.reason == PROMOTED:
                    events.append(("Normal", "TrialPromoted", f"{action.name}: {action.message}"))
                elif action.reason == RESUMED:
                    events.append(("Normal", "TrialResumed", f"{action.name}: the sweep resumed"))
        manifests = []
        for new in plan.create:
            try:
                manifests.append(build_trial(sweep, new.number, new.parameters))
            except (pydantic.ValidationError, KeyError) as error:
                # Admission checks each parameter's edge values; a normal distribution has no edges, so a
                # rare draw can still make an invalid trial. Say so loudly rather than crash-loop.
                log.warning("sweep %s: trial %d has an invalid spec: %s", key, new.number, error)
                problem = invalid_trial_message(error)
                events.append(("Warning", INVALID_TRIAL, f"trial {new.number} {dict(new.parameters)}: {problem}"))
                invalid.append(invalid_trial_record(sweep, new.number, new.parameters, problem, self.clock()))
        created = await asyncio.gather(*(self.kube.create_trainingjob(manifest) for manifest in manifests))
        for manifest, fresh in zip(manifests, created, strict=True):
            if fresh:
                meta = manifest["metadata"]
                events.append(
                    ("Normal", "TrialCreated", f"{meta['name']}: {meta['annotations'][PARAMETERS_ANNOTATION]}")
                )
        for action in plan.delete:
            if action.uid:
                await self.kube.delete_trainingjob(namespace, action.name, action.uid)
        return events, invalid
