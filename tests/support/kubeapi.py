"""Shortcuts to the real apiserver for cluster and e2e tests: trainsmart objects, their children, events.

Plain functions of a `kubernetes.client.ApiClient`, so a test reads as what it does ("the job's pods",
"the sweep's trials") rather than as the client's plural-and-group calling convention.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubernetes import client

from support.manifests import sweep_body, trainingjob_body
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.names import JOB_NAME_LABEL, TRIAL_NUMBER_LABEL, trial_selector


def create_job(api: client.ApiClient, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Create a TrainingJob; what the apiserver stored (uid, generation)."""
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, trainingjob_body(name, spec)
    )
    return created


def create_sweep(api: client.ApiClient, namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Create a HyperparamSweep; what the apiserver stored."""
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SWEEP_PLURAL, sweep_body(name, spec)
    )
    return created


def get_job(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    job: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, name
    )
    return job


def get_sweep(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    sweep: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, SWEEP_PLURAL, name
    )
    return sweep


def status_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """An object's status, {} before the operator wrote one."""
    return dict(obj.get("status") or {})


def condition(obj_or_status: Mapping[str, Any], type_: str) -> dict[str, Any]:
    """The condition of type `type_` of an object or of its status; {} when there is none (yet)."""
    status = obj_or_status if "conditions" in obj_or_status else status_of(obj_or_status)
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def job_pods(api: client.ApiClient, namespace: str, name: str) -> list[Any]:
    """The pods of TrainingJob `name` (V1Pod objects), every attempt's."""
    core = client.CoreV1Api(api)
    return list(core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}={name}").items)


def trials(api: client.ApiClient, namespace: str, sweep: str) -> list[dict[str, Any]]:
    """The sweep's trial TrainingJobs, in trial-number order."""
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, label_selector=trial_selector(sweep)
    )["items"]
    return sorted(items, key=lambda job: int(job["metadata"]["labels"][TRIAL_NUMBER_LABEL]))


def warning_events(api: client.ApiClient, namespace: str) -> list[Any]:
    """The namespace's Warning events (CoreV1Event objects), as `kubectl get events` lists them."""
    return [e for e in client.CoreV1Api(api).list_namespaced_event(namespace).items if e.type == "Warning"]
