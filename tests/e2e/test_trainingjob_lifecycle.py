"""TrainingJobs end to end: control plane + scheduler + node agent + `trainsmart operator` + the packaged
trainer on `digits` (small MLPs, a few epochs, so each test takes seconds of training).

Pins:
- one replica runs to Succeeded, with progress at 100 % and the final metrics in status;
- two replicas train one model together (DDP, gloo) to Succeeded; status shows an intermediate epoch
  while they run;
- a replica's trainer killed (SIGKILL) mid-training restarts all replicas once (`restarts: 1`), and the
  new attempt resumes from the checkpoint (epoch counter continues) and succeeds;
- a permanent failure (dataset path that does not exist) fails the job at once with the reason;
- the operator SIGKILLed mid-job and started again: no duplicate pods, the job completes.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import condition, job_pods
from support.manifests import FAST_DIGITS, GPU_TOLERATIONS, ONE_THREAD_ENV, SLOW_DIGITS, trainingjob_body
from support.waiting import wait_for
from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.names import ATTEMPT_LABEL, JOB_NAME_LABEL
from trainsmart_trainer import contract

pytestmark = pytest.mark.e2e


@pytest.fixture
def objects(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


@pytest.fixture
def claim(api_client: client.ApiClient, namespace: str, tmp_path: Path) -> Iterator[str]:
    """A checkpoint claim pre-bound to a PV made for it (the local cluster has no provisioner)."""
    core = client.CoreV1Api(api_client)
    pv = f"ckpt-{uuid.uuid4().hex[:8]}"
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual"}
    core.create_persistent_volume(
        {
            "metadata": {"name": pv},
            "spec": {**spec, "hostPath": {"path": str(tmp_path)}, "claimRef": {"namespace": namespace, "name": "ckpt"}},
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "ckpt"},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "manual",
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    wait_for(
        lambda: core.read_namespaced_persistent_volume_claim("ckpt", namespace).status.phase == "Bound", 30, "bind"
    )
    try:
        yield "ckpt"
    finally:
        core.delete_persistent_volume(pv)


def create_job(objects: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any]) -> None:
    spec = {"tolerations": GPU_TOLERATIONS, **spec, "trainer": {"env": ONE_THREAD_ENV, **spec.get("trainer", {})}}
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, trainingjob_body(name, spec))


def status_of(objects: client.CustomObjectsApi, namespace: str, name: str) -> dict[str, Any]:
    job = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, name)
    return dict(job.get("status") or {})


def describe(objects: client.CustomObjectsApi, namespace: str, name: str) -> str:
    """Status, pod states and the operator's log tail, for timeout messages."""
    core = client.CoreV1Api(objects.api_client)
    lines = [str(status_of(objects, namespace, name))]
    for pod in core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items:
        states = [(s.name, s.state.to_dict()) for s in pod.status.container_statuses or []]
        lines.append(f"pod {pod.metadata.name} {pod.status.phase} deleting={pod.metadata.deletion_timestamp} {states}")
    return "\n".join(lines)


def wait_phase(
    objects: client.CustomObjectsApi, namespace: str, name: str, phases: set[str], timeout: float = 120
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = status_of(objects, namespace, name)
        return status if status.get("phase") in phases else None

    return wait_for(done, timeout, f"{name} to reach {phases}", lambda: describe(objects, namespace, name))  # type: ignore[no-any-return]


def trainer_pids(namespace: str, job: str, rank: int) -> list[int]:
    """The trainer processes of one replica, found by their environment (the agent runs them on this host)."""
    wanted = {f"{contract.JOB_NAME}={job}", f"{contract.JOB_NAMESPACE}={namespace}", f"{contract.PET_NODE_RANK}={rank}"}
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = set(Path(f"/proc/{entry}/environ").read_bytes().decode(errors="replace").split("\0"))
        except OSError:
            continue
        if wanted <= environ:
            pids.append(int(entry))
    return pids


def test_one_replica_succeeds(operator_process: Any, objects: client.CustomObjectsApi, namespace: str) -> None:
    create_job(objects, namespace, "solo", {"trainer": {"config": {**FAST_DIGITS, "epochs": 2}}})
    status = wait_phase(objects, namespace, "solo", {"Succeeded", "Failed"})
    assert status["phase"] == "Succeeded", condition(status, "Failed")["message"]
    assert condition(status, "Succeeded")["status"] == "True"
    assert status["progress"]["epoch"] == 2 and status["progress"]["percent"] == 100
    assert "test_accuracy" in status["metrics"]["latest"]
    assert status["restarts"] == 0 and status["completionTime"]


def test_two_replicas_ddp_with_progress(
    operator_process: Any,
    objects: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    config = {**SLOW_DIGITS, "batchSize": 4, "epochs": 3}
    create_job(objects, namespace, "pair", {"replicas": 2, "trainer": {"config": config}})
    seen = wait_for(
        lambda: (
            (s := status_of(objects, namespace, "pair")).get("phase") == "Running"
            and 0 < (s.get("progress") or {}).get("epoch", 0) < 3
            and s
        ),
        240,  # generous: a loaded 2-core machine starts two torch processes slowly; a pass is not slowed
        "an intermediate epoch in status",
        lambda: str(status_of(objects, namespace, "pair")),
    )
    assert seen["progress"]["totalEpochs"] == 3
    assert len(job_pods(api_client, namespace, "pair")) == 2
    status = wait_phase(objects, namespace, "pair", {"Succeeded", "Failed"})
    assert status["phase"] == "Succeeded", status
    assert status["replicas"]["succeeded"] == 2


def test_killed_replica_restarts_all_and_resumes(
    operator_process: Any,
    node_agent: Any,
    objects: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
    claim: str,
) -> None:
    config = {**SLOW_DIGITS, "batchSize": 4, "epochs": 6}
    create_job(
        objects,
        namespace,
        "phoenix",
        {"replicas": 2, "checkpoint": {"claimName": claim}, "trainer": {"config": config}},
    )
    wait_for(
        lambda: ((status_of(objects, namespace, "phoenix").get("checkpoint") or {}).get("latestEpoch") or 0) >= 2,
        120,
        "a checkpoint of epoch 2",
        lambda: str(status_of(objects, namespace, "phoenix")),
    )
    pids = trainer_pids(namespace, "phoenix", 1)
    assert pids, "replica 1's trainer process not found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: status_of(objects, namespace, "phoenix").get("restarts") == 1,
        60,
        "the restart to be counted",
        lambda: str(status_of(objects, namespace, "phoenix")),
    )
    status = wait_phase(objects, namespace, "phoenix", {"Succeeded", "Failed"}, timeout=180)
    assert status["phase"] == "Succeeded", status
    assert status["restarts"] == 1
    pods = job_pods(api_client, namespace, "phoenix")
    assert {p.metadata.labels[ATTEMPT_LABEL] for p in pods} == {"1"}
    log = node_agent.container_log(next(p for p in pods if p.metadata.name == "phoenix-0"), "trainer")
    assert "resumed from" in log and "0 epochs done" not in log, log[-2000:]
    # The resumed attempt continued from the checkpoint: it reported epochs after it, up to the last.
    history = [point["epoch"] for point in status["metrics"]["history"]]
    assert history == sorted(set(history)) and history[-1] == 6


def test_permanent_failure_fails_at_once(
    operator_process: Any, objects: client.CustomObjectsApi, namespace: str
) -> None:
    config = {**FAST_DIGITS, "epochs": 1, "dataset": {"name": "tabular-csv", "path": "/nonexistent/data.csv"}}
    create_job(objects, namespace, "doomed", {"trainer": {"config": config}})
    status = wait_phase(objects, namespace, "doomed", {"Succeeded", "Failed"})
    assert status["phase"] == "Failed", status
    failed = condition(status, "Failed")
    assert failed["status"] == "True"
    assert "11" in failed["message"] or "permanent" in failed["message"].lower(), failed
    assert status["restarts"] == 0


def test_operator_killed_and_restarted_mid_job(
    operator_process: Any,
    objects: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
) -> None:
    create_job(
        objects,
        namespace,
        "steady",
        {"replicas": 2, "trainer": {"config": {**SLOW_DIGITS, "batchSize": 4, "epochs": 3}}},
    )
    wait_for(lambda: status_of(objects, namespace, "steady").get("phase") == "Running", 120, "Running")
    uids = {p.metadata.uid for p in job_pods(api_client, namespace, "steady")}
    operator_process.kill()
    operator_process.start()
    status = wait_phase(objects, namespace, "steady", {"Succeeded", "Failed"})
    assert status["phase"] == "Succeeded", status
    pods = job_pods(api_client, namespace, "steady")
    assert len(pods) == 2 and {p.metadata.uid for p in pods} == uids
    assert status["restarts"] == 0


def test_backoff_exhausted_fails(operator_process: Any, objects: client.CustomObjectsApi, namespace: str) -> None:
    trainer = {"command": ["python", "-c", "import sys; sys.exit(10)"]}  # RETRYABLE_FAILURE every time
    create_job(objects, namespace, "flaky", {"runPolicy": {"backoffLimit": 1}, "trainer": trainer})
    status = wait_phase(objects, namespace, "flaky", {"Succeeded", "Failed"})
    assert status["phase"] == "Failed"
    assert status["restarts"] == 1
    assert "backoff" in (condition(status, "Failed")["reason"] + condition(status, "Failed")["message"]).lower()


def test_deadline_fails_running_job(operator_process: Any, objects: client.CustomObjectsApi, namespace: str) -> None:
    spec = {"runPolicy": {"activeDeadlineSeconds": 3}, "trainer": {"config": {**SLOW_DIGITS, "epochs": 50}}}
    create_job(objects, namespace, "late", spec)
    status = wait_phase(objects, namespace, "late", {"Succeeded", "Failed"}, timeout=90)
    assert status["phase"] == "Failed"
    assert "deadline" in (condition(status, "Failed")["reason"] + condition(status, "Failed")["message"]).lower()


def test_ttl_deletes_finished_job(operator_process: Any, objects: client.CustomObjectsApi, namespace: str) -> None:
    spec = {"runPolicy": {"ttlSecondsAfterFinished": 2}, "trainer": {"config": {**FAST_DIGITS, "epochs": 1}}}
    create_job(objects, namespace, "brief", spec)

    def gone() -> bool:
        try:
            status_of(objects, namespace, "brief")
        except client.ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, 90, "the TTL to delete the job", lambda: describe(objects, namespace, "brief"))


def test_suspend_and_resume_from_checkpoint(
    operator_process: Any,
    node_agent: Any,
    objects: client.CustomObjectsApi,
    api_client: client.ApiClient,
    namespace: str,
    claim: str,
) -> None:
    # Batch size 1: about a second per epoch, so the suspension lands well before the last epoch.
    spec = {"checkpoint": {"claimName": claim}, "trainer": {"config": {**SLOW_DIGITS, "epochs": 10}}}
    create_job(objects, namespace, "nap", spec)
    wait_for(
        lambda: ((status_of(objects, namespace, "nap").get("checkpoint") or {}).get("latestEpoch") or 0) >= 1,
        120,
        "a first checkpoint",
        lambda: describe(objects, namespace, "nap"),
    )
    patch = {"spec": {"suspend": True}}
    objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "nap", patch)
    wait_phase(objects, namespace, "nap", {"Suspended"}, timeout=60)
    wait_for(
        lambda: not job_pods(api_client, namespace, "nap"),
        60,
        "the pods to go",
        lambda: describe(objects, namespace, "nap"),
    )
    saved = status_of(objects, namespace, "nap")["checkpoint"]["latestEpoch"]
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "nap", {"spec": {"suspend": False}}
    )
    status = wait_phase(objects, namespace, "nap", {"Succeeded", "Failed"}, timeout=120)
    assert status["phase"] == "Succeeded", describe(objects, namespace, "nap")
    assert saved >= 1 and status["progress"]["epoch"] == 10
    assert status["restarts"] == 0  # a suspension is not a failure
    log = node_agent.container_log(job_pods(api_client, namespace, "nap")[0], "trainer")
    assert f"{saved} epochs done" in log or "resumed from" in log, log[-2000:]
