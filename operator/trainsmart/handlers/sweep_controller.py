"""The HyperparamSweep controller's I/O side: read -> parse -> derive -> plan -> patch status -> act.

The same shape as the TrainingJob controller, for the same reasons: every reconcile reads the sweep and
its trial TrainingJobs afresh (trials found by the sweep-name label, kept only when the sweep is their
controller owner), derives the status with pure functions, patches it only when it changed (with the
resourceVersion it was derived from as a precondition) and carries out the plan only after that patch
succeeded: one status write per reconcile (a suggested trial whose spec is invalid is already in the
derived status, see `sweep/sweep_decision.py`). So a trial's result is in the sweep's table before
retention may delete the trial, and an operator killed at any point loses and duplicates nothing: trial
names are deterministic and creation is create-if-absent, and the suggester's history is rebuilt from
the children and the table each time. The parts both controllers share are `controller_core`'s.

Triggers: every watch event of the sweep, every event of a TrainingJob labelled as one of its trials
(the TrainingJob controller's status patches included: that is how trial progress reaches the sweep), and
the plan's `requeue_after` (the duration budget). Events of the controller's own status patch are ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import pydantic

from trainsmart.admission.rules import validate_sweep
from trainsmart.api import SWEEP_PLURAL, HyperparamSweep, HyperparamSweepStatus
from trainsmart.api.conditions import StatusEvent
from trainsmart.builders.trial import resume_patch, suspend_patch
from trainsmart.handlers.controller_core import RESYNC_S, ControllerCore, utc_now
from trainsmart.kube import Kube, StatusConflictError
from trainsmart.names import trial_selector
from trainsmart.report_endpoint import JobKey
from trainsmart.settings import GpuPricing
from trainsmart.status.tracking_condition import with_tracking_condition
from trainsmart.sweep.sweep_decision import SweepDecision, decide_sweep
from trainsmart.sweep.sweep_derive import invalid_sweep_status
from trainsmart.sweep.sweep_events import (
    sweep_events,
    trial_created_event,
    trial_resumed_event,
    trial_stopped_event,
)
from trainsmart.sweep.warm_start import WarmStartHistory, warm_start_events, warm_start_history
from trainsmart.tracking.mlflow_sync import TrackedKind, TrackingSync

log = logging.getLogger(__name__)


def parse_sweep(body: Mapping[str, Any]) -> HyperparamSweep | list[str]:
    """The parsed sweep, or every problem the admission webhook would have refused it for."""
    problems = validate_sweep(body)
    if problems:
        return [str(problem) for problem in problems]
    try:
        return HyperparamSweep.model_validate({**body, "status": None})
    except pydantic.ValidationError as error:  # pragma: no cover - validate_sweep parses the same spec
        return [str(error)]


class SweepController:
    """Reconciles HyperparamSweeps; one per operator process."""

    def __init__(
        self,
        kube: Kube,
        *,
        clock: Callable[[], datetime] = utc_now,
        pricing: GpuPricing | None = None,
        tracking: TrackingSync | None = None,
    ) -> None:
        self.kube = kube
        self.tracking = tracking
        self.clock = clock
        self.pricing = pricing
        self.core = ControllerCore(kube, SWEEP_PLURAL, HyperparamSweepStatus, clock=clock)

    def is_own_echo(self, key: JobKey, body: Mapping[str, Any]) -> bool:
        """True for the watch event of the controller's own last status patch."""
        return self.core.is_own_echo(key, body)

    def forget(self, key: JobKey) -> None:
        self.core.forget(key)
        if self.tracking is not None:
            self.tracking.forget(TrackedKind.SWEEP, key)

    async def reconcile(self, key: JobKey) -> float | None:
        """One reconcile of sweep `key`; returns seconds until the next one is due (None: next event)."""
        body = await self.core.read(key)
        if body is None:
            return None
        meta = body.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return None  # its trials go with it by owner reference
        previous = self.core.previous_status(body)
        parsed = parse_sweep(body)
        if isinstance(parsed, list):
            return await self.core.reconcile_invalid(key, body, previous, parsed, invalid_sweep_status, sweep_events)
        sweep = parsed
        trials = await self.kube.list_trials(key.namespace, trial_selector(key.name))
        warm = await self._warm_start(key, sweep)
        # In a worker thread: TPE's suggestion is CPU work (hyperopt, tens to hundreds of ms), and the event
        # loop also serves the trainers' reports, which time out when it is blocked.
        decision = await asyncio.to_thread(
            decide_sweep, sweep, trials, previous, self.clock(), self.pricing, warm=warm.points
        )
        status = decision.status
        if self.tracking is not None:  # the parent run's sync (never waited on) and its health
            status = with_tracking_condition(status, self.tracking.offer_sweep(key, sweep, status), self.clock())
        try:
            written = await self.core.write_status(key, body, previous, status)
        except StatusConflictError:
            log.info("sweep %s changed while reconciling; deriving again", key)
            return 0.0
        if written is None:
            return None
        events = sweep_events(previous, status) if written else []
        events += [*decision.invalid, *warm_start_events(warm, previous, decision.plan)]
        events += await self._act(key, decision)
        await self.core.post_events(body, events)
        plan = decision.plan
        if plan.requeue_after is not None:
            return min(plan.requeue_after, RESYNC_S)
        return None if plan.terminal else RESYNC_S

    async def _warm_start(self, key: JobKey, sweep: HyperparamSweep) -> WarmStartHistory:
        """spec.warmStart's trials, read afresh from the named sweep's status (see `sweep/warm_start.py`)."""
        warm = sweep.spec.warm_start
        if warm is None or warm.sweep == key.name:
            return warm_start_history(sweep, None)
        return warm_start_history(sweep, await self.kube.get_object(SWEEP_PLURAL, key.namespace, warm.sweep))

    async def _act(self, key: JobKey, decision: SweepDecision) -> list[StatusEvent]:
        """Carry out the plan; returns the Events that announce what was done."""
        namespace, plan = key.namespace, decision.plan
        events: list[StatusEvent | None] = []
        for action in plan.suspend:
            if await self.kube.patch_trainingjob(
                namespace, action.name, action.uid, suspend_patch(action.reason, action.message)
            ):
                events.append(trial_stopped_event(action))
        for action in plan.resume:
            if await self.kube.patch_trainingjob(namespace, action.name, action.uid, resume_patch()):
                events.append(trial_resumed_event(action))
        manifests = decision.trials_to_create
        created = await asyncio.gather(*(self.kube.create_trainingjob(manifest) for manifest in manifests))
        events += [trial_created_event(manifest) for manifest, fresh in zip(manifests, created, strict=True) if fresh]
        for action in plan.delete:
            if action.uid:
                await self.kube.delete_trainingjob(namespace, action.name, action.uid)
        return [event for event in events if event is not None]
