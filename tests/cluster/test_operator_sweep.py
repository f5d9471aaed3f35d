"""The sweep controller against a real apiserver, without a node agent (trial pods stay Pending).

Pins:
- a sweep gets parallelTrials trial TrainingJobs named `<sweep>-0`, `<sweep>-1`, owned by it, labelled with
  the sweep and the number, their parameters in the spec and in the annotation; no more appear while
  they run; the status has the trial table, counts, seed, startTime and every condition;
- raising parallelTrials while it runs adds trials at once, numbered on;
- spec.suspend on the sweep suspends its trials (spec.suspend, no `stopped` reason) and Suspended shows;
  resuming releases them;
- a spec the models refuse (slipping past a missing webhook) gets InvalidSpec with the field, one Warning
  Event, no trials and no further status writes;
- a sweep over a custom command: the trial the operator creates has its `${params.*}` placeholders
  substituted (a list choice as compact JSON) and the list set at its path, and the trial's pod, as the
  real apiserver stored it, has `TRAINSMART_PARAM_*`, `TRAINSMART_PARAMS_FILE`, the parameters
  annotation and the downwardAPI volume that projects it.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import condition, create_sweep, get_sweep, job_pods, trials, warning_events
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, VERSION
from trainsmart.devcluster.operator_process import OperatorProcess
from trainsmart.names import PARAMETERS_ANNOTATION, STOPPED_ANNOTATION

pytestmark = pytest.mark.cluster

SPEC: dict[str, Any] = {
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "algorithm": {"name": "random", "seed": 3},
    "maxTrials": 5,
    "parallelTrials": 2,
    "parameters": [
        {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 0.0001, "max": 0.1},
        {"name": "batch", "path": "trainer.config.batchSize", "type": "choice", "values": [16, 32]},
    ],
    "trialTemplate": {"trainer": {"config": {"dataset": {"name": "digits"}, "epochs": 2}}},
}


def patch_sweep(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    objects = client.CustomObjectsApi(api)
    objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, name, {"spec": spec})


def test_parallel_trials_created_owned_and_tabled(
    api_client: client.ApiClient, namespace: str, cluster_operator: OperatorProcess
) -> None:
    created = create_sweep(api_client, namespace, "tune", SPEC)
    wait_for(lambda: len(trials(api_client, namespace, "tune")) == 2, 30, "two trials")
    sweep = wait_for(
        lambda: (
            (s := get_sweep(api_client, namespace, "tune"))
            and len((s.get("status") or {}).get("trials", [])) == 2
            and s
        ),
        30,
        "both trials in the table",
    )
    jobs = trials(api_client, namespace, "tune")
    assert [job["metadata"]["name"] for job in jobs] == ["tune-0", "tune-1"]
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "HyperparamSweep",
            created["metadata"]["uid"],
            True,
        )
        params = json.loads(job["metadata"]["annotations"][PARAMETERS_ANNOTATION])
        config = job["spec"]["trainer"]["config"]
        assert (config["learningRate"], config["batchSize"]) == (params["lr"], params["batch"])
    status = sweep["status"]
    assert status["counts"]["total"] == 2 and status["counts"]["planned"] == 5 and status["seed"] == 3
    assert status["startTime"] and status["phase"] == "Running"
    assert {c["type"] for c in status["conditions"]} >= {"Running", "Succeeded", "Failed", "GoalReached"}
    assert [row["name"] for row in status["trials"]] == ["tune-0", "tune-1"]
    time.sleep(2)
    assert len(trials(api_client, namespace, "tune")) == 2  # parallelTrials holds while they run

    patch_sweep(api_client, namespace, "tune", {"parallelTrials": 3})
    wait_for(lambda: len(trials(api_client, namespace, "tune")) == 3, 30, "a third trial")
    assert trials(api_client, namespace, "tune")[2]["metadata"]["name"] == "tune-2"

    patch_sweep(api_client, namespace, "tune", {"suspend": True})
    wait_for(
        lambda: all(job["spec"].get("suspend") for job in trials(api_client, namespace, "tune")), 30, "trials held"
    )
    assert all(
        STOPPED_ANNOTATION not in job["metadata"]["annotations"] for job in trials(api_client, namespace, "tune")
    )
    wait_for(lambda: get_sweep(api_client, namespace, "tune")["status"]["phase"] == "Suspended", 30, "Suspended")
    assert condition(get_sweep(api_client, namespace, "tune"), "Suspended")["status"] == "True"

    patch_sweep(api_client, namespace, "tune", {"suspend": False})
    wait_for(
        lambda: not any(job["spec"].get("suspend") for job in trials(api_client, namespace, "tune")),
        30,
        "trials released",
    )
    assert len(trials(api_client, namespace, "tune")) == 3


def test_invalid_sweep_gets_invalid_spec_and_no_trials(
    api_client: client.ApiClient, namespace: str, cluster_operator: OperatorProcess
) -> None:
    # A suspended template: the CRD schema lets it through, the models refuse it (no webhook runs here).
    template = {**SPEC["trialTemplate"], "suspend": True}
    create_sweep(api_client, namespace, "bad", {**SPEC, "trialTemplate": template})
    sweep = wait_for(
        lambda: (s := get_sweep(api_client, namespace, "bad")) and condition(s, "InvalidSpec") and s, 30, "InvalidSpec"
    )
    invalid = condition(sweep, "InvalidSpec")
    assert invalid["status"] == "True" and "trialTemplate.suspend" in invalid["message"]
    events = wait_for(lambda: warning_events(api_client, namespace), 15, "a Warning event")
    assert events[0].involved_object.name == "bad"
    version = sweep["metadata"]["resourceVersion"]
    time.sleep(3)
    assert get_sweep(api_client, namespace, "bad")["metadata"]["resourceVersion"] == version
    assert trials(api_client, namespace, "bad") == []


CUSTOM_SPEC: dict[str, Any] = {
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "algorithm": {"name": "grid"},
    "parallelTrials": 1,
    "parameters": [
        {"name": "lr", "type": "choice", "values": [0.01]},
        {"name": "sizes", "path": "trainer.config.model.hiddenSizes", "type": "choice", "values": [[128, 64, 32]]},
    ],
    "trialTemplate": {
        "trainer": {
            "command": ["python", "train.py"],
            "args": ["--lr=${params.lr}", "--sizes", "${params.sizes}"],
            "env": [{"name": "LR", "value": "${params.lr}"}],
            "config": {"model": {"name": "mlp"}, "epochs": 1},
        }
    },
}


def test_trials_of_a_custom_command_get_their_parameters(
    api_client: client.ApiClient, namespace: str, cluster_operator: OperatorProcess
) -> None:
    create_sweep(api_client, namespace, "custom", CUSTOM_SPEC)
    (trial,) = wait_for(lambda: trials(api_client, namespace, "custom"), 30, "the trial")
    trainer = trial["spec"]["trainer"]
    assert trainer["args"] == ["--lr=0.01", "--sizes", "[128,64,32]"]
    assert trainer["env"] == [{"name": "LR", "value": "0.01"}]
    assert trainer["config"]["model"]["hiddenSizes"] == [128, 64, 32]
    (pod,) = wait_for(lambda: job_pods(api_client, namespace, "custom-0"), 30, "the trial's pod")
    env = {var.name: var.value for var in pod.spec.containers[0].env}
    assert env["TRAINSMART_PARAM_LR"] == "0.01"
    assert env["TRAINSMART_PARAM_SIZES"] == "[128,64,32]"
    assert env["TRAINSMART_PARAMS_FILE"] == "/etc/trainsmart/params/params.json"
    assert json.loads(pod.metadata.annotations[PARAMETERS_ANNOTATION]) == {"lr": 0.01, "sizes": [128, 64, 32]}
    (volume,) = [volume for volume in pod.spec.volumes if volume.downward_api is not None]
    assert volume.downward_api.items[0].field_ref.field_path == f"metadata.annotations['{PARAMETERS_ANNOTATION}']"
