"""The operator's diagnostics for any training code: a tiny script behind the metrics wrapper, no trainsmart
import, no diagnostic of its own.

The script prints one JSON line per epoch (`spec.trainer.metrics: {format: json}`) and sleeps a little
between epochs and at the end, so its reports arrive while the job runs (a finished job's conditions are
final). Each job runs in its own namespace, so the Events listed are that job's.

Pins:
- a loss that turns NaN reaches status as the NonFiniteLoss finding (the client diagnoses what JSON
  cannot carry), the TrainingWarning condition names it and a Warning Event announces it, once;
- a validation loss that rises while the training loss falls gets the operator's Overfitting finding,
  with the epoch it was first seen at, as the TrainingWarning condition and a Warning Event, once.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import condition, create_job, get_job, status_of, warning_events
from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV
from support.waiting import wait_for

pytestmark = pytest.mark.e2e

SCRIPT = """
import json, sys, time
curves = {
    "nan": [(1.0, 1.1), (0.8, 0.9), (float("nan"), float("nan")), (float("nan"), float("nan"))],
    "overfit": [(1.0, 1.0), (0.8, 0.8), (0.6, 0.85), (0.5, 0.9), (0.4, 1.0), (0.3, 1.1)],
}[sys.argv[1]]
for epoch, (train, val) in enumerate(curves, 1):
    time.sleep(0.3)
    print(json.dumps({"epoch": epoch, "epochs": len(curves), "train_loss": train, "val_loss": val}), flush=True)
time.sleep(3)
"""


def run_script_job(api_client: client.ApiClient, namespace: str, name: str, curve: str) -> dict[str, Any]:
    """Create the job for `curve`, wait until it succeeded, and return its status."""
    spec = {
        "replicas": 1,
        "tolerations": GPU_TOLERATIONS,
        "trainer": {
            "command": ["python3", "-c", SCRIPT],
            "args": [curve],
            "metrics": {"format": "json"},
            "env": ONE_THREAD_ENV,
        },
    }
    create_job(api_client, namespace, name, spec)

    def job_status() -> dict[str, Any]:
        return status_of(get_job(api_client, namespace, name))

    status = wait_for(
        lambda: (s := job_status()).get("phase") in ("Succeeded", "Failed") and s,
        60,
        f"the {curve} script's job to finish",
        lambda: str(job_status()),
    )
    assert status["phase"] == "Succeeded", condition(status, "Failed").get("message")
    return status


def announced(api_client: client.ApiClient, namespace: str, reason: str) -> list[Any]:
    return [event for event in warning_events(api_client, namespace) if event.reason == reason]


def test_a_nan_loss_is_the_non_finite_finding_as_condition_and_event(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    status = run_script_job(api_client, namespace, "nan", "nan")
    (finding,) = [item for item in status["diagnostics"] if item["type"] == "NonFiniteLoss"]
    assert (finding["severity"], finding["epoch"]) == ("Error", 3)
    assert finding["message"].startswith("train_loss is nan at epoch 3")
    warning = condition(status, "TrainingWarning")
    assert (warning["status"], warning["reason"]) == ("True", "NonFiniteLoss")
    events = wait_for(lambda: announced(api_client, namespace, "NonFiniteLoss"), 15, "the NonFiniteLoss Event")
    assert len(events) == 1 and "train_loss is nan at epoch 3" in events[0].message


def test_validation_rising_while_training_falls_is_the_operators_overfitting_finding(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    status = run_script_job(api_client, namespace, "overfit", "overfit")
    (finding,) = [item for item in status["diagnostics"] if item["type"] == "Overfitting"]
    assert (finding["severity"], finding["epoch"]) == ("Warning", 5)
    assert "validation loss rose for 3 epochs" in finding["message"]
    assert [point["epoch"] for point in status["metrics"]["lossCurve"]] == [1, 2, 3, 4, 5, 6]
    warning = condition(status, "TrainingWarning")
    assert (warning["status"], warning["reason"]) == ("True", "Overfitting")
    events = wait_for(lambda: announced(api_client, namespace, "Overfitting"), 15, "the Overfitting Event")
    assert len(events) == 1 and "validation loss rose for 3 epochs" in events[0].message
