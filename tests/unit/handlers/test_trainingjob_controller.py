"""When the TrainingJob reconcile may carry out its plan before patching the status.

Pins the invariant of `handlers/trainingjob_controller.py`: a restart is counted in status before any pod is
deleted. So the plan goes first only when it deletes nothing (no pod, not the job) and creates pods of
the attempt the stored status already records; a new job (no stored status) creates attempt 0 first.

And the order of the creates (issue 13, no Warning Events in a normal run): everything a pod mounts or
reads (report-token Secret, checkpoint PVC, the metrics wrapper's ConfigMap, the headless Service) is
created before the pods, those dependencies concurrently with each other, then the pods concurrently; a
reconcile repeated, or run by a restarted operator, creates nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from trainsmart.api import TrainingJobConditionType, TrainingJobPhase, TrainingJobStatus
from trainsmart.api.conditions import ConditionStatus, make_condition
from trainsmart.handlers.controller_core import RESYNC_S
from trainsmart.handlers.podcache import PodCache
from trainsmart.handlers.trainingjob_controller import (
    IDLE_RESYNC_S,
    TrainingJobController,
    may_act_before_writing_status,
)
from trainsmart.report_endpoint import JobKey, ReportInbox, TokenVerifier
from trainsmart.settings import OperatorSettings
from trainsmart.status import Plan


@pytest.mark.parametrize(
    ("stored", "derived", "plan", "first"),
    [
        (None, 0, Plan(create=(0, 1), attempt=0), True),
        (0, 0, Plan(create=(1,), attempt=0), True),
        (2, 2, Plan(create=(0,), attempt=2), True),
        (0, 0, Plan(), True),
        (0, 1, Plan(delete=("job-0", "job-1"), attempt=1, restart_all=True), False),
        (1, 1, Plan(delete=("job-2",), attempt=1), False),
        (0, 1, Plan(create=(0, 1), attempt=1), False),
        (None, 1, Plan(create=(0,), attempt=1), False),
        (0, 0, Plan(terminal=True, delete_job=True, ensure_children=False), False),
    ],
    ids=[
        "new job creates attempt 0",
        "recreate a missing replica",
        "resume at the stored attempt",
        "nothing to do",
        "restart deletes every replica",
        "stale replica deleted",
        "attempt not stored yet",
        "unreadable stored status, attempt 1",
        "ttl deletes the job",
    ],
)
def test_the_plan_goes_first_only_when_it_deletes_nothing_and_the_attempt_is_stored(
    stored: int | None, derived: int, plan: Plan, first: bool
) -> None:
    previous = TrainingJobStatus(restarts=stored) if stored is not None else None
    assert may_act_before_writing_status(previous, TrainingJobStatus(restarts=derived), plan) is first


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_pods_of_a_restart_or_resume_wait_for_the_status_that_ends_the_transition() -> None:
    """An operator killed between creating the new run's pods and the patch would leave a stored status
    still in transition, and its successor would delete those pods as the old run's (a duplicate pod)."""
    create = Plan(create=(0, 1), attempt=1)
    restarting = TrainingJobStatus(
        phase=TrainingJobPhase.RESTARTING,
        restarts=1,
        conditions=[
            make_condition(
                None, TrainingJobConditionType.RESTARTING, ConditionStatus.TRUE, "RetryableExitCode", "restarting", NOW
            )
        ],
    )
    assert may_act_before_writing_status(restarting, TrainingJobStatus(restarts=1), create) is False
    suspended = TrainingJobStatus(phase=TrainingJobPhase.SUSPENDED, restarts=1)
    assert may_act_before_writing_status(suspended, TrainingJobStatus(restarts=1), create) is False
    running = TrainingJobStatus(phase=TrainingJobPhase.RUNNING, restarts=1)
    assert may_act_before_writing_status(running, TrainingJobStatus(restarts=1), create) is True


# ---- what a pod depends on exists before the pod (issue 13: no Warning Events in a normal run) -------------


class OrderRecordingKube:
    """A stand-in for `Kube` that records when each create starts and finishes. Every create yields to the
    event loop a few times before it answers, as a round-trip to the API would, so creates that are sent
    concurrently overlap and ones sent one after another do not."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str]] = []  # (start|end, kind, name)
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}

    async def create_if_absent(self, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        self.log.append(("start", kind, name))
        for _ in range(3):
            await asyncio.sleep(0)
        self.log.append(("end", kind, name))
        if (kind, name) in self.stored:
            return None
        created = {**manifest, "metadata": {**manifest["metadata"], "uid": f"uid-{name}", "resourceVersion": "1"}}
        self.stored[(kind, name)] = created
        return created

    async def list_job_pods(self, namespace: str, job: str | None) -> list[dict[str, Any]]:
        return [obj for (kind, _), obj in self.stored.items() if kind == "Pod"]

    async def patch_status(
        self, plural: str, namespace: str, name: str, resource_version: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        return {**JOB_BODY, "metadata": {**JOB_BODY["metadata"], "resourceVersion": "2"}, "status": dict(patch)}

    async def post_event(self, regarding: Any, type_: str, reason: str, message: str) -> None:
        return None

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        return dict(JOB_BODY)


JOB_BODY: dict[str, Any] = {
    "apiVersion": "trainsmart.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "deps", "namespace": "ml", "uid": "job-uid", "generation": 1, "resourceVersion": "1"},
    "spec": {
        "replicas": 3,
        "checkpoint": {"size": "1Gi"},
        "trainer": {"command": ["python3", "train.py"], "metrics": {"format": "json"}},
    },
}
DEPENDENCIES = {"Secret", "PersistentVolumeClaim", "ConfigMap", "Service"}


def controller_with(kube: OrderRecordingKube) -> TrainingJobController:
    settings = OperatorSettings(report_url="http://operator.example:8080/v1/reports")

    async def no_token(namespace: str, job: str) -> str | None:
        return None

    return TrainingJobController(
        kube,  # type: ignore[arg-type]  # duck-typed: only the calls a reconcile makes
        settings,
        ReportInbox(),
        TokenVerifier(no_token),
        pods=PodCache(kube.list_job_pods),
    )


async def first_reconcile(kube: OrderRecordingKube, controller: TrainingJobController) -> None:
    key = JobKey("ml", "deps")
    controller.offer(key, JOB_BODY)
    await controller.reconcile(key)


@pytest.mark.asyncio
async def test_every_dependency_of_the_pods_is_created_first_concurrently_then_the_pods() -> None:
    kube = OrderRecordingKube()
    await first_reconcile(kube, controller_with(kube))
    kinds = {kind for _, kind, _ in kube.log}
    assert DEPENDENCIES | {"Pod"} <= kinds, kube.log
    last_dependency_end = max(i for i, (what, kind, _) in enumerate(kube.log) if what == "end" and kind != "Pod")
    first_pod_start = min(i for i, (what, kind, _) in enumerate(kube.log) if what == "start" and kind == "Pod")
    assert last_dependency_end < first_pod_start, f"a pod was sent before what it mounts existed: {kube.log}"
    # concurrently: every dependency was sent before the first one was answered; likewise the pods
    first_end = next(i for i, (what, _, _) in enumerate(kube.log) if what == "end")
    assert {kind for what, kind, _ in kube.log[:first_end] if what == "start"} == DEPENDENCIES, kube.log
    pod_starts = [i for i, (what, kind, _) in enumerate(kube.log) if what == "start" and kind == "Pod"]
    first_pod_end = min(i for i, (what, kind, _) in enumerate(kube.log) if what == "end" and kind == "Pod")
    assert len(pod_starts) == 3 and max(pod_starts) < first_pod_end, kube.log


@pytest.mark.asyncio
async def test_a_repeated_or_restarted_reconcile_creates_nothing_twice() -> None:
    kube = OrderRecordingKube()
    await first_reconcile(kube, controller_with(kube))
    stored = dict(kube.stored)
    await first_reconcile(kube, controller_with(kube))  # a new operator process: nothing remembered
    assert kube.stored == stored
    assert sorted(name for kind, name in stored if kind == "Pod") == ["deps-0", "deps-1", "deps-2"]


# ---- resync (issue 13's scale suite: every suspended job cost a GET and a pod LIST a minute) ----------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("suspend", "every"), [(True, IDLE_RESYNC_S), (False, RESYNC_S)])
async def test_a_suspended_job_without_pods_is_resynced_rarely_an_active_one_every_minute(
    suspend: bool, every: float
) -> None:
    kube = OrderRecordingKube()
    controller = controller_with(kube)
    key = JobKey("ml", "deps")
    controller.offer(key, {**JOB_BODY, "spec": {**JOB_BODY["spec"], "suspend": suspend}})
    assert await controller.reconcile(key) == every
    assert any(kind == "Pod" for kind, _ in kube.stored) is not suspend
