"""HyperparamSweeps end to end: control plane + scheduler + node agent + `trainsmart operator` + the packaged
trainer on `digits` (tiny MLPs, few epochs), trials as real TrainingJobs.

Pins:
- a TPE sweep runs to Succeeded; its operator is SIGKILLed and restarted mid-sweep, and still the trials
  are numbered 0..N-1 exactly once; bestTrial is the best row of the trial table, which agrees with each
  child's own status;
- ASHA pauses the worse trial at its first rung (EarlyStopped) and promotes the paused better one, which
  resumes from its checkpoint (the trainer says "resumed from", its epochs continue to the last, no
  restart is counted);
- maxDuration used up -> BudgetExhausted, the running trial stopped, no new trials;
- objective.target reached -> GoalReached, the remaining trials stopped, Succeeded.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from support.kubeapi import condition, create_sweep, trials
from support.manifests import GPU_TOLERATIONS, ONE_THREAD_ENV, SLOW_DIGITS
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, VERSION
from trainsmart.names import JOB_NAME_LABEL

pytestmark = pytest.mark.e2e

LR = {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 0.0005, "max": 0.05}


def template(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tolerations": GPU_TOLERATIONS, "trainer": {"env": ONE_THREAD_ENV, "config": config}, **extra}


def sweep_status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    body = client.CustomObjectsApi(api).get_namespaced_custom_object(GROUP, VERSION, namespace, SWEEP_PLURAL, name)
    return dict(body.get("status") or {})


def describe(api: client.ApiClient, namespace: str, sweep: str) -> str:
    status = sweep_status(api, namespace, sweep)
    lines = [f"sweep: phase={status.get('phase')} counts={status.get('counts')}"]
    lines += [
        f"  {c['type']}={c['status']} {c.get('reason')}: {c.get('message')}" for c in status.get("conditions", [])
    ]
    for job in trials(api, namespace, sweep):
        s = job.get("status") or {}
        lines.append(
            f"trial {job['metadata']['name']} suspend={job['spec'].get('suspend')} phase={s.get('phase')} "
            f"history={[(p['epoch'], round(p['value'], 3)) for p in (s.get('metrics') or {}).get('history', [])]}"
        )
    return "\n".join(lines)


def wait_finished(api: client.ApiClient, namespace: str, sweep: str, timeout: float = 240) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        lambda: (s := sweep_status(api, namespace, sweep)).get("phase") in ("Succeeded", "Failed") and s,
        timeout,
        f"sweep {sweep} to finish",
        lambda: describe(api, namespace, sweep),
    )


def child_best(job: dict[str, Any]) -> float | None:
    """The best val_accuracy the trial's own status shows: its history, and `best` (which also has the
    values of epoch reports that did not get through, e.g. while the operator was down)."""
    metrics = (job.get("status") or {}).get("metrics") or {}
    values = [point["value"] for point in metrics.get("history") or []]
    values += [metrics["best"]["val_accuracy"]] if "val_accuracy" in (metrics.get("best") or {}) else []
    return max(values, default=None)


def test_tpe_sweep_completes_with_the_best_trial_across_an_operator_restart(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "tpe", "seed": 11, "tpe": {"startupTrials": 2}},
        "maxTrials": 4,
        "parallelTrials": 2,
        "parameters": [LR, {"name": "width", "path": "trainer.config.batchSize", "type": "choice", "values": [16, 64]}],
        "trialTemplate": template({**SLOW_DIGITS, "batchSize": 2, "epochs": 8}),
    }
    create_sweep(api_client, namespace, "tpe", spec)
    # Killed once the running trainers have reported an epoch, with most of their epochs to go: a trainer
    # retries its reports through an outage while it trains (and for 10 s at its end), but one that never
    # reached the endpoint gives up at once (its trial would then end NoMetric).
    wait_for(
        lambda: (
            (jobs := trials(api_client, namespace, "tpe"))
            and all(((job.get("status") or {}).get("progress") or {}).get("epoch") for job in jobs)
        ),
        90,
        "the first trials' first epochs",
        lambda: describe(api_client, namespace, "tpe"),
    )
    operator_process.kill()
    time.sleep(2)  # trials go on training while no operator runs
    operator_process.start()
    status = wait_finished(api_client, namespace, "tpe")
    assert status["phase"] == "Succeeded", describe(api_client, namespace, "tpe")
    children = trials(api_client, namespace, "tpe")
    assert [job["metadata"]["name"] for job in children] == ["tpe-0", "tpe-1", "tpe-2", "tpe-3"]
    table = status["trials"]
    assert [row["name"] for row in table] == ["tpe-0", "tpe-1", "tpe-2", "tpe-3"]
    assert status["counts"]["total"] == 4 and status["counts"]["succeeded"] == 4, table
    assert condition(status, "Succeeded")["reason"] == "MaxTrialsReached"
    by_value = max(table, key=lambda row: (row["metricValue"], -row["number"]))
    best = status["bestTrial"]
    assert (best["name"], best["metricValue"]) == (by_value["name"], by_value["metricValue"])
    for job in children:
        row = next(row for row in table if row["name"] == job["metadata"]["name"])
        assert row["metricValue"] == child_best(job)
        assert job["status"]["metrics"]["objective"] == "val_accuracy"
        assert row["parameters"]["lr"] == job["spec"]["trainer"]["config"]["learningRate"]


def test_asha_pauses_the_worse_trial_and_resumes_the_promoted_one_from_its_checkpoint(
    operator_process: Any, node_agent: Any, api_client: client.ApiClient, namespace: str
) -> None:
    # Grid order: trial 0 gets the good learning rate, trial 1 one too small to learn. With reduction
    # factor 2 and one trial at a time, trial 0 pauses at the 1-epoch rung (1 of the 2 needed trials has
    # reached it); trial 1 then reaches the rung worse and is paused, and trial 0 is promoted.
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "grid"},
        "parallelTrials": 1,
        "earlyStopping": {"rule": "asha", "minEpochs": 1, "reductionFactor": 2},
        "parameters": [
            {"name": "lr", "path": "trainer.config.learningRate", "type": "choice", "values": [0.003, 1e-6]}
        ],
        # Enough epochs that the sweep's stop (two reconciles and a SIGTERM away) lands before the last one.
        "trialTemplate": template({**SLOW_DIGITS, "epochs": 10}, checkpoint={"size": "1Gi"}),
    }
    create_sweep(api_client, namespace, "asha", spec)
    status = wait_finished(api_client, namespace, "asha", timeout=300)
    assert status["phase"] == "Succeeded", describe(api_client, namespace, "asha")
    rows = {row["name"]: row for row in status["trials"]}
    assert rows["asha-1"]["phase"] == "EarlyStopped", describe(api_client, namespace, "asha")
    assert rows["asha-1"]["reason"] == "EarlyStopped"
    assert "ASHA" in rows["asha-1"]["message"]
    assert rows["asha-0"]["phase"] == "Succeeded" and status["bestTrial"]["name"] == "asha-0"
    promoted = next(job for job in trials(api_client, namespace, "asha") if job["metadata"]["name"] == "asha-0")
    job_status = promoted["status"]
    assert job_status["progress"]["epoch"] == 10 and job_status["restarts"] == 0
    assert [point["epoch"] for point in job_status["metrics"]["history"]] == list(range(1, 11))
    events = client.CoreV1Api(api_client).list_namespaced_event(namespace).items
    assert any(e.reason == "TrialPromoted" and "asha-0" in e.message for e in events)
    core = client.CoreV1Api(api_client)
    [pod] = core.list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABEL}=asha-0").items
    log = node_agent.container_log(pod, "trainer")
    assert "resumed from" in log and "0 epochs done" not in log, log[-2000:]


def test_duration_budget_stops_the_sweep(operator_process: Any, api_client: client.ApiClient, namespace: str) -> None:
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "random", "seed": 1},
        "maxTrials": 5,
        "parallelTrials": 1,
        "budget": {"maxDuration": "15s"},
        "parameters": [LR],
        "trialTemplate": template({**SLOW_DIGITS, "epochs": 50}),
    }
    create_sweep(api_client, namespace, "brief", spec)
    status = wait_finished(api_client, namespace, "brief", timeout=120)
    budget = condition(status, "BudgetExhausted")
    assert (budget["status"], budget["reason"]) == ("True", "MaxDurationReached")
    assert status["counts"]["total"] == 1 and status["counts"]["running"] == 0
    assert status["trials"][0]["phase"] == "EarlyStopped" and status["trials"][0]["reason"] == "MaxDurationReached"
    [job] = trials(api_client, namespace, "brief")
    assert job["spec"]["suspend"] is True
    time.sleep(2)
    assert len(trials(api_client, namespace, "brief")) == 1


def test_goal_reached_stops_the_remaining_trials(
    operator_process: Any, api_client: client.ApiClient, namespace: str
) -> None:
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize", "target": 0.5},
        "algorithm": {"name": "random", "seed": 2},
        "maxTrials": 6,
        "parallelTrials": 2,
        "parameters": [LR],
        "trialTemplate": template({**SLOW_DIGITS, "epochs": 30}),
    }
    create_sweep(api_client, namespace, "goal", spec)
    status = wait_finished(api_client, namespace, "goal", timeout=150)
    assert status["phase"] == "Succeeded", describe(api_client, namespace, "goal")
    goal = condition(status, "GoalReached")
    assert goal["status"] == "True" and status["bestTrial"]["metricValue"] >= 0.5
    assert status["counts"]["total"] == 2 and status["counts"]["running"] == status["counts"]["pending"] == 0
    assert all(job["spec"]["suspend"] for job in trials(api_client, namespace, "goal"))
