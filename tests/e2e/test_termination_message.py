"""Termination messages end to end: the node agent keeps them as a kubelet does, and a TrainingJob whose
reports never reach the operator still gets its outcome and final metrics from the trainer's message.

Pins:
- a pod running as uid 1000 (declaring readOnlyRootFilesystem, as trainer pods do) writes
  /dev/termination-log (the agent's bind-mounted per-run file) and the text lands in
  state.terminated.message; FallbackToLogsOnError puts the log tail there for a failed container that
  wrote nothing;
- a 1-epoch, 1-replica digits TrainingJob whose trainer cannot reach the report endpoint at all (its
  report URL points at a closed port; the operator itself is up) ends Succeeded with progress 1/1 and
  its test and validation metrics and its objective history in status, all taken from the trainer's
  termination message.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

from support.manifests import FAST_DIGITS, GPU_TOLERATIONS, ONE_THREAD_ENV, trainingjob_body
from support.waiting import wait_for
from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.names import JOB_NAME_LABEL
from trainsmart_trainer import contract

if TYPE_CHECKING:
    from tests.e2e.conftest import RunningAgent

pytestmark = pytest.mark.e2e

CONFIG = {**FAST_DIGITS, "epochs": 1}
# Nothing listens there inside the pod's own network namespace: every report is refused at once.
CLOSED_REPORT_URL = "http://127.0.0.1:9/v1/reports"


def test_agent_keeps_the_message_of_a_read_only_non_root_pod(
    api_client: client.ApiClient, node_agent: RunningAgent, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    security = {"runAsUser": 1000, "runAsGroup": 1000, "readOnlyRootFilesystem": True, "runAsNonRoot": True}
    containers = [
        {
            "name": "writes",
            "image": "busybox",
            "command": ["sh", "-c", 'printf "%s" "{\\"done\\":true}" > /dev/termination-log'],
            "securityContext": security,
        },
        {
            "name": "fails",
            "image": "busybox",
            "command": ["sh", "-c", "echo the last words; exit 4"],
            "securityContext": security,
            "terminationMessagePolicy": "FallbackToLogsOnError",
        },
    ]
    spec = {"restartPolicy": "Never", "tolerations": GPU_TOLERATIONS, "containers": containers}
    core.create_namespaced_pod(namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "m"}, "spec": spec})

    def finished() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("m", namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    pod = wait_for(finished, 60, "pod m to finish", node_agent.tail)
    states = {status.name: status.state.terminated for status in pod.status.container_statuses}
    assert (states["writes"].exit_code, states["writes"].message) == (0, '{"done":true}'), node_agent.tail()
    assert (states["fails"].exit_code, states["fails"].message) == (4, "the last words")


def test_job_whose_reports_never_arrive_succeeds_with_its_final_metrics(
    api_client: client.ApiClient, operator_process: Any, node_agent: RunningAgent, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api_client)
    core = client.CoreV1Api(api_client)
    trainer = {
        # The packaged trainer, with the operator's report URL replaced by a closed port (the contract's
        # variables cannot be overridden through spec.trainer.env, so the command does it).
        "command": ["env", f"{contract.REPORT_URL}={CLOSED_REPORT_URL}", "python", "-m", "trainsmart_trainer"],
        "config": CONFIG,
        "env": ONE_THREAD_ENV,
    }
    body = trainingjob_body("unreported", {"replicas": 1, "tolerations": GPU_TOLERATIONS, "trainer": trainer})
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, body)

    def status() -> dict[str, Any]:
        job = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "unreported")
        return dict(job.get("status") or {})

    def describe() -> str:
        pods = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}=unreported").items
        states = [(p.metadata.name, [s.state.to_dict() for s in p.status.container_statuses or []]) for p in pods]
        return f"{status()}\n{states}\n{operator_process.tail()}"

    final = wait_for(
        lambda: status() if status().get("phase") in ("Succeeded", "Failed") else None, 180, "the job to end", describe
    )
    assert final["phase"] == "Succeeded", describe()
    # Metrics appear in the same derivation or right after the pod's final status is seen.
    final = wait_for(
        lambda: status() if "test_accuracy" in (status().get("metrics") or {}).get("latest", {}) else None,
        30,
        "the final metrics in status",
        describe,
    )
    metrics, progress = final["metrics"], final["progress"]
    assert {"test_accuracy", "val_accuracy", "val_loss"} <= set(metrics["latest"])
    assert (progress["epoch"], progress["totalEpochs"], progress["percent"]) == (1, 1, 100)

    (pod,) = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}=unreported").items
    message = json.loads(pod.status.container_statuses[0].state.terminated.message)
    # The status carries exactly what the message said: nothing reached the operator any other way.
    assert metrics["latest"]["test_accuracy"] == message["metrics"]["test_accuracy"]
    assert (message["status"], message["epochsCompleted"]) == ("succeeded", 1)
    assert metrics["objective"] == message["objectiveMetric"]
    assert metrics["history"] == [{"epoch": 1, "value": message["objectiveHistory"][0]["value"]}]
    # And the trainer really never reached the endpoint (it says so when it gives up at exit).
    assert "not every report reached" in node_agent.container_log(pod, "trainer")
