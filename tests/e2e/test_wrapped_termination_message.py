"""A custom job under the metrics wrapper whose reports never reach the operator still ends with its final
metrics: the wrapper writes the run's final result to the termination message, as the packaged trainer
does, and the operator folds rank 0's message into the status.

Pins:
- a 1-replica job running `python3 -m trainsmart_client wrap -- python3 -c <script>` (a script that prints
  one JSON line per epoch), whose report URL points at a closed port, ends Succeeded with the last epoch's
  metrics, its epoch count and its objective history in status, all from the wrapper's termination
  message (which is the contract's FinalResult), and the wrapper says it never reached the endpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

from support.kubeapi import create_job, get_job, job_pods, status_of
from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV
from support.waiting import wait_for
from trainsmart_trainer import contract
from trainsmart_trainer.contract import FinalResult

if TYPE_CHECKING:
    from tests.e2e.conftest import RunningAgent

pytestmark = pytest.mark.e2e

# Nothing listens there inside the pod's own network namespace: every report is refused at once.
CLOSED_REPORT_URL = "http://127.0.0.1:9/v1/reports"
SCRIPT = (
    "import json\n"
    "for epoch in (1, 2):\n"
    "    print(json.dumps({'epoch': epoch, 'train_loss': 1.0 / epoch, 'val_loss': 1.5 / epoch}), flush=True)\n"
)


def test_wrapped_job_whose_reports_never_arrive_succeeds_with_its_final_metrics(
    api_client: client.ApiClient, operator_process: Any, node_agent: RunningAgent, namespace: str
) -> None:
    trainer = {
        # The wrapper as a user would run it by hand, with the operator's report URL replaced by a closed port
        # (the contract's variables cannot be overridden through spec.trainer.env, so the command does it).
        "command": ["env", f"{contract.REPORT_URL}={CLOSED_REPORT_URL}", "python3", "-m", "trainsmart_client"],
        "args": ["wrap", "--format", "json", "--", "python3", "-c", SCRIPT],
        "env": ONE_THREAD_ENV,
    }
    create_job(api_client, namespace, "wrapped", {"replicas": 1, "tolerations": GPU_TOLERATIONS, "trainer": trainer})

    def status() -> dict[str, Any]:
        return status_of(get_job(api_client, namespace, "wrapped"))

    def describe() -> str:
        pods = job_pods(api_client, namespace, "wrapped")
        states = [(p.metadata.name, [s.state.to_dict() for s in p.status.container_statuses or []]) for p in pods]
        return f"{status()}\n{states}\n{operator_process.tail()}"

    ended = wait_for(
        lambda: status() if status().get("phase") in ("Succeeded", "Failed") else None, 120, "the job to end", describe
    )
    assert ended["phase"] == "Succeeded", describe()
    # Metrics appear in the same derivation or right after the pod's final status is seen.
    final = wait_for(
        lambda: status() if "val_loss" in (status().get("metrics") or {}).get("latest", {}) else None,
        30,
        "the final metrics in status",
        describe,
    )
    (pod,) = job_pods(api_client, namespace, "wrapped")
    message = FinalResult.model_validate_json(pod.status.container_statuses[0].state.terminated.message)
    assert (message.status.value, message.epochs_completed, message.objective_metric) == ("succeeded", 2, "val_loss")
    # The status carries exactly what the message said: nothing reached the operator any other way.
    metrics = final["metrics"]
    assert metrics["latest"] == message.metrics == {"train_loss": 0.5, "val_loss": 0.75}
    assert final["progress"]["epoch"] == 2
    assert metrics["history"] == [{"epoch": 1, "value": 1.5}, {"epoch": 2, "value": 0.75}]
    assert "never answered" in node_agent.container_log(pod, "trainer")
