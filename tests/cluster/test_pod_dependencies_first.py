"""The operator creates what a pod refers to before the pod (issue 13: no Warning Events in a normal run).

A pod that reaches the scheduler or the kubelet before its claim, Secret or ConfigMap exists gets Warning
Events (FailedScheduling `persistentvolumeclaim ... not found`, FailedMount, `secret ... not found`). The
order is read from watches started before the job is created: the resourceVersion of an ADDED event is
the object's creation revision, one counter across every kind (creationTimestamp has 1 s resolution).

Pins:
- for a wrapped job (spec.trainer.metrics) with an operator-made checkpoint claim, the report-token
  Secret, the checkpoint PVC, the metrics wrapper's ConfigMap and the headless Service are each created
  before every pod of the job.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, watch

from support.kubeapi import create_job, job_pods
from support.waiting import wait_for
from trainsmart.devcluster.operator_process import OperatorProcess

pytestmark = pytest.mark.cluster


class CreationRecorder:
    """The creation revision (resourceVersion of the ADDED event) of every object of some kinds in a
    namespace, from one watch per kind, each started at the namespace's state before the test acts."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        self.created: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        listers: dict[str, Callable[..., Any]] = {
            "Pod": core.list_namespaced_pod,
            "Secret": core.list_namespaced_secret,
            "PersistentVolumeClaim": core.list_namespaced_persistent_volume_claim,
            "ConfigMap": core.list_namespaced_config_map,
            "Service": core.list_namespaced_service,
        }
        self._threads = [
            threading.Thread(
                target=self._watch, args=(kind, lister, namespace, lister(namespace).metadata.resource_version)
            )
            for kind, lister in listers.items()
        ]

    def __enter__(self) -> CreationRecorder:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _watch(self, kind: str, lister: Callable[..., Any], namespace: str, version: str) -> None:
        while not self._stop.is_set():
            for event in watch.Watch().stream(lister, namespace, resource_version=version, timeout_seconds=1):
                obj = event["raw_object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"{kind} watch: {obj}")
                version = obj["metadata"]["resourceVersion"]
                if event["type"] == "ADDED":
                    with self._lock:
                        self.created.setdefault((kind, obj["metadata"]["name"]), int(version))

    def revisions(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self.created)


@pytest.fixture
def recorder(api_client: client.ApiClient, namespace: str) -> Iterator[CreationRecorder]:
    with CreationRecorder(client.CoreV1Api(api_client), namespace) as recorder:
        yield recorder


def test_what_the_pods_refer_to_is_created_before_them(
    cluster_operator: OperatorProcess, api_client: client.ApiClient, namespace: str, recorder: CreationRecorder
) -> None:
    spec = {
        "replicas": 3,
        "checkpoint": {"size": "1Gi"},
        "trainer": {"command": ["python3", "train.py"], "metrics": {"format": "json"}},
    }
    create_job(api_client, namespace, "deps", spec)
    wait_for(lambda: len(job_pods(api_client, namespace, "deps")) == 3, 30, "three pods")
    dependencies = {
        ("Secret", "deps-report-token"),
        ("PersistentVolumeClaim", "deps-checkpoints"),
        ("ConfigMap", "deps-trainsmart-client"),
        ("Service", "deps"),
    }
    pods = {("Pod", f"deps-{index}") for index in range(3)}

    def all_seen() -> dict[tuple[str, str], int] | None:
        revisions = recorder.revisions()
        return revisions if dependencies | pods <= revisions.keys() else None

    created = wait_for(
        all_seen,
        30,
        "every creation seen by the watches",
        lambda: str(recorder.revisions()),
    )
    order = sorted(dependencies | pods, key=lambda kind_name: created[kind_name])
    first_pod = min(created[pod] for pod in pods)
    late = sorted(f"{kind} {name}" for kind, name in dependencies if created[(kind, name)] > first_pod)
    assert not late, f"created after the first pod: {late}; creation order: {order}"
