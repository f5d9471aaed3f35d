"""MLflow tracking logged by the operator (issue 14), against a real `mlflow server` (sqlite, loopback)
started once for this module and read back through MLflow's own client.

Pins:
- the sync alone (no apiserver): a sweep becomes a parent run (search-space params, best-so-far per trial
  number) and its trials child runs (mlflow.parentRunId, their parameters, objective histories equal to
  their statuses); the best trial carries trainsmart.dev/best=true and loses it to a better one; a fresh
  sync (an operator restart) finds the same runs by uid: no duplicate run, no duplicate point;
- the operator: a job naming the server gets a run with every metric of the epoch reports it received,
  step = epoch, the job's tags, and TrackingReady=True; deleted while running, its run ends KILLED (tagged
  trainsmart.dev/deleted);
- a job left to the operator's default tracking URI, which points at a closed port, still gets its pods
  and its reports folded, and shows TrackingReady=False/TrackingUnreachable; the token of its
  credentialsSecret appears in no status, Event or operator log line.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import condition, create_job, get_job, job_pods
from support.manifests import random_lr_sweep_spec, sweep_body, trainingjob_body
from support.mlflow_server import MlflowServer, mlflow_server
from support.waiting import wait_for
from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION, HyperparamSweep, TrainingJob
from trainsmart.api.sweep_status import BestTrial, HyperparamSweepStatus, TrialRecord
from trainsmart.api.trainingjob_status import HistoryPoint, MetricsStatus, Progress, TrainingJobStatus
from trainsmart.devcluster.controlplane import free_port
from trainsmart.devcluster.operator_process import OperatorProcess
from trainsmart.names import PARAMETERS_ANNOTATION, SWEEP_NAME_LABEL, TRIAL_NUMBER_LABEL
from trainsmart.report_endpoint import JobKey
from trainsmart.status.tracking_condition import TrackingState
from trainsmart.tracking.mlflow_plan import BEST_TAG, DELETED_TAG, JOB_TAG, PARENT_RUN_TAG, UID_TAG
from trainsmart.tracking.mlflow_sync import TrackedKind, TrackingSync

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="the mlflow package (dev extra) is not installed")

pytestmark = pytest.mark.cluster

CONFIG = {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "epochs": 3}
TOKEN = "tok-7f3a9c-never-shown"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


@pytest.fixture(scope="module")
def closed_uri() -> str:
    return f"http://127.0.0.1:{free_port('127.0.0.1')}"


@pytest.fixture(scope="module")
def tracking_operator(
    start_operator: Any, trainsmart_crds: dict[str, Any], closed_uri: str
) -> Iterator[OperatorProcess]:
    """The operator with a default tracking URI nobody answers at (the chart value, as a flag)."""
    operator = start_operator(extra_args=["--mlflow-tracking-uri", closed_uri])
    try:
        yield operator
    finally:
        operator.stop()
        print(operator.tail())


def mlflow_client(server: MlflowServer) -> Any:
    return mlflow_tracking.MlflowClient(tracking_uri=server.uri)


def runs_tagged(server: MlflowServer, experiment: str, key: str, value: str) -> list[Any]:
    found = mlflow_client(server).get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(mlflow_client(server).search_runs([found.experiment_id], f"tags.`{key}` = '{value}'"))


def history(server: MlflowServer, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow_client(server).get_metric_history(run_id, key))


# ---- the sync alone -------------------------------------------------------------------------------------------

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def make_sweep(server: MlflowServer) -> HyperparamSweep:
    tracking = {"mlflow": {"trackingUri": server.uri, "experiment": "sweeps"}}
    spec = random_lr_sweep_spec({"trainer": {"config": CONFIG}}, tracking=tracking)
    return HyperparamSweep.model_validate(sweep_body("tune", spec, namespace="team", uid="sweep-uid"))


def make_trial(server: MlflowServer, number: int, lr: float) -> TrainingJob:
    body = trainingjob_body(
        f"tune-{number}",
        {"trainer": {"config": CONFIG}, "tracking": {"mlflow": {"trackingUri": server.uri, "experiment": "sweeps"}}},
        namespace="team",
        uid=f"trial-uid-{number}",
        labels={SWEEP_NAME_LABEL: "tune", TRIAL_NUMBER_LABEL: str(number)},
        annotations={PARAMETERS_ANNOTATION: json.dumps({"lr": lr})},
        ownerReferences=[{"kind": "HyperparamSweep", "name": "tune", "uid": "sweep-uid", "controller": True}],
    )
    return TrainingJob.model_validate(body)


def trial_status(values: list[float]) -> TrainingJobStatus:
    return TrainingJobStatus(
        phase="Succeeded",
        completion_time=NOW,
        progress=Progress(epoch=len(values), report_time=NOW),
        metrics=MetricsStatus(
            objective="val_accuracy",
            latest={"val_accuracy": values[-1]},
            history=[HistoryPoint(epoch=i + 1, value=v) for i, v in enumerate(values)],
        ),
    )


def sweep_status(values: dict[int, float], best: int) -> HyperparamSweepStatus:
    rows = [
        TrialRecord(name=f"tune-{n}", number=n, phase="Succeeded", metric_value=v) for n, v in sorted(values.items())
    ]
    return HyperparamSweepStatus(
        phase="Running", trials=rows, best_trial=BestTrial(name=f"tune-{best}", metric_value=values[best])
    )


async def settle(sync: TrackingSync, keys: list[tuple[TrackedKind, JobKey]], limit: float = 20.0) -> None:
    """Until every key's run is synced (its health says so)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        states = [getattr(sync.health(kind, key), "state", None) for kind, key in keys]
        if all(state == TrackingState.SYNCED for state in states) and not any(run.task for run in sync._runs.values()):
            return
        assert loop.time() < deadline, f"not synced: {states}"
        await asyncio.sleep(0.05)


async def offer_all(sync: TrackingSync, server: MlflowServer, curves: dict[int, list[float]], best: int) -> None:
    """The trials first (their runs may not find the parent yet), then the sweep, whose sync points its
    children at its run and tags the best one."""
    keys = []
    for number, curve in curves.items():
        key = JobKey("team", f"tune-{number}")
        sync.offer_job(key, make_trial(server, number, 0.01 * (number + 1)), trial_status(curve))
        keys.append((TrackedKind.JOB, key))
    await settle(sync, keys)
    sweep_key = JobKey("team", "tune")
    sync.offer_sweep(sweep_key, make_sweep(server), sweep_status({n: max(c) for n, c in curves.items()}, best))
    await settle(sync, [*keys, (TrackedKind.SWEEP, sweep_key)])


@pytest.mark.asyncio
async def test_sync_logs_a_sweep_as_parent_run_with_trials_as_children(server: MlflowServer) -> None:
    curves = {0: [0.5, 0.8], 1: [0.4, 0.6, 0.7]}
    changed: list[tuple[TrackedKind, JobKey]] = []

    async def no_secret(namespace: str, name: str) -> None:
        return None

    sync = TrackingSync(no_secret, lambda kind, key: changed.append((kind, key)))
    await sync.start()
    try:
        await offer_all(sync, server, curves, best=0)
    finally:
        await sync.stop()
    assert (TrackedKind.JOB, JobKey("team", "tune-0")) in changed  # health changes reconcile the object

    (parent,) = runs_tagged(server, "sweeps", UID_TAG, "sweep-uid")
    assert parent.data.params["objective.metric"] == "val_accuracy"
    assert parent.data.params["space.lr"].startswith("loguniform(")
    assert history(server, parent.info.run_id, "best_val_accuracy") == [(0, 0.8), (1, 0.8)]
    children = runs_tagged(server, "sweeps", PARENT_RUN_TAG, parent.info.run_id)
    assert sorted(run.data.tags[JOB_TAG] for run in children) == ["tune-0", "tune-1"]
    for run in children:
        number = int(run.data.tags[JOB_TAG].rsplit("-", 1)[1])
        assert run.info.status == "FINISHED"
        assert run.data.params["lr"] == str(0.01 * (number + 1))
        assert run.data.params["config.dataset.name"] == "digits"
        expected = [(epoch + 1, value) for epoch, value in enumerate(curves[number])]
        assert history(server, run.info.run_id, "val_accuracy") == expected
    assert [run.data.tags[JOB_TAG] for run in children if run.data.tags.get(BEST_TAG) == "true"] == ["tune-0"]

    # A restarted operator: a fresh sync finds the same runs, adds the new point only, moves the best tag.
    curves[1] = [0.4, 0.6, 0.7, 0.95]
    sync = TrackingSync(no_secret, lambda kind, key: None)
    await sync.start()
    try:
        await offer_all(sync, server, curves, best=1)
    finally:
        await sync.stop()
    assert len(runs_tagged(server, "sweeps", UID_TAG, "sweep-uid")) == 1
    children = runs_tagged(server, "sweeps", PARENT_RUN_TAG, parent.info.run_id)
    assert len(children) == 2
    by_name = {run.data.tags[JOB_TAG]: run for run in children}
    assert history(server, by_name["tune-1"].info.run_id, "val_accuracy") == [(1, 0.4), (2, 0.6), (3, 0.7), (4, 0.95)]
    assert history(server, by_name["tune-0"].info.run_id, "val_accuracy") == [(1, 0.5), (2, 0.8)]
    assert BEST_TAG not in by_name["tune-0"].data.tags and by_name["tune-1"].data.tags[BEST_TAG] == "true"


# ---- the operator ---------------------------------------------------------------------------------------------


def post_epoch(base: str, api: client.ApiClient, namespace: str, name: str, epoch: int, **metrics: float) -> None:
    secret = wait_for(lambda: _secret(api, namespace, f"{name}-report-token"), 30, f"{name}'s report token")
    token = base64.b64decode(secret.data["token"]).decode()
    body = {
        "job": {"namespace": namespace, "name": name},
        "kind": "epoch",
        "time": datetime.now(UTC).isoformat(),
        "epoch": epoch,
        "totalEpochs": 3,
        "metrics": metrics,
        "device": {"type": "cpu"},
    }
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{base}/v1/reports",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 202


def _secret(api: client.ApiClient, namespace: str, name: str) -> client.V1Secret | None:
    try:
        return client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def tracking_ready(job: dict[str, Any]) -> dict[str, Any]:
    return condition(job, "TrackingReady") if (job.get("status") or {}).get("conditions") else {}


def test_operator_logs_reported_epochs_to_the_jobs_run(
    api_client: client.ApiClient, namespace: str, tracking_operator: OperatorProcess, server: MlflowServer
) -> None:
    spec = {"trainer": {"config": CONFIG}, "tracking": {"mlflow": {"trackingUri": server.uri, "experiment": "ops"}}}
    created = create_job(api_client, namespace, "logged", spec)
    base = tracking_operator.report_base
    post_epoch(base, api_client, namespace, "logged", 1, val_loss=0.5, val_accuracy=0.6)
    wait_for(lambda: (get_job(api_client, namespace, "logged").get("status") or {}).get("progress"), 15, "epoch 1")
    post_epoch(base, api_client, namespace, "logged", 2, val_loss=0.4, val_accuracy=0.7)

    def logged() -> Any:
        runs = runs_tagged(server, "ops", UID_TAG, created["metadata"]["uid"])
        return runs and len(history(server, runs[0].info.run_id, "val_loss")) == 2 and runs[0]

    run = wait_for(logged, 30, "both epochs in MLflow", tracking_operator.tail)
    assert history(server, run.info.run_id, "val_loss") == [(1, 0.5), (2, 0.4)]
    assert history(server, run.info.run_id, "val_accuracy") == [(1, 0.6), (2, 0.7)]
    assert run.data.tags["trainsmart.dev/namespace"] == namespace and run.data.tags[JOB_TAG] == "logged"
    assert run.data.tags["trainsmart.dev/attempt"] == "0" and run.data.params["config.epochs"] == "3"
    ready = wait_for(
        lambda: (c := tracking_ready(get_job(api_client, namespace, "logged"))).get("status") == "True" and c,
        15,
        "TrackingReady=True",
    )
    assert run.info.run_id in ready["message"]

    client.CustomObjectsApi(api_client).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, TRAININGJOB_PLURAL, "logged"
    )
    ended = wait_for(
        lambda: (r := mlflow_client(server).get_run(run.info.run_id)).info.status == "KILLED" and r,
        30,
        "the deleted job's run KILLED",
        tracking_operator.tail,
    )
    assert ended.info.end_time is not None and ended.data.tags[DELETED_TAG] == "true"


def test_an_unreachable_server_never_holds_a_job_back_and_no_secret_shows(
    api_client: client.ApiClient, namespace: str, tracking_operator: OperatorProcess, closed_uri: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(
        namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name="mlflow-creds"), string_data={"MLFLOW_TRACKING_TOKEN": TOKEN}
        ),
    )
    spec = {"trainer": {"config": CONFIG}, "tracking": {"mlflow": {"credentialsSecret": "mlflow-creds"}}}
    create_job(api_client, namespace, "offline", spec)
    wait_for(lambda: len(job_pods(api_client, namespace, "offline")) == 1, 15, "the replica pod")
    post_epoch(tracking_operator.report_base, api_client, namespace, "offline", 1, val_loss=0.5)
    job = wait_for(
        lambda: (
            (j := get_job(api_client, namespace, "offline"))
            and (j.get("status") or {}).get("progress", {}).get("epoch") == 1
            and tracking_ready(j).get("reason") == "TrackingUnreachable"
            and j
        ),
        20,
        "the report folded and TrackingReady=False",
        tracking_operator.tail,
    )
    ready = tracking_ready(job)
    assert ready["status"] == "False" and closed_uri in ready["message"]
    assert condition(job, "Created")["status"] == "True" and job["status"]["phase"] == "Pending"
    events = core.list_namespaced_event(namespace).items
    shown = (
        json.dumps(job)
        + " ".join(str(event.message) for event in events)
        + Path(tracking_operator.log_path).read_text()
    )
    assert TOKEN not in shown
