"""The reconcile decision: given a TrainingJob, its pods and its freshly derived status, what to do now.

A pure function of its inputs, recomputed from scratch on every reconcile (level-triggered), so a plan
that was only half carried out is simply completed by the next one. The status says *what state* the job
is in (`derive_trainingjob_status` decides restarts, failures and suspension); the plan turns that state
into pod creations and deletions:

* Succeeded/Failed: delete pods per `runPolicy.cleanPodPolicy` (All; Running: pods not yet finished,
  finished ones keep their logs; None), and delete the job itself once `completionTime + ttl <= now`.
* Suspended: delete every pod (the trainer checkpoints on SIGTERM); create nothing, not even the pods'
  dependencies: a job created suspended (queued by a user or a sweep) holds no Service, Secret or PVC
  until it first runs. Those it already has are kept (the PVC holds its checkpoint).
* Restarting (a restart, a disruption, or a resume while old pods remain): delete every pod; create
  nothing until all are gone, since names are reused and two runs must never share a rendezvous.
* Pending/Running: delete pods that do not belong to the current attempt; create each missing replica
  of attempt `status.restarts`, but only when no pod is terminating or left from an older attempt.

In every phase, terminating pods bound to a node whose deletion has waited a while are named in `stuck`:
the I/O side looks at their nodes and force-deletes those on a lost node (`status/node_loss.py`).

Invariants (property-tested): at most `replicas` creations, indices in range, never a name still taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from trainsmart.api import CleanPodPolicy, TrainingJob, TrainingJobPhase, TrainingJobStatus
from trainsmart.names import job_name, pod_name
from trainsmart.status.node_loss import StuckPod, next_candidate_in, stuck_pods
from trainsmart.status.podview import PodView, view_pods

FINISHED_PHASES: Final = frozenset({TrainingJobPhase.SUCCEEDED, TrainingJobPhase.FAILED})


@dataclass(frozen=True)
class Plan:
    """What the I/O side should do now; every field is safe to act on in any order after status is patched."""

    create: tuple[int, ...] = ()
    """Replica indices to create now (`build_worker_pod(job, index, attempt, settings)`)."""
    attempt: int = 0
    """The attempt label for the pods in `create` (= status.restarts)."""
    delete: tuple[str, ...] = ()
    """Pod names to delete (none already terminating); delete with the pod's grace period."""
    restart_all: bool = False
    """The deletions replace every replica (a restart, a disruption or a resume is in progress)."""
    waiting_for: tuple[str, ...] = ()
    """Pods still terminating that hold creation back; their deletion events trigger the next reconcile."""
    terminal: bool = False
    """The job has succeeded or failed: no pod will ever be created for it again."""
    delete_job: bool = False
    """`ttlSecondsAfterFinished` has passed: delete the TrainingJob (its children go by owner reference)."""
    ensure_children: bool = True
    """The headless Service, report-token Secret and checkpoint PVC should exist (create if absent)."""
    requeue_after: float | None = None
    """Seconds until a deadline or TTL falls due, or a terminating pod's node deserves a look: reconcile
    again then, even without any event."""
    stuck: tuple[StuckPod, ...] = ()
    """Terminating pods whose deletion has waited long enough to look at their node (force-deleted, after
    the status patch, when the node is lost)."""


def _seconds_until(moment: datetime, now: datetime) -> float:
    return max((moment - now).total_seconds(), 0.0)


def _cleanup(views: Sequence[PodView], policy: CleanPodPolicy) -> tuple[str, ...]:
    if policy == CleanPodPolicy.NONE:
        return ()
    if policy == CleanPodPolicy.ALL:
        return tuple(view.name for view in views if not view.terminating)
    return tuple(view.name for view in views if not view.terminating and not view.finished)


def _finished_plan(job: TrainingJob, views: Sequence[PodView], status: TrainingJobStatus, now: datetime) -> Plan:
    policy = job.spec.run_policy
    delete_job, requeue = False, None
    if policy.ttl_seconds_after_finished is not None and status.completion_time is not None:
        due = status.completion_time + timedelta(seconds=policy.ttl_seconds_after_finished)
        delete_job = due <= now
        requeue = None if delete_job else _seconds_until(due, now)
    return Plan(
        delete=_cleanup(views, policy.clean_pod_policy),
        attempt=status.restarts,
        terminal=True,
        delete_job=delete_job,
        ensure_children=False,
        requeue_after=requeue,
    )


def _deadline_requeue(job: TrainingJob, status: TrainingJobStatus, now: datetime) -> float | None:
    deadline = job.spec.run_policy.active_deadline_seconds
    if deadline is None or status.start_time is None:
        return None
    return _seconds_until(status.start_time + timedelta(seconds=deadline), now)


def plan_trainingjob(
    job: TrainingJob, pods: Sequence[Mapping[str, Any]], status: TrainingJobStatus, now: datetime
) -> Plan:
    """The actions that move the job's pods toward what `status` (just derived) says they should be."""
    views = view_pods(pods, job_name(job))
    plan = _phase_plan(job, views, status, now)
    look = next_candidate_in(views, now)
    if look is None:
        return plan
    requeue = look if plan.requeue_after is None else min(plan.requeue_after, look)
    return replace(plan, stuck=stuck_pods(views, now), requeue_after=requeue)


def _phase_plan(job: TrainingJob, views: Sequence[PodView], status: TrainingJobStatus, now: datetime) -> Plan:
    if status.phase in FINISHED_PHASES:
        return _finished_plan(job, views, status, now)
    live = tuple(view.name for view in views if not view.terminating)
    terminating = tuple(view.name for view in views if view.terminating)
    attempt = status.restarts
    if status.phase == TrainingJobPhase.SUSPENDED:
        return Plan(delete=live, attempt=attempt, waiting_for=terminating, ensure_children=False)
    requeue = _deadline_requeue(job, status, now)
    if status.phase == TrainingJobPhase.RESTARTING:
        return Plan(delete=live, attempt=attempt, restart_all=True, waiting_for=terminating, requeue_after=requeue)
    replicas = job.spec.replicas
    newer = [view for view in views if view.attempt is not None and view.attempt > attempt]
    stale = [view for view in views if not view.is_current(attempt, replicas) and view not in newer]
    older = [view for view in views if view.attempt is not None and view.attempt < attempt]
    blockers = sorted({view.name for view in views if view.terminating} | {view.name for view in older + newer})
    taken = {view.name for view in views}
    name = job_name(job)
    create = () if blockers else tuple(i for i in range(replicas) if pod_name(name, i) not in taken)
    return Plan(
        create=create,
        attempt=attempt,
        delete=tuple(view.name for view in stale if not view.terminating),
        waiting_for=tuple(blockers),
        requeue_after=requeue,
    )
