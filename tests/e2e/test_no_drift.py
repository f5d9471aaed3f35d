"""GitOps: the operator never writes what a user (or Argo CD) applied, so synced objects never drift.

A TrainingJob and a HyperparamSweep are created the way Argo CD creates them (its own field manager, its
tracking label and annotation) and run to Succeeded by the real operator on the local cluster.

Pins:
- after the run, `spec`, `metadata.generation`, labels and annotations are exactly what was applied;
- every managedFields entry of another manager than the applier's owns fields under `status` only;
- the job's pods and the sweep's trials do not inherit their parent's labels (Argo CD's tracking label
  would make them look like resources of the Application, to be pruned).
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV, resource_body
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.names import JOB_NAME_LABEL, trial_selector

pytestmark = pytest.mark.e2e

APPLIER = "argocd-controller"
TRACKING_LABEL = {"app.kubernetes.io/instance": "ml-team-training"}
TRACKING_ANNOTATION = {"argocd.argoproj.io/tracking-id": "ml-team-training:trainsmart.dev/TrainingJob:x/gitops"}
SPEC = {
    "tolerations": GPU_TOLERATIONS,
    "trainer": {
        "env": ONE_THREAD_ENV,
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


def apply_and_finish(
    objects: client.CustomObjectsApi, namespace: str, kind: str, plural: str, spec: Any
) -> tuple[Any, Any]:
    """Create as Argo CD would, wait for Succeeded or Failed: (what the create returned, the finished object)."""
    body = resource_body(kind, "gitops", spec, labels=TRACKING_LABEL, annotations=TRACKING_ANNOTATION)
    created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body, field_manager=APPLIER)

    def read() -> Any:
        return objects.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, "gitops")

    def finished() -> Any:
        obj = read()
        return obj if (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    obj = wait_for(finished, 180, f"{kind} to finish", lambda: str(read().get("status")), interval=0.5)
    return created, obj


def assert_only_status_changed(created: dict[str, Any], obj: dict[str, Any]) -> None:
    assert obj["status"]["phase"] == "Succeeded", obj["status"]
    assert obj["spec"] == created["spec"]
    assert obj["metadata"]["generation"] == created["metadata"]["generation"] == 1
    assert obj["metadata"]["labels"] == TRACKING_LABEL
    assert obj["metadata"].get("annotations") == TRACKING_ANNOTATION
    others = [entry for entry in obj["metadata"]["managedFields"] if entry["manager"] != APPLIER]
    assert others, "the operator's status writes should show in managedFields"
    for entry in others:
        outside = [path for path in field_paths(entry.get("fieldsV1") or {}) if not path.startswith("f:status")]
        assert outside == [], f"{entry['manager']} ({entry['operation']}) owns {outside}"


def test_a_job_run_to_completion_changes_nothing_but_status(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    created, job = apply_and_finish(objects, namespace, "TrainingJob", TRAININGJOB_PLURAL, SPEC)
    assert_only_status_changed(created, job)
    pods = client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}=gitops")
    assert pods.items, "the job's pods"
    for pod in pods.items:
        assert "app.kubernetes.io/instance" not in (pod.metadata.labels or {}), pod.metadata.labels


def test_a_sweep_run_to_completion_changes_nothing_but_status(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "grid"},
        "parameters": [{"name": "lr", "path": "trainer.config.learningRate", "type": "choice", "values": [0.01]}],
        "trialTemplate": SPEC,
    }
    created, sweep = apply_and_finish(objects, namespace, "HyperparamSweep", SWEEP_PLURAL, spec)
    assert_only_status_changed(created, sweep)
    trials = objects.list_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, label_selector=trial_selector("gitops")
    )["items"]
    assert trials, "the sweep's trials"
    for trial in trials:
        assert "app.kubernetes.io/instance" not in (trial["metadata"].get("labels") or {}), trial["metadata"]
