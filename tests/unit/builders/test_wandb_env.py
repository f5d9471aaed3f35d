"""W&B's run identity in the trainer container's env, for jobs whose env asks for W&B.

Pins:
- a job with a `WANDB_` variable gets WANDB_RUN_ID (the uid's hex digits: W&B's [a-z0-9]), WANDB_RESUME=allow
  and WANDB_NAME = the job's name, before the user's variables; the same job gives the same id on every
  attempt, another uid another id;
- a sweep's trial also gets WANDB_RUN_GROUP = the sweep's name (from the trial's sweep label);
- a variable the user set is not set again (theirs stays the only one);
- a job without any `WANDB_` variable gets none of them.
"""

from __future__ import annotations

from typing import Any

from support import models
from trainsmart.api import TrainingJob
from trainsmart.builders import build_worker_pod
from trainsmart.builders.env import wandb_run_id
from trainsmart.builders.trial import build_trial
from trainsmart.settings import OperatorSettings

SETTINGS = OperatorSettings()
UID = "6F1C2a0e-93b4-4d21-8c5e-0b7d9e4f1a23"
API_KEY_FROM_SECRET = {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "apiKey"}}}


def pod_env(spec: dict[str, Any], uid: str = UID, attempt: int = 0) -> list[dict[str, Any]]:
    job = models.make_job(spec, name="mnist", uid=uid)
    env: list[dict[str, Any]] = build_worker_pod(job, 0, attempt, SETTINGS)["spec"]["containers"][0]["env"]
    return env


def wandb_vars(env: list[dict[str, Any]]) -> dict[str, Any]:
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in env if var["name"].startswith("WANDB_")}


def test_a_job_that_uses_wandb_gets_a_stable_run_identity_before_the_users_variables() -> None:
    env = pod_env({"trainer": {"env": [API_KEY_FROM_SECRET]}})
    assert wandb_vars(env) == {
        "WANDB_RUN_ID": "6f1c2a0e93b44d218c5e0b7d9e4f1a23",
        "WANDB_RESUME": "allow",
        "WANDB_NAME": "mnist",
        "WANDB_API_KEY": API_KEY_FROM_SECRET["valueFrom"],
    }
    names = [var["name"] for var in env]
    assert names.index("WANDB_RUN_ID") < names.index("WANDB_API_KEY")
    assert wandb_vars(pod_env({"trainer": {"env": [API_KEY_FROM_SECRET]}}, attempt=3)) == wandb_vars(env)
    other = pod_env({"trainer": {"env": [API_KEY_FROM_SECRET]}}, uid="0b7d9e4f-1a23-4d21-8c5e-6f1c2a0e93b4")
    assert wandb_vars(other)["WANDB_RUN_ID"] != wandb_vars(env)["WANDB_RUN_ID"]


def test_a_run_id_has_only_lower_case_letters_and_digits() -> None:
    run_id = wandb_run_id(UID)
    assert run_id.isalnum() and run_id.islower() and len(run_id) == 32


def test_a_sweeps_trial_is_grouped_under_the_sweep() -> None:
    template = {"trainer": {"command": ["python", "train.py"], "env": [{"name": "WANDB_MODE", "value": "offline"}]}}
    parameters = [{"name": "lr", "type": "uniform", "min": 0.01, "max": 0.1}]
    objective = {"metric": "val_loss", "goal": "minimize"}
    spec = {"objective": objective, "maxTrials": 2, "parameters": parameters, "trialTemplate": template}
    manifest = build_trial(models.make_sweep(spec, name="tune"), 1, {"lr": 0.05})
    trial = TrainingJob.model_validate({**manifest, "metadata": {**manifest["metadata"], "uid": UID}})
    env = build_worker_pod(trial, 0, 0, SETTINGS)["spec"]["containers"][0]["env"]
    assert wandb_vars(env) == {
        "WANDB_RUN_ID": "6f1c2a0e93b44d218c5e0b7d9e4f1a23",
        "WANDB_RESUME": "allow",
        "WANDB_NAME": "tune-1",
        "WANDB_RUN_GROUP": "tune",
        "WANDB_MODE": "offline",
    }


def test_the_users_own_identity_variables_are_kept_and_not_set_twice() -> None:
    own = [
        {"name": "WANDB_MODE", "value": "offline"},
        {"name": "WANDB_RUN_ID", "value": "mine"},
        {"name": "WANDB_NAME", "value": "my run"},
    ]
    env = pod_env({"trainer": {"env": own}})
    assert [var["name"] for var in env].count("WANDB_RUN_ID") == 1
    assert wandb_vars(env) == {"WANDB_RUN_ID": "mine", "WANDB_NAME": "my run", "WANDB_MODE": "offline",
                               "WANDB_RESUME": "allow"}  # fmt: skip


def test_a_job_without_wandb_variables_gets_none() -> None:
    assert wandb_vars(pod_env({"trainer": {"env": [{"name": "SEED", "value": "1"}]}})) == {}
    assert wandb_vars(pod_env({})) == {}
