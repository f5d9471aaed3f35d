"""A sweep trial's parameters reach any command: placeholders in the trial, env and a file in its pods.

Pins:
- build_trial substitutes `${params.NAME}` in the template's trainer command, args and env values (every
  value type as its JSON text, `$${` left as a literal `${`), and also sets parameters that have a path;
  a parameter without a path still lands in the parameters annotation; the trial passes TrainingJob
  admission;
- a trial's pod gets `TRAINSMART_PARAM_<NAME>` per parameter (the placeholder's text) and
  `TRAINSMART_PARAMS_FILE`, placed before the user's variables so `$(TRAINSMART_PARAM_LR)` resolves;
  resolved the way the node agent resolves a pod's env, they read back as built;
- the file: a read-only downwardAPI volume of the pod's copy of the parameters annotation, which the node
  agent projects as a JSON object equal to the trial's parameters (lists stay lists);
- a job that is not a trial gets none of this; `spec.trainer.env` may not shadow a parameter variable
  (the entry is dropped from the pod).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from support import models
from trainsmart.admission.rules import validate_trainingjob
from trainsmart.api import HyperparamSweep, TrainingJob
from trainsmart.builders import build_worker_pod
from trainsmart.builders.trial import build_trial
from trainsmart.builders.trial_params import PARAMS_DIR, PARAMS_FILE_PATH, PARAMS_VOLUME
from trainsmart.devcluster.agent.podenv import ConfigMapData, resolve_env
from trainsmart.devcluster.agent.volumes import project_downward
from trainsmart.names import PARAMETERS_ANNOTATION
from trainsmart.settings import OperatorSettings
from trainsmart_trainer import contract

SETTINGS = OperatorSettings()
TEMPLATE: dict[str, Any] = {
    "trainer": {
        "image": "python:3.12-slim",
        "command": ["python", "train.py", "--optimizer=${params.opt}"],
        "args": ["--lr", "${params.lr}", "--sizes", "${params.sizes}", "--bn=${params.bn}", "$${params.lr}"],
        "env": [
            {"name": "BATCH", "value": "${params.batch}"},
            {"name": "LR_AGAIN", "value": "$(TRAINSMART_PARAM_LR)"},
        ],
    },
}
PARAMS: dict[str, Any] = {"lr": 0.001, "batch": 32, "bn": True, "sizes": [128, 64, 32], "opt": "adamw"}


class NoObjects:
    """An ObjectSource with no ConfigMaps or Secrets: a trial's parameters need none."""

    def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        return None

    def secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return None


def make_sweep() -> HyperparamSweep:
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "maxTrials": 4,
        "parameters": [
            {"name": "lr", "type": "loguniform", "min": 1e-4, "max": 0.1},
            {"name": "batch", "path": "replicas", "type": "choice", "values": [32, 64]},
            {"name": "bn", "type": "choice", "values": [True, False]},
            {"name": "sizes", "type": "choice", "values": [[32], [128, 64, 32]]},
            {"name": "opt", "type": "choice", "values": ["adam", "adamw"]},
        ],
        "trialTemplate": TEMPLATE,
    }
    return models.make_sweep(spec, generation=None)


def trial_job() -> TrainingJob:
    manifest = build_trial(make_sweep(), 2, PARAMS)
    return TrainingJob.model_validate({**manifest, "metadata": {**manifest["metadata"], "uid": "trial-uid"}})


def test_the_trial_has_every_placeholder_substituted() -> None:
    manifest = build_trial(make_sweep(), 2, PARAMS)
    trainer = manifest["spec"]["trainer"]
    assert trainer["command"] == ["python", "train.py", "--optimizer=adamw"]
    assert trainer["args"] == ["--lr", "0.001", "--sizes", "[128,64,32]", "--bn=true", "${params.lr}"]
    assert trainer["env"] == [
        {"name": "BATCH", "value": "32"},
        {"name": "LR_AGAIN", "value": "$(TRAINSMART_PARAM_LR)"},
    ]
    assert manifest["spec"]["replicas"] == 32  # a path and no placeholder: set where the path says
    assert json.loads(manifest["metadata"]["annotations"][PARAMETERS_ANNOTATION]) == PARAMS
    assert validate_trainingjob(manifest) == []


def test_the_template_keeps_its_placeholders() -> None:
    sweep = make_sweep()
    build_trial(sweep, 0, PARAMS)
    assert sweep.spec.trial_template.trainer.args[1] == "${params.lr}"


def test_a_trial_pod_gets_every_parameter_as_a_variable_before_the_users_own() -> None:
    pod = build_worker_pod(trial_job(), 0, 0, SETTINGS)
    env = pod["spec"]["containers"][0]["env"]
    names = [var["name"] for var in env]
    expected = {
        "TRAINSMART_PARAM_LR": "0.001",
        "TRAINSMART_PARAM_BATCH": "32",
        "TRAINSMART_PARAM_BN": "true",
        "TRAINSMART_PARAM_SIZES": "[128,64,32]",
        "TRAINSMART_PARAM_OPT": "adamw",
        contract.PARAMS_FILE: PARAMS_FILE_PATH,
    }
    assert {var["name"]: var["value"] for var in env if var["name"] in expected} == expected
    assert max(names.index(name) for name in expected) < names.index("BATCH")
    resolved = resolve_env(pod, pod["spec"]["containers"][0], source=NoObjects(), pod_ip="10.1.0.5", host_ip="10.0.0.2")
    assert resolved["LR_AGAIN"] == "0.001"
    assert resolved["TRAINSMART_PARAM_SIZES"] == "[128,64,32]"


def test_a_trial_pod_gets_the_parameters_as_a_json_file() -> None:
    pod = build_worker_pod(trial_job(), 0, 0, SETTINGS)
    volume = next(v for v in pod["spec"]["volumes"] if v["name"] == PARAMS_VOLUME)
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == PARAMS_VOLUME)
    assert mount == {"name": PARAMS_VOLUME, "mountPath": PARAMS_DIR, "readOnly": True}
    (projected,) = project_downward(pod, volume["downwardAPI"]["items"], 0o644)
    assert f"{PARAMS_DIR}/{projected.path}" == PARAMS_FILE_PATH
    assert json.loads(projected.data) == PARAMS


def test_a_job_that_is_not_a_trial_gets_no_parameters() -> None:
    pod = build_worker_pod(models.make_job({"trainer": {"env": [{"name": "A", "value": "1"}]}}), 0, 0, SETTINGS)
    names = {var["name"] for var in pod["spec"]["containers"][0]["env"]}
    assert contract.PARAMS_FILE not in names
    assert not any(name.startswith(contract.PARAM_ENV_PREFIX) for name in names)
    assert PARAMS_VOLUME not in {v["name"] for v in pod["spec"]["volumes"]}
    assert PARAMETERS_ANNOTATION not in (pod["metadata"].get("annotations") or {})


def test_user_env_cannot_shadow_a_parameter_variable() -> None:
    job = models.make_job({"trainer": {"env": [{"name": "TRAINSMART_PARAM_LR", "value": "9"}]}})
    names = [var["name"] for var in build_worker_pod(job, 0, 0, SETTINGS)["spec"]["containers"][0]["env"]]
    assert "TRAINSMART_PARAM_LR" not in names


def test_parameter_variable_names_are_upper_case_with_underscores() -> None:
    assert contract.param_env_name("learning_rate") == "TRAINSMART_PARAM_LEARNING_RATE"
    assert contract.param_env_name("hiddenSizes2") == "TRAINSMART_PARAM_HIDDENSIZES2"
    assert contract.param_env_name("a.b-c") == "TRAINSMART_PARAM_A_B_C"
