"""Issue 15's search algorithms end to end: control plane + scheduler + node agent + `trainsmart operator` +
the packaged trainer on `digits` (tiny MLPs, few epochs).

Pins:
- a multi-objective sweep (val_accuracy up, train_loss down; Optuna's multi-objective TPE) runs to
  Succeeded with its Pareto front in status: every trial on the front is dominated by no succeeded trial,
  every succeeded trial off it is dominated by one on it, and each trial's objective values are its
  TrainingJob's final metrics;
- a multi-fidelity TPE (`bohb`) sweep under ASHA survives an operator SIGKILL in the middle: trials are
  numbered 0..N-1 exactly once, the sweep Succeeds, and `bestTrial.checkpoint` names the best trial's
  claim and its best checkpoint at the epoch `bestTrial` reports.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import create_sweep, trials
from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV, SLOW_DIGITS
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, VERSION

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]

LR = {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 0.0005, "max": 0.05}
GOALS = {"val_accuracy": "maximize", "train_loss": "minimize"}


def template(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tolerations": GPU_TOLERATIONS, "trainer": {"env": ONE_THREAD_ENV, "config": config}, **extra}


def sweep_object(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    return dict(
        client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, name)
    )


def finished(api: client.ApiClient, namespace: str, name: str, timeout: float = 300) -> dict[str, Any]:
    body: dict[str, Any] = wait_for(
        lambda: (
            (s := sweep_object(api, namespace, name)).get("status", {}).get("phase") in ("Succeeded", "Failed") and s
        ),
        timeout,
        f"sweep {name} to finish",
        lambda: str(sweep_object(api, namespace, name).get("status")),
    )
    return dict(body["status"])


def dominates(a: dict[str, float], b: dict[str, float]) -> bool:
    """a is at least as good as b on every objective and better on one."""
    better = [(a[m] >= b[m] if goal == "maximize" else a[m] <= b[m], a[m] != b[m]) for m, goal in GOALS.items()]
    return all(ok for ok, _ in better) and any(differs for _, differs in better)


def test_a_multi_objective_sweep_puts_its_pareto_front_in_status(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = {
        "objectives": [{"metric": metric, "goal": goal} for metric, goal in GOALS.items()],
        "algorithm": {"name": "tpe", "seed": 5},
        "maxTrials": 4,
        "parallelTrials": 2,
        "parameters": [LR],
        "trialTemplate": template({**SLOW_DIGITS, "epochs": 2}),
    }
    create_sweep(api_client, namespace, "pareto", spec)
    status = finished(api_client, namespace, "pareto")
    assert status["phase"] == "Succeeded", status
    rows = {row["name"]: row for row in status["trials"]}
    succeeded = {name: row["objectiveValues"] for name, row in rows.items() if row["phase"] == "Succeeded"}
    assert len(succeeded) == 4, rows
    for job in trials(api_client, namespace, "pareto"):
        latest = job["status"]["metrics"]["latest"]
        assert succeeded[job["metadata"]["name"]] == {m: latest[m] for m in GOALS}
    front = {point["name"]: point["values"] for point in status["paretoFront"]}
    assert front and status["paretoFrontSize"] == len(front)
    for name, values in front.items():
        assert values == succeeded[name]
        assert not any(dominates(other, values) for other in succeeded.values()), (name, succeeded)
    for name, values in succeeded.items():
        if name not in front:
            assert any(dominates(on_front, values) for on_front in front.values()), (name, front)


def test_a_bohb_sweep_survives_an_operator_kill_and_points_at_the_best_model(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "bohb", "seed": 9},
        "maxTrials": 4,
        "parallelTrials": 2,
        "earlyStopping": {"rule": "asha", "minEpochs": 1, "reductionFactor": 2},
        "parameters": [LR],
        "trialTemplate": template({**SLOW_DIGITS, "epochs": 4}, checkpoint={"size": "1Gi"}),
    }
    create_sweep(api_client, namespace, "bohb", spec)
    wait_for(
        lambda: (
            (jobs := trials(api_client, namespace, "bohb"))
            and all(((job.get("status") or {}).get("progress") or {}).get("epoch") for job in jobs)
        ),
        120,
        "the first trials' first epochs",
    )
    operator_process.kill()
    time.sleep(2)  # trials go on training while no operator runs
    operator_process.start()
    status = finished(api_client, namespace, "bohb", timeout=360)
    assert status["phase"] == "Succeeded", status
    names = [job["metadata"]["name"] for job in trials(api_client, namespace, "bohb")]
    assert names == [f"bohb-{n}" for n in range(4)]
    assert [row["name"] for row in status["trials"]] == names and status["counts"]["total"] == 4
    best = status["bestTrial"]
    checkpoint = best["checkpoint"]
    assert checkpoint["claimName"] and checkpoint["path"], best
    assert (checkpoint["epoch"], checkpoint["value"]) == (best["epoch"], best["metricValue"]), best
