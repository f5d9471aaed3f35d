"""Pods stuck Terminating on a lost node (`status/node_loss.py`, issue 13 "Node loss for real"):

- only a terminating pod bound to a node, whose deletion was asked for at least CANDIDATE_AFTER ago, is a
  candidate; the plan names it in `stuck` and asks to look again (when it becomes one, then every RECHECK_S);
- a node is lost when it is gone, tainted out-of-service, or Ready Unknown for at least the configured
  time; a kubelet that reports NotReady (False) is alive and will finish the deletion itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support import models
from support.models import iso
from trainsmart.api import TrainingJobPhase, TrainingJobStatus
from trainsmart.names import job_name
from trainsmart.settings import OperatorSettings
from trainsmart.status import plan_trainingjob
from trainsmart.status.node_loss import (
    CANDIDATE_AFTER,
    OUT_OF_SERVICE_TAINT,
    RECHECK_S,
    StuckPod,
    force_delete_message,
    judge_node,
    next_candidate_in,
    stuck_pods,
)
from trainsmart.status.podview import view_pods

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
JOB = models.make_job({"replicas": 2})
LOST_AFTER = timedelta(seconds=60)
JOB_NAME = job_name(JOB)


def replica(index: int, *, node: str = "node-a", deleted_ago: float | None = None, grace: int = 120) -> dict[str, Any]:
    pod = models.replica_pod(JOB, index, "running", settings=OperatorSettings(), started=NOW, now=NOW)
    pod["spec"]["nodeName"] = node
    if deleted_ago is not None:
        requested = NOW - timedelta(seconds=deleted_ago)
        pod["metadata"]["deletionTimestamp"] = iso(requested + timedelta(seconds=grace))
        pod["metadata"]["deletionGracePeriodSeconds"] = grace
    return pod


def node(ready: str | None, since_s: float = 0.0, taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    conditions = (
        []
        if ready is None
        else [
            {
                "type": "Ready",
                "status": ready,
                "lastTransitionTime": iso(NOW - timedelta(seconds=since_s)),
                "lastHeartbeatTime": iso(NOW - timedelta(seconds=since_s + 5)),
            }
        ]
    )
    return {"metadata": {"name": "node-a"}, "spec": {"taints": taints or []}, "status": {"conditions": conditions}}


def test_the_deletion_request_time_is_the_deletion_timestamp_less_its_grace() -> None:
    (view, _) = view_pods([replica(0, deleted_ago=30), replica(1)], JOB_NAME)
    assert view.node == "node-a" and view.deletion_requested_at == NOW - timedelta(seconds=30)


def test_only_a_bound_pod_whose_deletion_waited_long_enough_is_stuck() -> None:
    fresh = replica(0, deleted_ago=CANDIDATE_AFTER.total_seconds() - 1)
    old = replica(1, deleted_ago=CANDIDATE_AFTER.total_seconds() + 1)
    unbound = replica(1, node="", deleted_ago=300)
    assert stuck_pods(view_pods([fresh, old], JOB_NAME), NOW) == (StuckPod(old["metadata"]["name"], "node-a"),)
    assert stuck_pods(view_pods([unbound], JOB_NAME), NOW) == ()
    assert stuck_pods(view_pods([replica(0), replica(1)], JOB_NAME), NOW) == ()


def test_the_next_look_is_when_a_pod_becomes_a_candidate_then_every_recheck() -> None:
    name = JOB_NAME
    assert next_candidate_in(view_pods([replica(0)], name), NOW) is None
    assert next_candidate_in(view_pods([replica(0, deleted_ago=4)], name), NOW) == pytest.approx(
        CANDIDATE_AFTER.total_seconds() - 4
    )
    assert next_candidate_in(view_pods([replica(0, deleted_ago=400)], name), NOW) == RECHECK_S


@pytest.mark.parametrize("phase", [TrainingJobPhase.RESTARTING, TrainingJobPhase.PENDING, TrainingJobPhase.SUCCEEDED])
def test_the_plan_names_stuck_pods_in_every_phase_and_looks_again(phase: TrainingJobPhase) -> None:
    pods = [replica(0, deleted_ago=200), replica(1, node="node-b", deleted_ago=200)]
    status = TrainingJobStatus.model_validate({"phase": phase, "restarts": 1})
    plan = plan_trainingjob(JOB, pods, status, NOW)
    assert {pod.node for pod in plan.stuck} == {"node-a", "node-b"}
    assert plan.requeue_after == RECHECK_S
    assert not plan.create


@pytest.mark.parametrize(
    ("state", "lost"),
    [
        (None, True),
        (node("Unknown", since_s=61), True),
        (node("Unknown", since_s=59), False),
        (node("False", since_s=3600), False),
        (node("True"), False),
        (node("True", taints=[{"key": OUT_OF_SERVICE_TAINT, "effect": "NoExecute"}]), True),
        (node(None), False),
    ],
    ids=["deleted", "unknown-long", "unknown-recent", "not-ready-kubelet-alive", "ready", "out-of-service", "no-ready"],
)
def test_a_node_is_lost_only_when_gone_out_of_service_or_silent_long_enough(
    state: dict[str, Any] | None, lost: bool
) -> None:
    assert judge_node(state, NOW, LOST_AFTER).lost is lost


def test_the_event_says_what_was_done_why_and_the_risk() -> None:
    verdict = judge_node(node("Unknown", since_s=90), NOW, LOST_AFTER)
    message = force_delete_message("castaway-1", "node-a", verdict)
    assert "castaway-1" in message and "node-a" in message and "Ready Unknown for 90 s" in message
    assert "force-deleted" in message and "cut off" in message
