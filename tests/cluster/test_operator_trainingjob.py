"""The operator against a real apiserver, without a node agent (pods stay Pending unless a test writes
their status the way a kubelet would).

Pins:
- a TrainingJob gets its headless Service, an immutable report-token Secret, its checkpoint PVC and one
  pod per replica (attempt 0, owned by the job), and a Pending status with Created and observedGeneration;
- a spec the models refuse (both checkpoint sources) gets InvalidSpec=True with the field path, one Warning
  Event, no pods, and no further status writes (no retry storm); a misspelt field likewise (kept by the
  apiserver, named by the operator with the field it was probably meant to be), never a silent default;
- a replica that fails with a retryable exit code restarts all replicas exactly once: restarts=1 in status,
  the old pods deleted, new pods of attempt 1 created;
- the report endpoint refuses missing, wrong and other jobs' tokens and unknown jobs alike (401), a body
  naming another job 403, malformed bodies 400, and leaves the status untouched; the job's own token is
  accepted and folded into status.progress.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import pytest
from kubernetes import client

from support.kubeapi import condition, create_job, get_job, job_pods, warning_events
from support.waiting import wait_for
from trainsmart.devcluster.operator_process import OperatorProcess
from trainsmart.names import ATTEMPT_LABEL

pytestmark = pytest.mark.cluster

CONFIG = {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "epochs": 2}


@pytest.fixture(scope="module")
def report_base(cluster_operator: OperatorProcess) -> str:
    """The report endpoint (http://host:port) of this module's operator."""
    return cluster_operator.report_base


def post_report(base: str, path: str, body: bytes, token: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{base}{path}", data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def report_body(namespace: str, name: str, epoch: int = 1) -> bytes:
    return json.dumps(
        {
            "job": {"namespace": namespace, "name": name},
            "kind": "epoch",
            "time": datetime.now(UTC).isoformat(),
            "epoch": epoch,
            "totalEpochs": 4,
            "metrics": {"val_loss": 0.5},
            "device": {"type": "cpu"},
        }
    ).encode()


def token_of(api: client.ApiClient, namespace: str, name: str) -> str:
    import base64

    secret = wait_for(
        lambda: _read_secret(api, namespace, f"{name}-report-token"), 30, f"the report token Secret of {name}"
    )
    return base64.b64decode(secret.data["token"]).decode()


def _read_secret(api: client.ApiClient, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def test_children_pods_and_pending_status(api_client: client.ApiClient, namespace: str, report_base: str) -> None:
    # A GPU job with int quantities, as users write them (cpu: 2, a size in bytes): the manifests the
    # operator sends must pass the client's body validation (quantities are strings on the wire).
    spec = {
        "replicas": 2,
        "gpusPerReplica": 1,
        "resources": {"limits": {"cpu": 2, "memory": "1Gi"}},
        "checkpoint": {"size": 1073741824},
        "trainer": {"config": CONFIG},
    }
    created = create_job(api_client, namespace, "kids", spec)
    core = client.CoreV1Api(api_client)
    pods = wait_for(lambda: len(job_pods(api_client, namespace, "kids")) == 2, 30, "two pods") and job_pods(
        api_client, namespace, "kids"
    )
    assert sorted(p.metadata.name for p in pods) == ["kids-0", "kids-1"]
    for pod in pods:
        assert pod.metadata.labels[ATTEMPT_LABEL] == "0"
        assert pod.spec.containers[0].resources.limits == {"cpu": "2", "memory": "1Gi", "nvidia.com/gpu": "1"}
        assert pod.metadata.owner_references[0].uid == created["metadata"]["uid"]
    service = core.read_namespaced_service("kids", namespace)
    assert service.spec.cluster_ip == "None"
    secret = core.read_namespaced_secret("kids-report-token", namespace)
    assert secret.immutable is True and secret.data["token"]
    assert core.read_namespaced_persistent_volume_claim("kids-checkpoints", namespace).spec.access_modes == [
        "ReadWriteMany"
    ]
    job = wait_for(lambda: (j := get_job(api_client, namespace, "kids")).get("status") and j, 30, "a status")
    job = wait_for(lambda: (j := get_job(api_client, namespace, "kids")) and condition(j, "Created") and j, 30, "x")
    assert job["status"]["phase"] == "Pending"
    assert job["status"]["observedGeneration"] == job["metadata"]["generation"]
    assert condition(job, "InvalidSpec")["status"] == "False"
    assert pods[0].spec.containers[0].env  # the report URL and token reference are injected
    names = {var.name for var in pods[0].spec.containers[0].env}
    assert {"TRAINSMART_REPORT_URL", "TRAINSMART_REPORT_TOKEN"} <= names


def test_invalid_spec_condition_event_and_no_storm(
    api_client: client.ApiClient, namespace: str, report_base: str
) -> None:
    spec = {"checkpoint": {"size": "1Gi", "claimName": "mine"}}
    create_job(api_client, namespace, "broken", spec)
    job = wait_for(
        lambda: (j := get_job(api_client, namespace, "broken")) and condition(j, "InvalidSpec") and j, 30, "InvalidSpec"
    )
    invalid = condition(job, "InvalidSpec")
    assert invalid["status"] == "True"
    assert "checkpoint" in invalid["message"] and "claimName" in invalid["message"]
    events = wait_for(lambda: warning_events(api_client, namespace), 15, "a Warning event")
    assert events[0].involved_object.name == "broken"
    version = job["metadata"]["resourceVersion"]
    time.sleep(3)
    assert get_job(api_client, namespace, "broken")["metadata"]["resourceVersion"] == version
    assert job_pods(api_client, namespace, "broken") == []


def test_a_typo_that_reached_the_cluster_is_invalid_spec_never_a_silent_default(
    api_client: client.ApiClient, namespace: str, report_base: str
) -> None:
    """No webhook here, as when the CRDs are installed without the operator's webhook: the apiserver keeps
    the misspelt field, and the operator refuses to run the job rather than train with the default."""
    create_job(api_client, namespace, "typo", {"trainer": {"config": {"learningRatez": 0.1}}})
    job = wait_for(
        lambda: (j := get_job(api_client, namespace, "typo")) and condition(j, "InvalidSpec") and j, 30, "InvalidSpec"
    )
    invalid = condition(job, "InvalidSpec")
    assert invalid["status"] == "True"
    assert "spec.trainer.config.learningRatez: unknown field; did you mean learningRate?" in invalid["message"]
    assert job_pods(api_client, namespace, "typo") == []


def _fail_pod(core: client.CoreV1Api, pod: client.V1Pod, exit_code: int) -> None:
    """Write the status a kubelet writes when the trainer exits with `exit_code`."""
    now = datetime.now(UTC).isoformat()
    status = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": "trainer",
                "image": pod.spec.containers[0].image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {"exitCode": exit_code, "reason": "Error", "startedAt": now, "finishedAt": now}
                },
            }
        ],
    }
    core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})


def test_retryable_failure_restarts_all_once(api_client: client.ApiClient, namespace: str, report_base: str) -> None:
    create_job(api_client, namespace, "flaky", {"replicas": 2, "trainer": {"config": CONFIG}})
    core = client.CoreV1Api(api_client)
    wait_for(lambda: len(job_pods(api_client, namespace, "flaky")) == 2, 30, "two pods")
    _fail_pod(core, core.read_namespaced_pod("flaky-1", namespace), 10)

    def restarted() -> bool:
        pods = job_pods(api_client, namespace, "flaky")
        return len(pods) == 2 and all(p.metadata.labels[ATTEMPT_LABEL] == "1" for p in pods)

    wait_for(restarted, 60, "both replicas recreated as attempt 1")
    job = get_job(api_client, namespace, "flaky")
    assert job["status"]["restarts"] == 1
    assert condition(job, "Restarting")["reason"]
    time.sleep(2)
    assert get_job(api_client, namespace, "flaky")["status"]["restarts"] == 1


def test_spoofed_reports_rejected(api_client: client.ApiClient, namespace: str, report_base: str) -> None:
    create_job(api_client, namespace, "alpha", {"trainer": {"config": CONFIG}})
    create_job(api_client, namespace, "beta", {"trainer": {"config": CONFIG}})
    alpha, beta = token_of(api_client, namespace, "alpha"), token_of(api_client, namespace, "beta")
    path = f"/v1/reports/{namespace}/alpha"
    body = report_body(namespace, "alpha")
    # No token, a wrong token and an unknown job: one answer, so existence does not leak (issue 13).
    assert post_report(report_base, path, body, None) == 401
    assert post_report(report_base, path, body, "not-the-token") == 401
    assert post_report(report_base, path, body, beta) == 401
    assert post_report(report_base, "/v1/reports", body, beta) == 401
    assert post_report(report_base, f"/v1/reports/{namespace}/nosuchjob", body, alpha) == 401
    assert post_report(report_base, path, report_body(namespace, "beta"), alpha) == 403
    assert post_report(report_base, path, b'{"kind": "epoch"', alpha) == 400
    assert post_report(report_base, path, b'{"job": {}, "kind": "nonsense"}', alpha) == 400
    time.sleep(2)
    assert (get_job(api_client, namespace, "alpha").get("status") or {}).get("progress") is None
    assert post_report(report_base, "/v1/reports", body, alpha) == 202
    job = wait_for(
        lambda: (j := get_job(api_client, namespace, "alpha")) and (j.get("status") or {}).get("progress") and j,
        15,
        "progress from the accepted report",
    )
    assert job["status"]["progress"]["epoch"] == 1
    assert (get_job(api_client, namespace, "beta").get("status") or {}).get("progress") is None
