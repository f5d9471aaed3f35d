"""A healthy job is quiet: no Warning Event from apply to Succeeded (issue 13).

Control plane + scheduler + node agent + `trainsmart operator`. The agent plays the kubelet: a pod that
reaches it before what it mounts or reads exists gets the Warning Events a kubelet would post (`Failed`
with `secret "..." not found`, `MountVolume.SetUp failed: persistentvolumeclaim "..." not found`), and the
scheduler posts FailedScheduling `persistentvolumeclaim "..." not found` for a pod whose claim does not
exist yet. Anyone alerting on Warning Events would be paged by every healthy job.

Pins:
- a 2-replica job with the report-token Secret and a checkpoint on a claim that is already bound runs to
  Succeeded with not a single Warning Event in its namespace (all of them listed when there is one), bar
  the endpoint controller's own write conflict, which it retries (`endpoint_controller_conflict`);
- a 2-replica job with an operator-made checkpoint claim (`checkpoint.size`) runs to Succeeded with no
  Warning Event saying that something the pods refer to was not found, nor any FailedMount or Failed.
  Not "no Warning at all": the local cluster's `trainsmart-local` StorageClass binds `Immediate`, so the
  scheduler reports `pod has unbound immediate PersistentVolumeClaims` until the agent's provisioner has
  made the volume, however early the claim is created (what any Immediate class does on a real cluster;
  `WaitForFirstConsumer`, the usual default there, does not).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import condition, create_job, get_job, status_of, warning_events
from support.manifests import FAST_DIGITS, GPU_TOLERATIONS, ONE_THREAD_ENV
from support.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def bound_claim(api_client: client.ApiClient, namespace: str, tmp_path: Path) -> Iterator[str]:
    """A checkpoint claim pre-bound to a PV made for it, Bound before the job exists."""
    core = client.CoreV1Api(api_client)
    pv = f"quiet-{uuid.uuid4().hex[:8]}"
    spec = {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "manual"}
    tmp_path.chmod(0o777)  # the trainer runs as a non-root user
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
                "resources": {"requests": spec["capacity"]},
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


def run_to_success(api_client: client.ApiClient, namespace: str, name: str, checkpoint: dict[str, Any]) -> None:
    spec = {
        "replicas": 2,
        "tolerations": GPU_TOLERATIONS,
        "checkpoint": checkpoint,
        "trainer": {"env": ONE_THREAD_ENV, "config": {**FAST_DIGITS, "epochs": 2}},
    }
    create_job(api_client, namespace, name, spec)

    def finished() -> dict[str, Any] | None:
        job = get_job(api_client, namespace, name)
        return job if status_of(job).get("phase") in {"Succeeded", "Failed"} else None

    job = wait_for(finished, 180, f"{name} to finish", lambda: str(status_of(get_job(api_client, namespace, name))))
    assert status_of(job)["phase"] == "Succeeded", condition(job, "Failed").get("message")


def listed(events: list[Any]) -> str:
    return "\n".join(
        f"  {e.involved_object.kind}/{e.involved_object.name} {e.reason} "
        f"({e.reporting_component or (e.source and e.source.component) or '?'}): {e.message}"
        for e in events
    )


def test_healthy_job_posts_no_warning_event(
    operator_process: Any, api_client: client.ApiClient, namespace: str, bound_claim: str
) -> None:
    run_to_success(api_client, namespace, "quiet", {"claimName": bound_claim})
    warnings = [e for e in warning_events(api_client, namespace) if not endpoint_controller_conflict(e)]
    assert not warnings, f"{len(warnings)} Warning Event(s) for a healthy job:\n{listed(warnings)}"


def endpoint_controller_conflict(event: Any) -> bool:
    """kube-controller-manager's endpoint controller, on a loaded machine, sometimes writes an Endpoints
    object from a stale cache, gets a resourceVersion conflict, posts FailedToUpdateEndpoint and retries
    (a clean-clone CI rehearsal saw one for the headless Service). Nothing of ours writes Endpoints, and the
    controller's retry succeeds, so this one is the control plane's own and not a sign of the job."""
    return (
        event.reason == "FailedToUpdateEndpoint"
        and (event.source.component if event.source else "") == "endpoint-controller"
        and "the object has been modified" in (event.message or "")
    )


def test_operator_made_claim_is_never_missing(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    run_to_success(api_client, namespace, "sized", {"size": "64Mi"})
    warnings = warning_events(api_client, namespace)
    missing = [e for e in warnings if "not found" in (e.message or "") or e.reason in {"FailedMount", "Failed"}]
    assert not missing, (
        f"something the pods refer to was missing:\n{listed(missing)}\nall Warnings:\n{listed(warnings)}"
    )
