"""Framework scripts end to end: a Hugging Face Trainer and a PyTorch Lightning Trainer, each with the
client's callback (two added lines), report like the packaged trainer.

The scripts and manifests are the examples (examples/custom/hf_*, lightning_*), applied as a user would
(the script's ConfigMap from the file, then the manifest) with only the simulated GPU nodes' taint tolerated
and less data or fewer epochs. Pods run the project's .venv, which has transformers and Lightning.

Pins:
- the Hugging Face job shows live progress (an intermediate epoch of the total while Running) and ends
  Succeeded at 100 % with the Trainer's own metric names in status: `eval_loss`, `eval_accuracy`, the train
  `loss`, and the run's `train_loss`;
- the Lightning job does the same with what its module logs: `train_loss`, `val_loss`, `val_accuracy`.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from support.custom_code import create_script_configmap, example_spec, set_args
from support.kubeapi import condition, create_job, get_job, status_of
from support.manifests import GPU_TOLERATIONS
from support.waiting import wait_for

pytestmark = pytest.mark.e2e


def run_to_the_end(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Create the job, see an intermediate epoch while it runs, and return its final status (Succeeded)."""
    create_job(api, namespace, name, spec)
    total = int(spec["trainer"]["args"][spec["trainer"]["args"].index("--epochs") + 1])

    def job_status() -> dict[str, Any]:
        return status_of(get_job(api, namespace, name))

    def intermediate() -> dict[str, Any] | None:
        status = job_status()
        epoch = (status.get("progress") or {}).get("epoch", 0)
        return status if status.get("phase") == "Running" and 0 < epoch < total else None

    seen = wait_for(intermediate, 60, f"an intermediate epoch of {name} in status", lambda: str(job_status()))
    assert seen["progress"]["totalEpochs"] == total

    def finished() -> dict[str, Any] | None:
        status = job_status()
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = wait_for(finished, 180, f"{name} to finish", lambda: str(job_status()))
    assert status["phase"] == "Succeeded", condition(status, "Failed").get("message")
    assert status["progress"]["epoch"] == total and status["progress"]["percent"] == 100
    return status


def test_a_hugging_face_trainer_job_reports_progress_and_the_trainers_metrics(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = example_spec("hf_trainingjob.yaml")
    spec["tolerations"] = GPU_TOLERATIONS
    # Small batches: a few seconds an epoch, so an intermediate epoch stays in status long enough to be seen
    # on a loaded machine (whole epochs of well under a second were missed).
    set_args(spec["trainer"], epochs="3", rows="2048", batch_size="4")
    create_script_configmap(api_client, namespace, spec, "hf_text_classifier.py")
    status = run_to_the_end(api_client, namespace, "hf", spec)
    latest = status["metrics"]["latest"]
    assert {"eval_loss", "eval_accuracy", "loss", "train_loss"} <= set(latest), latest
    assert 0 <= latest["eval_accuracy"] <= 1


def test_a_lightning_job_reports_progress_and_the_logged_metrics(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = example_spec("lightning_trainingjob.yaml")
    spec["tolerations"] = GPU_TOLERATIONS
    set_args(spec["trainer"], epochs="3", batch_size="2")  # a few seconds an epoch (see the HF test)
    create_script_configmap(api_client, namespace, spec, "lightning_digits.py")
    status = run_to_the_end(api_client, namespace, "lit", spec)
    latest = status["metrics"]["latest"]
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(latest), latest
    assert 0 < latest["val_accuracy"] <= 1
