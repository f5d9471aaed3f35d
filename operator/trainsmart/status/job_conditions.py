"""The TrainingJob's conditions: one small function per condition type, from the verdict and the last status.

Each function answers one question ("is it Running, and why?") as (holds, reason, message), so a reader
can find a condition's whole logic in one place and a test can pin it alone. `job_conditions` writes them
in the fixed order of `TrainingJobConditionType`, keeping each one's lastTransitionTime while its status
is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from trainsmart.api import (
    Condition,
    ConditionStatus,
    Reason,
    TrainingJob,
    TrainingJobConditionType,
    TrainingJobPhase,
    TrainingJobStatus,
)
from trainsmart.api.conditions import SPEC_VALID, condition_from, find_condition, not_suspended
from trainsmart.api.conditions import ConditionOutcome as Outcome
from trainsmart.api.trainingjob_status import Diagnostic
from trainsmart.status.verdict import Verdict

Type = TrainingJobConditionType


@dataclass(frozen=True)
class JobFacts:
    """What the conditions are decided from."""

    job: TrainingJob
    previous: TrainingJobStatus
    verdict: Verdict
    all_created: bool
    """Every replica pod of the job has been created at some point."""
    diagnostics: Sequence[Diagnostic] = ()

    def was(self, type_: Type) -> Condition | None:
        return find_condition(self.previous.conditions, type_)


def _was_true(condition: Condition | None) -> bool:
    return condition is not None and condition.status == ConditionStatus.TRUE


def created(facts: JobFacts) -> Outcome:
    """True once every replica was created; it stays True with its first message (a restart recreates)."""
    before, replicas = facts.was(Type.CREATED), facts.job.spec.replicas
    if before is not None and _was_true(before):
        return True, before.reason or Reason.CHILDREN_CREATED, before.message or ""
    if facts.all_created:
        return True, Reason.CHILDREN_CREATED, f"created the {replicas} replica pods"
    if facts.verdict.phase == TrainingJobPhase.SUSPENDED:
        return False, Reason.SUSPENDED_BY_USER, "no pods are created while spec.suspend is true"
    return False, Reason.WAITING_FOR_PODS, f"creating the {replicas} replica pods"


def running(facts: JobFacts) -> Outcome:
    """The verdict's own reason, whatever the phase: it says why the job (not) runs."""
    verdict = facts.verdict
    return verdict.phase == TrainingJobPhase.RUNNING, verdict.reason, verdict.message


def restarting(facts: JobFacts) -> Outcome:
    """True while all replicas restart; False with ReplicasRecreated once the new attempt's pods exist."""
    verdict, before = facts.verdict, facts.was(Type.RESTARTING)
    if verdict.phase == TrainingJobPhase.RESTARTING:
        return True, verdict.reason, verdict.message
    if verdict.recreated:
        return False, Reason.REPLICAS_RECREATED, verdict.recreated
    if _was_true(before):
        if verdict.phase in (TrainingJobPhase.PENDING, TrainingJobPhase.RUNNING):
            message = f"the previous run's pods are gone; replicas of attempt {verdict.restarts} are starting"
            return False, Reason.REPLICAS_RECREATED, message
        return False, verdict.reason, verdict.message
    if before is not None and before.reason:
        return False, before.reason, before.message or ""
    return False, Reason.NO_RESTART, "no restart so far"


def succeeded(facts: JobFacts) -> Outcome:
    verdict = facts.verdict
    if verdict.phase == TrainingJobPhase.SUCCEEDED:
        return True, verdict.reason, verdict.message
    if verdict.phase == TrainingJobPhase.FAILED:
        return False, Reason.JOB_FAILED, "the job failed; the Failed condition says why"
    return False, Reason.NOT_FINISHED, "training has not finished"


def failed(facts: JobFacts) -> Outcome:
    verdict, limit = facts.verdict, facts.job.spec.run_policy.backoff_limit
    if verdict.phase == TrainingJobPhase.FAILED:
        return True, verdict.reason, verdict.message
    return False, Reason.NO_FAILURE, f"no permanent failure; {verdict.restarts} of {limit} restarts used"


def suspended(facts: JobFacts) -> Outcome:
    """True while suspended; False with Resumed right after, then it keeps that reason."""
    verdict = facts.verdict
    if verdict.phase == TrainingJobPhase.SUSPENDED:
        return True, verdict.reason, verdict.message
    return not_suspended(facts.was(Type.SUSPENDED), "spec.suspend is false: the job resumed")


def invalid_spec(_: JobFacts) -> Outcome:
    """A job whose spec parses is valid (an invalid one never reaches the derivation: `invalid_spec_status`)."""
    return SPEC_VALID


def training_warning(facts: JobFacts) -> Outcome:
    """True with the newest Warning or Error diagnostic (its type as the reason), else False."""
    for finding in reversed(facts.diagnostics):
        if finding.severity.value in ("Error", "Warning"):
            reason = re.sub(r"[^A-Za-z0-9]", "", finding.type)
            reason = reason if reason[:1].isalpha() else "TrainingDiagnostic"
            message = finding.message + (f"; suggestion: {finding.suggestion}" if finding.suggestion else "")
            return True, reason, message[:1024]
    return False, Reason.NO_TRAINING_WARNINGS, "the trainer reports no warnings"


CONDITIONS: Final[dict[Type, Callable[[JobFacts], Outcome]]] = {
    Type.CREATED: created,
    Type.RUNNING: running,
    Type.RESTARTING: restarting,
    Type.SUCCEEDED: succeeded,
    Type.FAILED: failed,
    Type.SUSPENDED: suspended,
    Type.INVALID_SPEC: invalid_spec,
    Type.TRAINING_WARNING: training_warning,
}
"""Every condition type, in the order they are written, with the function that decides it."""


def job_conditions(facts: JobFacts, now: datetime, observed_generation: int | None) -> list[Condition]:
    """All TrainingJob conditions, in their fixed order, each with a reason and a message."""
    previous = facts.previous.conditions
    return [
        condition_from(previous, type_, *decide(facts), now, observed_generation)
        for type_, decide in CONDITIONS.items()
    ]
