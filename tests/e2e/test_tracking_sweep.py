"""A sweep tracked end to end (issue 14): the real operator logs to a real `mlflow server`, the packaged
trainer writes TensorBoard files on each trial's checkpoint volume, and both say exactly what status says.

Pins, for a 2-trial random sweep of the digits MLP (2 epochs, a checkpoint volume per trial):
- the sweep is one MLflow run and each trial a child run of it (`mlflow.parentRunId`), with the trial's
  parameter value as a param, its objective history, epoch by epoch, equal to the trial's
  `status.metrics.history`, and its train_loss/val_loss histories equal to `status.metrics.lossCurve`;
  the best trial's run (and only it) is tagged best, and it is `bestTrial`;
- every trial's TensorBoard event files (found through its claim's volume, as `trainsmart tensorboard`
  finds them) hold the same objective values at the same steps, and the run's hyperparameters;
- `TrackingReady` is True on the sweep and on every trial.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import create_sweep, trials
from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV, SLOW_DIGITS
from support.mlflow_server import MlflowServer, mlflow_server
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, VERSION
from trainsmart.console.access import Cluster
from trainsmart.console.tensorboard import run_volumes
from trainsmart.tracking.mlflow_plan import BEST_TAG, PARENT_RUN_TAG, UID_TAG

mlflow_tracking = pytest.importorskip("mlflow.tracking", reason="the dev extra's mlflow is not installed")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

EXPERIMENT = "tracked-sweeps"
OBJECTIVE = "val_accuracy"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


def sweep_spec(uri: str) -> dict[str, Any]:
    return {
        "objective": {"metric": OBJECTIVE, "goal": "maximize"},
        "algorithm": {"name": "random", "seed": 7},
        "parameters": [
            {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 0.001, "max": 0.05}
        ],
        "maxTrials": 2,
        "parallelTrials": 2,
        "tracking": {"mlflow": {"trackingUri": uri, "experiment": EXPERIMENT}},
        "trialTemplate": {
            "tolerations": GPU_TOLERATIONS,
            "checkpoint": {"size": "1Gi"},
            "trainer": {"env": ONE_THREAD_ENV, "config": {**SLOW_DIGITS, "epochs": 2}},
        },
    }


def sweep_object(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, name)
    )


def tracking_ready(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "TrackingReady" and c.get("status") == "True" for c in conditions)


def objective_history(job: dict[str, Any]) -> list[tuple[int, float]]:
    points = ((job.get("status") or {}).get("metrics") or {}).get("history") or []
    return [(int(p["epoch"]), float(p["value"])) for p in points]


class Mlflow:
    def __init__(self, server: MlflowServer) -> None:
        self.client = mlflow_tracking.MlflowClient(tracking_uri=server.uri)

    def run_of(self, uid: str) -> Any | None:
        experiment = self.client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            return None
        runs = self.client.search_runs([experiment.experiment_id], f"tags.`{UID_TAG}` = '{uid}'")
        assert len(runs) <= 1, f"{len(runs)} runs for one object: {[r.info.run_id for r in runs]}"
        return runs[0] if runs else None

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))


def mlflow_agrees(mlflow: Mlflow, sweep: dict[str, Any], jobs: list[dict[str, Any]]) -> str | None:
    """None when MLflow holds exactly what status says; else what differs (the sync runs behind status)."""
    parent = mlflow.run_of(sweep["metadata"]["uid"])
    if parent is None:
        return "no run for the sweep"
    best = ((sweep.get("status") or {}).get("bestTrial") or {}).get("name")
    for job in jobs:
        name = job["metadata"]["name"]
        run = mlflow.run_of(job["metadata"]["uid"])
        if run is None:
            return f"no run for trial {name}"
        if run.data.tags.get(PARENT_RUN_TAG) != parent.info.run_id:
            return f"trial {name}'s run is not a child of the sweep's run"
        if (run.data.tags.get(BEST_TAG) == "true") != (name == best):
            return f"trial {name}: best tag {run.data.tags.get(BEST_TAG)!r}, bestTrial {best!r}"
        logged = mlflow.history(run.info.run_id, OBJECTIVE)
        if logged != objective_history(job):
            return f"trial {name}: MLflow {OBJECTIVE} {logged} vs status {objective_history(job)}"
        curve = ((job.get("status") or {}).get("metrics") or {}).get("lossCurve") or []
        for key, field in (("train_loss", "train"), ("val_loss", "validation")):
            expected = [(int(p["epoch"]), float(p[field])) for p in curve if p.get(field) is not None]
            if mlflow.history(run.info.run_id, key) != expected:
                return f"trial {name}: MLflow {key} {mlflow.history(run.info.run_id, key)} vs lossCurve {expected}"
        if run.info.status != "FINISHED":
            return f"trial {name}'s run is {run.info.status}"
    return None


def test_a_tracked_sweep_matches_its_status_in_mlflow_and_tensorboard(
    operator_process: Any, api_client: client.ApiClient, namespace: str, server: MlflowServer
) -> None:
    create_sweep(api_client, namespace, "tracked", sweep_spec(server.uri))
    sweep = wait_for(
        lambda: (
            (s := sweep_object(api_client, namespace, "tracked")).get("status", {}).get("phase")
            in ("Succeeded", "Failed")
            and s
        ),
        300,
        "the tracked sweep to finish",
    )
    assert sweep["status"]["phase"] == "Succeeded", sweep["status"]
    jobs = trials(api_client, namespace, "tracked")
    assert len(jobs) == 2 and all(objective_history(job) for job in jobs), [j.get("status") for j in jobs]

    mlflow = Mlflow(server)
    wait_for(
        lambda: mlflow_agrees(mlflow, sweep_object(api_client, namespace, "tracked"), jobs) is None,
        60,
        "MLflow to hold what status says",
        lambda: str(mlflow_agrees(mlflow, sweep_object(api_client, namespace, "tracked"), jobs)),
    )
    for job in jobs:
        run = mlflow.run_of(job["metadata"]["uid"])
        assert run is not None
        lr = job["spec"]["trainer"]["config"]["learningRate"]
        assert float(run.data.params["lr"]) == pytest.approx(lr), run.data.params
    wait_for(
        lambda: (
            all(tracking_ready(trial) for trial in trials(api_client, namespace, "tracked"))
            and tracking_ready(sweep_object(api_client, namespace, "tracked"))
        ),
        60,
        "TrackingReady on the sweep and its trials",
    )

    volumes = {run.job: run for run in run_volumes(Cluster(api_client, namespace), namespace, jobs)}
    for job in jobs:
        name = job["metadata"]["name"]
        directory = volumes[name].local_dir
        assert directory is not None and directory.is_dir(), f"no event files for {name}: {volumes[name]}"
        events = event_accumulator.EventAccumulator(str(directory))
        events.Reload()
        scalars = [(e.step, e.value) for e in events.Scalars(f"val/{OBJECTIVE}")]
        assert [step for step, _ in scalars] == [epoch for epoch, _ in objective_history(job)]
        assert [value for _, value in scalars] == pytest.approx(
            [value for _, value in objective_history(job)], rel=1e-6
        )
        assert _hparams_logged(directory), f"no hyperparameters in {name}'s event files"


def _hparams_logged(directory: Path) -> bool:
    """The HParams plugin's session-start record is among the run's summaries."""
    events = event_accumulator.EventAccumulator(str(directory))
    events.Reload()
    return "_hparams_/session_start_info" in events.PluginTagToContent("hparams")
