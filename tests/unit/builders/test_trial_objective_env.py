"""A sweep trial's pods tell the trainer the sweep's objective, so its best checkpoint follows it (issue 15).

Pins:
- a trial built from a sweep gets TRAINSMART_OBJECTIVE_METRIC/_GOAL from its objective annotations, and the
  trainer's own settings parser reads them back as the metric and direction;
- a plain TrainingJob gets neither (its trainer keeps the best by its own objective), and a user cannot set
  them in `trainer.env` (they are the operator's).
"""

from __future__ import annotations

from support.models import make_job, make_sweep
from trainsmart.api import TrainingJob
from trainsmart.builders import build_worker_pod
from trainsmart.builders.env import is_reserved_env_name
from trainsmart.builders.trial import build_trial
from trainsmart.settings import OperatorSettings
from trainsmart_trainer import contract
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.settings import runtime_settings

SWEEP = {
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "parameters": [{"name": "lr", "path": "trainer.config.learningRate", "type": "choice", "values": [0.01]}],
    "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
    "maxTrials": 1,
}


def literal_env(job: TrainingJob) -> dict[str, str]:
    pod = build_worker_pod(job, 0, 0, OperatorSettings())
    return {var["name"]: var["value"] for var in pod["spec"]["containers"][0]["env"] if "value" in var}


def test_a_trials_pods_carry_the_sweeps_objective_for_the_trainer() -> None:
    manifest = build_trial(make_sweep(SWEEP), 0, {"lr": 0.01})
    trial = TrainingJob.model_validate({**manifest, "metadata": {**manifest["metadata"], "uid": "t-0"}})
    env = literal_env(trial)
    assert env[contract.OBJECTIVE_METRIC] == "val_accuracy" and env[contract.OBJECTIVE_GOAL] == "maximize"
    settings = runtime_settings(env, config=TrainerConfig())
    assert (settings.objective_metric, settings.objective_goal) == (
        "val_accuracy",
        contract.ObjectiveDirection.MAXIMIZE,
    )


def test_a_plain_job_has_no_objective_variables_and_users_cannot_set_them() -> None:
    env = literal_env(make_job({"trainer": {"config": {"epochs": 2}}}))
    assert contract.OBJECTIVE_METRIC not in env and contract.OBJECTIVE_GOAL not in env
    assert is_reserved_env_name(contract.OBJECTIVE_METRIC) and is_reserved_env_name(contract.OBJECTIVE_GOAL)
