"""What a sweep trial's pods get of its parameters: one environment variable each, and all of them as a file.

A script that takes no placeholder still reads its trial's point however it likes: `TRAINSMART_PARAM_LR`
(the same text `${params.lr}` becomes), or the JSON file named by `TRAINSMART_PARAMS_FILE`, which keeps
the values' types (`[64, 64]` stays a list). Both derive from the trial's parameters annotation alone, so
a pod built after an operator restart gets exactly what the first one got.

The file is a downwardAPI volume of the pod's own copy of that annotation: no ConfigMap to create, own
and delete per trial, the kubelet (and the local node agent) writes it, and it exists before the
container starts. Jobs without the annotation (every job that is not a trial) get none of this.
"""

from __future__ import annotations

from typing import Any, Final

from trainsmart.api import TrainingJob
from trainsmart.api.common import RESERVED_VOLUME_PREFIX, ParameterValue
from trainsmart.api.placeholders import render_value
from trainsmart.builders.trial import decode_parameters, encode_parameters
from trainsmart.names import PARAMETERS_ANNOTATION
from trainsmart_trainer import contract

PARAMS_VOLUME: Final = f"{RESERVED_VOLUME_PREFIX}params"
PARAMS_DIR: Final = "/etc/trainsmart/params"
PARAMS_FILE_NAME: Final = "params.json"
PARAMS_FILE_PATH: Final = f"{PARAMS_DIR}/{PARAMS_FILE_NAME}"


def trial_parameters(job: TrainingJob) -> dict[str, ParameterValue] | None:
    """The job's parameters by name, from its parameters annotation; None for a job that is not a trial."""
    annotations = job.metadata.get("annotations")
    if not isinstance(annotations, dict):
        return None
    return decode_parameters(annotations.get(PARAMETERS_ANNOTATION))


def parameter_env(job: TrainingJob) -> list[dict[str, Any]]:
    """`TRAINSMART_PARAM_<NAME>` per parameter (sorted by name) and `TRAINSMART_PARAMS_FILE`; [] if none."""
    parameters = trial_parameters(job)
    if parameters is None:
        return []
    env = [
        {"name": contract.param_env_name(name), "value": render_value(value)}
        for name, value in sorted(parameters.items())
    ]
    env.append({"name": contract.PARAMS_FILE, "value": PARAMS_FILE_PATH})
    return env


def parameter_pod_annotations(job: TrainingJob) -> dict[str, str]:
    """The parameters annotation, copied onto the pod so the downwardAPI volume can project it."""
    parameters = trial_parameters(job)
    return {} if parameters is None else {PARAMETERS_ANNOTATION: encode_parameters(parameters)}


def parameter_volume(job: TrainingJob) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, trainer volumeMounts) that put the parameters file at PARAMS_FILE_PATH; empty if none."""
    if trial_parameters(job) is None:
        return [], []
    field = {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{PARAMETERS_ANNOTATION}']"}
    volume = {"name": PARAMS_VOLUME, "downwardAPI": {"items": [{"path": PARAMS_FILE_NAME, "fieldRef": field}]}}
    return [volume], [{"name": PARAMS_VOLUME, "mountPath": PARAMS_DIR, "readOnly": True}]
