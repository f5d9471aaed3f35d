"""The sweep controller against a real apiserver, without a node agent (trial pods stay Pending).

Pins:
- a sweep gets parallelTrials trial TrainingJobs named `<sweep>-0`, `<sweep>-1`, owned by it, labelled with
  the sweep and the number, their parameters in the spec and in the annotation; no more appear while
  they run; the status has the trial table, counts, seed, startTime and every condition;
- raising parallelTrials while it runs adds trials at once, numbered on;
- spec.suspend on the sweep suspends its trials (spec.suspend, no `stopped` reason) and Suspended shows;
  resuming releases them;
- a spec the models refuse (slipping past a missing webhook) gets InvalidSpec with the field, one Warning
  Event, no trials and no further status writes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.builders.trial import PARAMETERS_ANNOTATION, STOPPED_ANNOTATION, TRIAL_NUMBER_LABEL, trial_selector
from trainsmart.devcluster.controlplane import ControlPlane, free_port

pytestmark = pytest.mark.cluster

HOST = "127.0.0.1"
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


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, trainsmart_crds: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    port = free_port(HOST)
    argv = [
        sys.executable, "-m", "trainsmart.cli", "operator", "--kubeconfig", str(control_plane.admin_kubeconfig),
        "--report-host", HOST, "--report-port", str(port), "--report-url", f"http://{HOST}:{port}/v1/reports",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    with log.open("ab") as out:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(1)
        assert process.poll() is None, log.read_text()
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log.read_text()[-4000:])


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def create_sweep(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HyperparamSweep", "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SWEEP_PLURAL, body
    )
    return created


def get_sweep(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    sweep: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, SWEEP_PLURAL, name
    )
    return sweep


def patch_sweep(api: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> None:
    objects = client.CustomObjectsApi(api)
    objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, name, {"spec": spec})


def trials(api: client.ApiClient, namespace: str, sweep: str) -> list[dict[str, Any]]:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, label_selector=trial_selector(sweep)
    )["items"]
    return sorted(items, key=lambda job: int(job["metadata"]["labels"][TRIAL_NUMBER_LABEL]))


def condition(body: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (body.get("status") or {}).get("conditions", []) if c["type"] == type_), {})


def test_parallel_trials_created_owned_and_tabled(api_client: client.ApiClient, namespace: str, operator: None) -> None:
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
    api_client: client.ApiClient, namespace: str, operator: None
) -> None:
    create_sweep(api_client, namespace, "bad", {**SPEC, "maxTrials": 2, "parallelTrials": 3})
    sweep = wait_for(
        lambda: (s := get_sweep(api_client, namespace, "bad")) and condition(s, "InvalidSpec") and s, 30, "InvalidSpec"
    )
    invalid = condition(sweep, "InvalidSpec")
    assert invalid["status"] == "True" and "parallelTrials" in invalid["message"]
    events = wait_for(
        lambda: [e for e in client.CoreV1Api(api_client).list_namespaced_event(namespace).items if e.type == "Warning"],
        15,
        "a Warning event",
    )
    assert events[0].involved_object.name == "bad"
    version = sweep["metadata"]["resourceVersion"]
    time.sleep(3)
    assert get_sweep(api_client, namespace, "bad")["metadata"]["resourceVersion"] == version
    assert trials(api_client, namespace, "bad") == []
