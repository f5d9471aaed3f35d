"""A restart told honestly, against a real apiserver (issue 13): the operator with no node agent, the test
writing pod statuses as a kubelet would and sending the trainer's reports itself.

Pins:
- rank 1 killed (exit 137) and rank 0 exiting 10 a moment later, within the same second of finishedAt
  (the precision the API keeps), seen in one reconcile: the Restarting condition and its Warning Event
  name replica 1's 137 first, then replica 0's 10;
- after the restart, the new attempt's first report (epoch 0, step 0, before it loaded its checkpoint)
  leaves progress at the checkpoint's epoch, and a late report of an older epoch neither moves progress
  back nor rewrites the history.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, watch

from support.kubeapi import condition, create_job, get_job, job_pods, warning_events
from support.waiting import wait_for
from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.operator_process import OperatorProcess
from trainsmart.names import ATTEMPT_LABEL

pytestmark = pytest.mark.cluster

CONFIG = {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "epochs": 10}
STEPS_PER_EPOCH = 100


def _token(api: client.ApiClient, namespace: str, name: str) -> str:
    def read() -> client.V1Secret | None:
        try:
            return client.CoreV1Api(api).read_namespaced_secret(f"{name}-report-token", namespace)
        except client.ApiException as error:
            if error.status == 404:
                return None
            raise

    secret = wait_for(read, 30, f"the report token Secret of {name}")
    assert secret is not None
    return base64.b64decode(secret.data["token"]).decode()


def _post(base: str, namespace: str, name: str, token: str, report: dict[str, Any]) -> None:
    body = {
        "job": {"namespace": namespace, "name": name},
        "totalEpochs": CONFIG["epochs"],
        "objectiveMetric": "val_loss",
        "device": {"type": "cpu"},
        **report,
    }
    request = urllib.request.Request(  # noqa: S310
        f"{base}/v1/reports/{namespace}/{name}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 202


def _epoch_report(epoch: int, at: datetime, val_loss: float, *, checkpoint: bool = False) -> dict[str, Any]:
    report: dict[str, Any] = {
        "kind": "epoch",
        "time": at.isoformat(),
        "epoch": epoch,
        "step": epoch * STEPS_PER_EPOCH,
        "metrics": {"val_loss": val_loss},
    }
    if checkpoint:
        report["checkpoint"] = {"path": f"/checkpoints/epoch-{epoch}.pt", "epoch": epoch, "time": at.isoformat()}
    return report


def _terminate(core: client.CoreV1Api, namespace: str, name: str, exit_code: int, finished: datetime) -> None:
    """The status a kubelet writes when the trainer exits with `exit_code` at `finished`."""
    pod = core.read_namespaced_pod(name, namespace)
    terminated = {
        "exitCode": exit_code,
        "reason": "Error",
        "startedAt": (finished - timedelta(minutes=1)).isoformat(),
        "finishedAt": finished.isoformat(),
    }
    if exit_code == 10:
        terminated["message"] = '{"status":"failed","exitCode":10,"reason":"RuntimeError: Connection closed by peer"}'
    status = {
        "phase": "Failed",
        "containerStatuses": [
            {
                "name": "trainer",
                "image": pod.spec.containers[0].image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": terminated},
            }
        ],
    }
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


def _restarting_condition(api: client.ApiClient, namespace: str, name: str, since: str) -> dict[str, Any]:
    """The Restarting condition as it first turned True after resourceVersion `since` (watched, so a
    restart that completes quickly and turns it False again is not missed)."""
    stream = watch.Watch()
    for event in stream.stream(
        client.CustomObjectsApi(api).list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        TRAININGJOB_PLURAL,
        field_selector=f"metadata.name={name}",
        resource_version=since,
        timeout_seconds=60,
    ):
        found = condition(event["object"], "Restarting")
        if found.get("status") == "True":
            stream.stop()
            return found
    raise AssertionError(f"{name}'s Restarting condition never turned True")


def test_restart_names_the_killed_rank_and_keeps_progress_at_the_checkpoint(
    api_client: client.ApiClient, namespace: str, cluster_operator: OperatorProcess
) -> None:
    base, name = cluster_operator.report_base, "story"
    create_job(api_client, namespace, name, {"replicas": 2, "trainer": {"config": CONFIG}})
    core = client.CoreV1Api(api_client)
    wait_for(lambda: len(job_pods(api_client, namespace, name)) == 2, 30, "two pods")
    token = _token(api_client, namespace, name)
    start = datetime.now(UTC) - timedelta(minutes=5)
    for epoch in (1, 2, 3):
        at = start + timedelta(minutes=epoch)
        _post(base, namespace, name, token, _epoch_report(epoch, at, 1.0 / epoch, checkpoint=epoch == 3))

    def at_epoch_3() -> dict[str, Any] | None:
        job = get_job(api_client, namespace, name)
        status = job.get("status") or {}
        done = (status.get("progress") or {}).get("epoch") == 3 and (status.get("checkpoint") or {}).get(
            "latestEpoch"
        ) == 3
        return job if done else None

    job = wait_for(at_epoch_3, 30, "progress at epoch 3 with its checkpoint")
    assert job is not None
    history = job["status"]["metrics"]["history"]

    # A reconcile just wrote that status; the next one is at least a second away, so it sees both exits.
    second = datetime.now(UTC).replace(microsecond=0)
    _terminate(core, namespace, f"{name}-1", 137, second + timedelta(milliseconds=200))
    _terminate(core, namespace, f"{name}-0", 10, second + timedelta(milliseconds=700))
    restarting = _restarting_condition(api_client, namespace, name, job["metadata"]["resourceVersion"])
    message = restarting["message"]
    assert restarting["reason"] == "RetryableExitCode"
    assert message.startswith(f"replica 1 (pod {name}-1) exited with code 137 (SIGKILL)"), message
    assert f"then replica 0 (pod {name}-0) exited with code 10 (RETRYABLE_FAILURE)" in message
    assert "Connection closed by peer" in message
    events = wait_for(
        lambda: [e for e in warning_events(api_client, namespace) if e.reason == "RetryableExitCode"],
        15,
        "the restart's Warning Event",
    )
    killed_at = second.isoformat().replace("+00:00", "Z")
    assert len(events) == 1
    assert events[0].message.startswith(f"replica 1 (pod {name}-1) exited with code 137 (SIGKILL) at {killed_at}")
    assert f"then replica 0 (pod {name}-0)" in events[0].message

    def restarted() -> bool:
        pods = job_pods(api_client, namespace, name)
        return len(pods) == 2 and all(p.metadata.labels[ATTEMPT_LABEL] == "1" for p in pods)

    wait_for(restarted, 60, "both replicas recreated as attempt 1")

    # The old attempt's epoch-2 report arrives late; the new attempt says where it runs, before resuming.
    _post(base, namespace, name, token, _epoch_report(2, start + timedelta(minutes=2), 9.0))
    started = {"kind": "progress", "time": datetime.now(UTC).isoformat(), "metrics": {"learning_rate": 0.5}}
    _post(base, namespace, name, token, started)

    def folded() -> dict[str, Any] | None:
        status = get_job(api_client, namespace, name).get("status") or {}
        latest = (status.get("metrics") or {}).get("latest") or {}
        return status if latest.get("learning_rate") == 0.5 else None

    status = wait_for(folded, 30, "the new attempt's first report folded")
    assert status is not None
    assert (status["progress"]["epoch"], status["progress"]["percent"]) == (3, 30.0)
    assert status["metrics"]["history"] == history
    assert status["metrics"]["latest"]["val_loss"] == pytest.approx(1.0 / 3)
    assert status["restarts"] == 1
