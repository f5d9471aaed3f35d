"""One sweep reconcile's whole decision, pure: the status to write, the trials to create, what else to do.

It composes the derivation (`sweep_derive`), the plan (`sweep_plan`) and the trial builder, and folds
the rows of trials whose suggested point makes an invalid TrainingJob into the status to write: the
controller then writes status once per reconcile, and the suggester sees those trials as Failed
(InvalidTrial) and moves on to the next number instead of proposing the same point forever.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic

from trainsmart.api import HyperparamSweep, HyperparamSweepStatus
from trainsmart.api.conditions import StatusEvent
from trainsmart.builders.trial import build_trial
from trainsmart.settings import GpuPricing
from trainsmart.sweep import TrialPoint
from trainsmart.sweep.sweep_derive import derive_sweep_status
from trainsmart.sweep.sweep_events import invalid_trial_event
from trainsmart.sweep.sweep_plan import SweepPlan, plan_sweep
from trainsmart.sweep.trial_table import invalid_trial_message, invalid_trial_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepDecision:
    status: HyperparamSweepStatus
    """The status to write; it already records the trials that could not be made (`invalid`)."""
    plan: SweepPlan
    trials_to_create: tuple[dict[str, Any], ...] = ()
    """The TrainingJob manifests of `plan.create`'s trials whose spec is valid."""
    invalid: tuple[StatusEvent, ...] = field(default=())
    """A Warning per suggested trial whose spec is invalid (recorded Failed, never created)."""


def decide_sweep(
    sweep: HyperparamSweep,
    trial_jobs: Sequence[Mapping[str, Any]],
    previous: HyperparamSweepStatus | None,
    now: datetime,
    pricing: GpuPricing | None = None,
    warm: Sequence[TrialPoint] = (),
) -> SweepDecision:
    """Derive, plan, and build the new trials of `sweep` given its trial TrainingJobs (API dicts);
    `pricing`: the operator's GPU price, if one is configured; `warm`: a warm start's finished trials."""
    status = derive_sweep_status(sweep, trial_jobs, previous, now, pricing=pricing)
    plan = plan_sweep(sweep, trial_jobs, status, now, warm)
    manifests: list[dict[str, Any]] = []
    rows, warnings = [], []
    for new in plan.create:
        try:
            manifests.append(build_trial(sweep, new.number, new.parameters))
        except (pydantic.ValidationError, KeyError) as error:
            # Admission checks each parameter's edge values; a normal distribution has no edges, so a
            # rare draw can still make an invalid trial. Say so loudly rather than crash-loop.
            log.warning("sweep %s: trial %d has an invalid spec: %s", sweep.metadata.get("name"), new.number, error)
            problem = invalid_trial_message(error)
            warnings.append(invalid_trial_event(new.number, new.parameters, problem))
            rows.append(invalid_trial_record(sweep, new.number, new.parameters, problem, now))
    if rows:
        status = status.model_copy(update={"trials": [*status.trials, *rows]})
    return SweepDecision(status, plan, tuple(manifests), tuple(warnings))
