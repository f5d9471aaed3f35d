"""A node lost for real under a running TrainingJob (issue 13, "Node loss for real").

The test runs its own node agent with three one-GPU nodes (a GPU product of their own, which the job
selects), so the job's two replicas land on two of them and the third is free. After the first checkpoint
the node of replica 1 is taken down as a machine fails (`node_control.py`: heartbeats stop, its processes
are SIGKILLed) and never comes back. Pins:
- the node-lifecycle controller marks the node NotReady within the local cluster's bound;
- the job restarts all replicas (its surviving rank usually fails first: the lost rank's sockets close);
- the pod on the lost node stays Terminating (no kubelet can confirm its end) until the operator, once the
  node has been silent for its force-delete bound, force-deletes it with a Warning Event naming the node
  (`status/node_loss.py`);
- the new replicas start on the two nodes left, resume from the checkpoint (the epoch counter continues)
  and the job Succeeds, all while the lost node stays down.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

from support.kubeapi import job_pods
from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV, SLOW_DIGITS, trainingjob_body
from support.waiting import wait_for
from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.controlplane import NODE_MONITOR_GRACE_S, NODE_MONITOR_PERIOD_S

if TYPE_CHECKING:
    from tests.e2e.conftest import AgentStarter, RunningAgent

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

PRODUCT = "NVIDIA-NODE-LOSS-TEST"
JOB = "castaway"


@pytest.fixture
def agent(start_node_agent: AgentStarter, api_client: client.ApiClient, tmp_path: Path) -> Iterator[RunningAgent]:
    core = client.CoreV1Api(api_client)
    prefix = f"lost-{uuid.uuid4().hex[:6]}"
    extra = ["--gpu-product", PRODUCT, "--no-provisioner"]
    running = start_node_agent(tmp_path / "agent", nodes=3, gpus_per_node=1, prefix=prefix, extra_args=extra)
    try:
        yield running
    finally:
        running.stop()
        for name in running.node_names:
            try:
                core.delete_node(name)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def claim(api_client: client.ApiClient, namespace: str, tmp_path: Path) -> Iterator[str]:
    """A checkpoint claim on a hostPath PV: every simulated node sees the same directory."""
    core = client.CoreV1Api(api_client)
    pv = f"ckpt-{uuid.uuid4().hex[:8]}"
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual"}
    (tmp_path / "ckpt").mkdir()
    core.create_persistent_volume(
        {
            "metadata": {"name": pv},
            "spec": {
                **spec,
                "hostPath": {"path": str(tmp_path / "ckpt")},
                "claimRef": {"namespace": namespace, "name": "ckpt"},
            },
        }
    )
    modes = {"accessModes": ["ReadWriteMany"], "storageClassName": "manual"}
    core.create_namespaced_persistent_volume_claim(
        namespace, {"metadata": {"name": "ckpt"}, "spec": {**modes, "resources": {"requests": {"storage": "1Gi"}}}}
    )
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("ckpt", namespace).status.phase == "Bound", 30, "bind"
    )
    try:
        yield "ckpt"
    finally:
        core.delete_persistent_volume(pv)


def status_of(objects: client.CustomObjectsApi, namespace: str) -> dict[str, Any]:
    job = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, JOB)
    return dict(job.get("status") or {})


def node_ready(core: client.CoreV1Api, name: str) -> str:
    conditions = core.read_node(name).status.conditions or []
    return next((c.status for c in conditions if c.type == "Ready"), "Unknown")


def test_job_loses_a_node_and_completes_elsewhere_from_its_checkpoint(
    operator_process: Any, agent: RunningAgent, api_client: client.ApiClient, namespace: str, claim: str
) -> None:
    core, objects = client.CoreV1Api(api_client), client.CustomObjectsApi(api_client)
    spec = {
        "replicas": 2,
        "gpusPerReplica": 1,
        "nodeSelector": {"nvidia.com/gpu.product": PRODUCT},
        "tolerations": GPU_TOLERATIONS,
        "checkpoint": {"claimName": claim},
        "trainer": {"env": ONE_THREAD_ENV, "config": {**SLOW_DIGITS, "batchSize": 4, "epochs": 5}},
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, trainingjob_body(JOB, spec))
    wait_for(
        lambda: ((status_of(objects, namespace).get("checkpoint") or {}).get("latestEpoch") or 0) >= 1,
        90,
        "a first checkpoint",
        lambda: str(status_of(objects, namespace)),
    )
    before = {p.metadata.name: p for p in job_pods(api_client, namespace, JOB)}
    lost_node = before[f"{JOB}-1"].spec.node_name
    survivor_node = before[f"{JOB}-0"].spec.node_name
    assert lost_node != survivor_node and {lost_node, survivor_node} <= set(agent.node_names)
    saved = status_of(objects, namespace)["checkpoint"]["latestEpoch"]

    went_down = time.monotonic()
    agent.node_down(lost_node)
    bound = NODE_MONITOR_GRACE_S + 2 * NODE_MONITOR_PERIOD_S + 5  # grace, two checks, a loaded machine
    wait_for(lambda: node_ready(core, lost_node) != "True", bound, f"{lost_node} NotReady")
    assert time.monotonic() - went_down <= bound

    def restarting() -> dict[str, Any] | None:
        status = status_of(objects, namespace)
        found = [c for c in status.get("conditions") or [] if c["type"] == "Restarting" and c["status"] == "True"]
        return found[0] if found else None

    condition = wait_for(restarting, 60, "the restart", lambda: str(status_of(objects, namespace)))
    # The killed rank's sockets close at once here (its process dies on this host), so its peer usually
    # fails first with RETRYABLE_FAILURE (a counted restart); when the eviction is seen first, the restart
    # is PodsDisrupted and names the lost node.
    assert condition["reason"] in ("PodsDisrupted", "RetryableExitCode"), condition
    if condition["reason"] == "PodsDisrupted":
        assert "NodeLost" in condition["message"] and lost_node in condition["message"], condition

    def new_pods_running() -> list[Any] | None:
        pods = job_pods(api_client, namespace, JOB)
        fresh = [p for p in pods if p.metadata.uid not in {b.metadata.uid for b in before.values()}]
        running = [p for p in fresh if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return running if len(running) == 2 and len(pods) == 2 else None

    # Silent for the operator's bound (60 s) after the node controller's grace, plus a recheck period.
    fresh = wait_for(new_pods_running, 180, "two new replicas running", lambda: str(status_of(objects, namespace)))
    assert {p.spec.node_name for p in fresh} == set(agent.node_names) - {lost_node}
    assert node_ready(core, lost_node) != "True"  # it never came back
    warnings = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={JOB},reason=PodForceDeleted"
    ).items
    assert len(warnings) == 1 and warnings[0].type == "Warning", warnings
    assert f"{JOB}-1" in warnings[0].message and lost_node in warnings[0].message, warnings[0].message

    status = wait_for(
        lambda: (s := status_of(objects, namespace)).get("phase") in ("Succeeded", "Failed") and s,
        120,
        "the job to finish",
        lambda: str(status_of(objects, namespace)),
    )
    assert status["phase"] == "Succeeded", status
    assert status["restarts"] == (1 if condition["reason"] == "RetryableExitCode" else 0)
    rank0 = next(p for p in fresh if p.metadata.name == f"{JOB}-0")
    log = agent.container_log(rank0, "trainer")
    assert "resumed from" in log and "0 epochs done" not in log, log[-2000:]
    history = [point["epoch"] for point in status["metrics"]["history"]]
    assert history == sorted(set(history)) and history[-1] == 5 and saved >= 1
