"""GitOps: the operator never writes what a user (or Argo CD) applied, so synced objects never drift.

A TrainingJob is created the way Argo CD creates it (its own field manager, its tracking label and
annotation) and run to Succeeded by the real operator on the local cluster.

Pins:
- after the run, `spec`, `metadata.generation`, labels and annotations are exactly what was applied;
- every managedFields entry of another manager than the applier's owns fields under `status` only;
- the job's pods do not inherit its labels (Argo CD's tracking label would make them look like resources
  of the Application, to be pruned).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.builders import JOB_NAME_LABEL

pytestmark = pytest.mark.e2e

APPLIER = "argocd-controller"
TRACKING_LABEL = {"app.kubernetes.io/instance": "ml-team-training"}
TRACKING_ANNOTATION = {"argocd.argoproj.io/tracking-id": "ml-team-training:trainsmart.dev/TrainingJob:x/gitops"}
SPEC = {
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "trainer": {
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "config": {"dataset": {"name": "digits"}, "model": {"name": "mlp", "hiddenSizes": [32]}, "epochs": 1},
    },
}


def field_paths(fields: dict[str, Any], prefix: str = "") -> list[str]:
    """The leaf paths of a managedFields fieldsV1 tree, e.g. `f:status.f:phase`."""
    paths = []
    for key, value in fields.items():
        path = f"{prefix}.{key}" if prefix else key
        paths += field_paths(value, path) if value else [path]
    return paths


def test_a_run_to_completion_changes_nothing_but_status(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": "gitops", "labels": TRACKING_LABEL, "annotations": TRACKING_ANNOTATION},
        "spec": SPEC,
    }
    created = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, body, field_manager=APPLIER
    )
    deadline = time.monotonic() + 180
    while True:
        job = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "gitops")
        if (job.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            break
        assert time.monotonic() < deadline, f"the job did not finish: {job.get('status')}"
        time.sleep(0.5)
    assert job["status"]["phase"] == "Succeeded", job["status"]
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}=gitops")

    assert job["spec"] == created["spec"]
    assert job["metadata"]["generation"] == created["metadata"]["generation"] == 1
    assert job["metadata"]["labels"] == TRACKING_LABEL
    assert job["metadata"].get("annotations") == TRACKING_ANNOTATION
    others = [entry for entry in job["metadata"]["managedFields"] if entry["manager"] != APPLIER]
    assert others, "the operator's status writes should show in managedFields"
    for entry in others:
        outside = [path for path in field_paths(entry.get("fieldsV1") or {}) if not path.startswith("f:status")]
        assert outside == [], f"{entry['manager']} ({entry['operation']}) owns {outside}"
    assert pods.items, "the job's pods"
    for pod in pods.items:
        assert "app.kubernetes.io/instance" not in (pod.metadata.labels or {}), pod.metadata.labels
