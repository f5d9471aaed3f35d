"""The reconcile decision: which pods to create and delete, and when the job is done or to be deleted.

Pins:
- fresh job -> create every replica at attempt status.restarts; partial -> create the missing ones only;
- Restarting -> delete every live pod, create nothing until all are gone (waiting_for lists them);
- pods of an older attempt, or terminating pods, hold creation back; stray pods (index out of range) are
  deleted; pods of a newer attempt than the status knows are left alone and waited for;
- Succeeded/Failed -> cleanPodPolicy All / Running / None; TTL -> requeue until due, then delete the job;
- Suspended -> delete every pod, create nothing; a deadline asks for a requeue when it falls due;
- a simulated cluster driven by derive + plan goes through a retryable failure to success with exactly
  one restart, the new pods at attempt 1;
- properties (hypothesis): never more than `replicas` creations, never a taken name, never a creation
  while a pod terminates or an older attempt remains, never a creation for a finished job, and derive is
  idempotent on any pod set.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support import models
from support.models import iso
from trainsmart.api import TrainingJob, TrainingJobPhase, TrainingJobStatus
from trainsmart.settings import OperatorSettings
from trainsmart.status import Plan, derive_trainingjob_status, plan_trainingjob

SETTINGS = OperatorSettings()
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
Phase = TrainingJobPhase


def make_job(spec: dict[str, Any] | None = None) -> TrainingJob:
    return models.make_job({"replicas": 3, **(spec or {})})


pod = partial(models.replica_pod, settings=SETTINGS, started=T0, finished=T0 + timedelta(minutes=1), now=NOW)
"""A replica pod with a status: pending, running or exited (with `code`)."""


def status(phase: Phase | None, restarts: int = 0, **extra: Any) -> TrainingJobStatus:
    return TrainingJobStatus.model_validate({"phase": phase, "restarts": restarts} | extra)


JOB = make_job()


@pytest.mark.parametrize(
    ("pods", "current", "expected"),
    [
        ([], status(None), Plan(create=(0, 1, 2))),
        ([], status(Phase.PENDING, 2), Plan(create=(0, 1, 2), attempt=2)),
        ([pod(JOB, 1, "pending")], status(Phase.PENDING), Plan(create=(0, 2))),
        ([pod(JOB, i) for i in range(3)], status(Phase.RUNNING), Plan()),
        (
            [pod(JOB, 0), pod(JOB, 1, "exited", code=10), pod(JOB, 2, deleting=True)],
            status(Phase.RESTARTING, 1),
            Plan(delete=("mnist-0", "mnist-1"), attempt=1, restart_all=True, waiting_for=("mnist-2",)),
        ),
        (
            [pod(JOB, 0, deleting=True)],
            status(Phase.PENDING, 1),
            Plan(attempt=1, waiting_for=("mnist-0",)),
        ),
        (
            [pod(JOB, 1, "exited", code=13, attempt=0)],
            status(Phase.PENDING, 1),
            Plan(attempt=1, delete=("mnist-1",), waiting_for=("mnist-1",)),
        ),
        (
            [pod(JOB, 0, attempt=2)],
            status(Phase.PENDING, 1),
            Plan(attempt=1, waiting_for=("mnist-0",)),
        ),
        (
            [pod(JOB, i) for i in range(3)],
            status(Phase.SUSPENDED),
            Plan(delete=("mnist-0", "mnist-1", "mnist-2"), ensure_children=False),
        ),
    ],
    ids=[
        "fresh",
        "fresh-after-restart",
        "partial",
        "steady",
        "restarting",
        "terminating-blocks",
        "older-attempt",
        "newer-attempt",
        "suspended",
    ],
)
def test_plan(pods: list[dict[str, Any]], current: TrainingJobStatus, expected: Plan) -> None:
    assert plan_trainingjob(JOB, pods, current, NOW) == expected


def test_stray_pods_are_deleted_without_blocking() -> None:
    two = make_job({"replicas": 2})
    pods = [pod(JOB, 2), pod(JOB, 0)]
    assert plan_trainingjob(two, pods, status(Phase.PENDING), NOW) == Plan(create=(1,), delete=("mnist-2",))


FINISHED = [pod(JOB, 0, "exited"), pod(JOB, 1), pod(JOB, 2, deleting=True)]


@pytest.mark.parametrize(
    ("policy", "deleted"),
    [("All", ("mnist-0", "mnist-1")), ("Running", ("mnist-1",)), ("None", ())],
)
@pytest.mark.parametrize("phase", [Phase.SUCCEEDED, Phase.FAILED])
def test_cleanup(policy: str, deleted: tuple[str, ...], phase: Phase) -> None:
    job = make_job({"runPolicy": {"cleanPodPolicy": policy}})
    plan = plan_trainingjob(job, FINISHED, status(phase, completionTime=iso(NOW)), NOW)
    assert plan == Plan(delete=deleted, terminal=True, ensure_children=False)


@pytest.mark.parametrize(
    ("ttl", "now", "delete_job", "requeue"),
    [
        (None, NOW + timedelta(days=30), False, None),
        (3600, NOW + timedelta(minutes=15), False, 2700.0),
        (3600, NOW + timedelta(hours=1), True, None),
        (0, NOW, True, None),
    ],
)
def test_ttl(ttl: int | None, now: datetime, delete_job: bool, requeue: float | None) -> None:
    job = make_job({"runPolicy": {"ttlSecondsAfterFinished": ttl}})
    plan = plan_trainingjob(job, [], status(Phase.SUCCEEDED, completionTime=iso(NOW)), now)
    assert (plan.terminal, plan.delete_job, plan.requeue_after) == (True, delete_job, requeue)


def test_deadline_requeue() -> None:
    job = make_job({"runPolicy": {"activeDeadlineSeconds": 3600}})
    pods = [pod(job, i) for i in range(3)]
    plan = plan_trainingjob(job, pods, status(Phase.RUNNING, startTime=iso(T0)), NOW)
    assert plan.requeue_after == 3000.0
    assert plan_trainingjob(job, pods, status(Phase.RUNNING), NOW).requeue_after is None


class FakeCluster:
    """Pods of one job; deletions take one tick to complete, as with a grace period."""

    def __init__(self, job: TrainingJob) -> None:
        self.job = job
        self.pods: dict[str, dict[str, Any]] = {}
        self.status: TrainingJobStatus | None = None
        self.now = NOW

    def reconcile(self) -> Plan:
        self.now += timedelta(seconds=10)
        self.pods = {name: p for name, p in self.pods.items() if "deletionTimestamp" not in p["metadata"]}
        pods = list(self.pods.values())
        self.status = derive_trainingjob_status(self.job, pods, self.status, [], self.now)
        plan = plan_trainingjob(self.job, pods, self.status, self.now)
        for name in plan.delete:
            self.pods[name]["metadata"]["deletionTimestamp"] = iso(self.now)
        for index in plan.create:
            created = pod(self.job, index, "pending", attempt=plan.attempt)
            self.pods[created["metadata"]["name"]] = created
        return plan

    def set(self, index: int, state: str, code: int = 0) -> None:
        current = self.pods[f"mnist-{index}"]
        attempt = int(current["metadata"]["labels"]["trainsmart.dev/attempt"])
        self.pods[f"mnist-{index}"] = pod(self.job, index, state, attempt=attempt, code=code)


def test_simulated_failure_restart_and_success() -> None:
    cluster = FakeCluster(make_job({"replicas": 2}))
    assert cluster.reconcile().create == (0, 1)
    for i in range(2):
        cluster.set(i, "running")
    assert cluster.reconcile() == Plan()
    assert cluster.status is not None and cluster.status.phase == Phase.RUNNING
    cluster.set(1, "exited", code=10)
    plan = cluster.reconcile()
    assert plan.restart_all and set(plan.delete) == {"mnist-0", "mnist-1"}
    assert (cluster.status.phase, cluster.status.restarts) == (Phase.RESTARTING, 1)
    plan = cluster.reconcile()  # the old pods are gone now
    assert plan.create == (0, 1) and plan.attempt == 1
    assert (cluster.status.phase, cluster.status.restarts) == (Phase.PENDING, 1)
    for i in range(2):
        assert cluster.pods[f"mnist-{i}"]["metadata"]["labels"]["trainsmart.dev/attempt"] == "1"
        cluster.set(i, "running")
    cluster.reconcile()
    assert cluster.status.phase == Phase.RUNNING
    for i in range(2):
        cluster.set(i, "exited", code=0)
    plan = cluster.reconcile()
    assert (cluster.status.phase, cluster.status.restarts) == (Phase.SUCCEEDED, 1)
    assert plan.terminal and plan.delete == ()


def test_simulated_eviction_is_recreated_without_counting() -> None:
    cluster = FakeCluster(make_job({"replicas": 2}))
    cluster.reconcile()
    for i in range(2):
        cluster.set(i, "running")
    cluster.reconcile()
    del cluster.pods["mnist-1"]  # deleted and gone between two reconciles
    plan = cluster.reconcile()
    assert cluster.status is not None
    assert (cluster.status.phase, cluster.status.restarts) == (Phase.RESTARTING, 0)
    assert plan.delete == ("mnist-0",)
    assert cluster.reconcile().create == (0, 1)
    assert cluster.status.restarts == 0


# ---- properties -------------------------------------------------------------------------------------------

POD_STATES = st.sampled_from(["pending", "running", "exited-0", "exited-10", "exited-11", "exited-13"])


@st.composite
def pod_sets(draw: st.DrawFn) -> tuple[TrainingJob, list[dict[str, Any]]]:
    replicas = draw(st.integers(1, 4))
    job = make_job({"replicas": replicas, "runPolicy": {"backoffLimit": draw(st.integers(0, 3))}})
    wide = make_job({"replicas": 6})  # lets strays with an index beyond `replicas` exist
    pods: dict[str, dict[str, Any]] = {}
    for index in draw(st.sets(st.integers(0, 5), max_size=6)):
        state = draw(POD_STATES)
        kind, _, code = state.partition("-")
        made = pod(
            wide, index, kind, attempt=draw(st.integers(0, 3)), code=int(code or 0), deleting=draw(st.booleans())
        )
        pods[made["metadata"]["name"]] = made
    return job, list(pods.values())


PHASES = st.sampled_from([None, *TrainingJobPhase])


@settings(max_examples=150, deadline=None)
@given(pod_sets(), PHASES, st.integers(0, 3))
def test_plan_invariants(case: tuple[TrainingJob, list[dict[str, Any]]], phase: Phase | None, restarts: int) -> None:
    job, pods = case
    current = status(phase, restarts, completionTime=iso(NOW))
    plan = plan_trainingjob(job, pods, current, NOW)
    taken = {p["metadata"]["name"] for p in pods}
    terminating = {p["metadata"]["name"] for p in pods if "deletionTimestamp" in p["metadata"]}
    assert len(plan.create) == len(set(plan.create)) <= job.spec.replicas
    assert all(0 <= index < job.spec.replicas for index in plan.create)
    assert not {f"mnist-{index}" for index in plan.create} & taken
    assert not set(plan.delete) & terminating
    assert set(plan.delete) <= taken
    if plan.create:
        assert not terminating
        assert all(int(p["metadata"]["labels"]["trainsmart.dev/attempt"]) == restarts for p in pods)
        assert plan.attempt == restarts
    if phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.SUSPENDED, Phase.RESTARTING):
        assert plan.create == ()
    if phase in (Phase.SUCCEEDED, Phase.FAILED, Phase.SUSPENDED):
        assert not plan.ensure_children  # nothing will run: no Service, Secret or PVC is created for it


@settings(max_examples=150, deadline=None)
@given(pod_sets(), PHASES, st.integers(0, 3), st.booleans())
def test_derive_is_idempotent_and_never_loses_restarts(
    case: tuple[TrainingJob, list[dict[str, Any]]], phase: Phase | None, restarts: int, running: bool
) -> None:
    job, pods = case
    conditions = [{"type": "Running", "status": "True" if running else "False", "reason": "R", "message": "m"}]
    previous = status(phase, restarts, conditions=conditions)
    derived = derive_trainingjob_status(job, pods, previous, [], NOW)
    assert derived.restarts >= restarts
    assert (
        derived.restarts <= max([restarts, *(int(p["metadata"]["labels"]["trainsmart.dev/attempt"]) for p in pods)]) + 1
    )
    assert derive_trainingjob_status(job, pods, derived, [], NOW) == derived
    plan = plan_trainingjob(job, pods, derived, NOW)
    assert len(plan.create) <= job.spec.replicas
