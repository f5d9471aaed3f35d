"""Objects every admission path must judge alike: the pydantic models (webhook and operator), the webhook
on Kubernetes 1.20, and the CEL rules of the CRDs on Kubernetes 1.36.

`SCHEMA` breaks the structural schema itself (every apiserver refuses it, with or without a webhook);
`CROSS_FIELD` breaks exactly one rule the CRDs also state in CEL, each at the path where the webhook reports
it (the model that owns the rule); `TYPOS` misspells one field at some depth, as the issue that asked for
typo refusal tried them. Shared so that each tier tests the same objects, not its own idea of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from support.manifests import sweep_body, trainingjob_body

JOB_BASE: dict[str, Any] = {
    "replicas": 2,
    "trainer": {"config": {"model": {"name": "mlp"}, "dataset": {"name": "digits"}, "epochs": 2}},
}
SWEEP_BASE: dict[str, Any] = {
    "objective": {"metric": "val_accuracy", "goal": "maximize"},
    "parameters": [
        {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1}
    ],
    "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
    "maxTrials": 4,
}


@dataclass(frozen=True)
class Case:
    """One object and the field path its refusal must name."""

    id: str
    body: dict[str, Any]
    path: str
    reason: str = ""
    """A fragment of the apiserver's words for a SCHEMA case (the webhook and CEL have their own)."""


def without_nones(value: Any) -> Any:
    """`value` with every None-valued key removed (a case's way of saying "leave this field unset")."""
    if isinstance(value, dict):
        return {key: without_nones(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nones(item) for item in value]
    return value


def _job(id_: str, path: str, reason: str = "", **spec: Any) -> Case:
    return Case(id_, without_nones(trainingjob_body(f"bad-{id_}", JOB_BASE | spec)), path, reason)


def _sweep(id_: str, path: str, reason: str = "", **spec: Any) -> Case:
    return Case(id_, without_nones(sweep_body(f"bad-{id_}", SWEEP_BASE | spec)), path, reason)


def _no_spec() -> Case:
    body = trainingjob_body("bad-no-spec", {})
    del body["spec"]
    return Case("no-spec", body, "spec", "Required value")


# 1.20 leaves list indices out of schema error paths (`spec.volumes.name`), later versions write them
# (`spec.volumes[0].name`): compare messages with `without_indices`.
SCHEMA: list[Case] = [
    _job("zero-replicas", "spec.replicas", "greater than or equal to 1", replicas=0),
    _job("replicas-text", "spec.replicas", "integer", replicas="two"),
    _job("too-many-gpus", "spec.gpusPerReplica", "less than or equal to 16", gpusPerReplica=17),
    _job(
        "clean-sometimes",
        "spec.runPolicy.cleanPodPolicy",
        "Unsupported value",
        runPolicy={"cleanPodPolicy": "Sometimes"},
    ),
    _job("cpu-lots", "spec.resources.requests.cpu", "should match", resources={"requests": {"cpu": "lots"}}),
    _job(
        "duplicate-env",
        "spec.trainer.env",
        "Duplicate value",
        trainer={"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]},
    ),
    _job(
        "zero-learning-rate",
        "spec.trainer.config.learningRate",
        "greater than 0",
        trainer={"config": {"learningRate": 0}},
    ),
    _job("model-gpt", "spec.trainer.config.model.name", "Unsupported", trainer={"config": {"model": {"name": "gpt"}}}),
    _job(
        "relative-mount",
        "spec.checkpoint.mountPath",
        "should match",
        checkpoint={"claimName": "c", "mountPath": "relative"},
    ),
    _job("volume-without-name", "spec.volumes.name", "Required value", volumes=[{"emptyDir": {}}]),
    _no_spec(),
    _sweep("goal-up", "spec.objective.goal", "Unsupported value", objective={"metric": "val_accuracy", "goal": "up"}),
    _sweep("no-metric", "spec.objective.metric", "Required value", objective={"goal": "maximize"}),
    _sweep("zero-trials", "spec.maxTrials", "greater than or equal to 1", maxTrials=0),
    _sweep("no-parameters", "spec.parameters", "should have at least 1 items", parameters=[]),
    _sweep(
        "type-beta",
        "spec.parameters.type",
        "Unsupported value",
        parameters=[{"name": "p", "path": "x", "type": "beta"}],
    ),
    _sweep(
        "template-zero-replicas",
        "spec.trialTemplate.replicas",
        "greater than or equal to 1",
        trialTemplate={"replicas": 0},
    ),
    _sweep("duration-digits", "spec.budget.maxDuration", "should match", budget={"maxDuration": "3600"}),
]
"""Each breaks the schema at `path` (written without list indices) for a reason containing `reason`."""


def without_indices(text: str) -> str:
    """`spec.volumes[0].name` -> `spec.volumes.name`: error paths as 1.20 writes them."""
    return re.sub(r"\[\d+\]", "", text)


def _parameter(**fields: Any) -> list[dict[str, Any]]:
    return [{"name": "lr", "path": "trainer.config.learningRate", **fields}]


CROSS_FIELD: list[Case] = [
    _job("checkpoint-two-sources", "spec.checkpoint", checkpoint={"claimName": "c", "size": "1Gi"}),
    _job("checkpoint-no-source", "spec.checkpoint", checkpoint={"intervalEpochs": 2}),
    _job("storage-class-with-claim", "spec.checkpoint", checkpoint={"claimName": "c", "storageClassName": "fast"}),
    _job(
        "env-value-and-source", "spec.trainer.env[0]", trainer={"env": [{"name": "A", "value": "1", "valueFrom": {}}]}
    ),
    _job("metrics-without-command", "spec.trainer", trainer={"metrics": {"format": "json"}}),
    _job(
        "metrics-pattern-without-regex",
        "spec.trainer.metrics",
        trainer={"command": ["python3", "t.py"], "metrics": {"format": "json", "pattern": "(?P<a>.)"}},
    ),
    _job("metrics-nothing-to-read", "spec.trainer.metrics", trainer={"command": ["t"], "metrics": {"epochKey": "e"}}),
    _job("gpu-in-resources", "spec.resources", resources={"limits": {"nvidia.com/gpu": 1}}),
    _job("exit-code-both-ways", "spec.runPolicy", runPolicy={"retryableExitCodes": [3], "permanentExitCodes": [3]}),
    _job("more-processes-than-gpus", "spec", gpusPerReplica=2, processesPerReplica=4),
    _job("reserved-volume-name", "spec", volumes=[{"name": "trainsmart-data", "emptyDir": {}}]),
    _job("mount-of-no-volume", "spec", volumeMounts=[{"name": "data", "mountPath": "/data"}]),
    _job(
        "mount-over-checkpoints",
        "spec",
        checkpoint={"size": "1Gi"},
        volumes=[{"name": "data", "emptyDir": {}}],
        volumeMounts=[{"name": "data", "mountPath": "/checkpoints"}],
    ),
    _job("reserved-pod-label", "spec.template", template={"labels": {"trainsmart.dev/job": "x"}}),
    _job("container-named-trainer", "spec.template", template={"extraContainers": [{"name": "trainer", "image": "x"}]}),
    _sweep("no-max-trials-for-tpe", "spec", maxTrials=None),
    _sweep("suspended-template", "spec", trialTemplate={"suspend": True}),
    _sweep("shared-claim", "spec", trialTemplate={"checkpoint": {"claimName": "c"}}),
    _sweep("trial-ttl", "spec", trialTemplate={"runPolicy": {"ttlSecondsAfterFinished": 60}}),
    _sweep("resume-without-checkpoint", "spec", earlyStopping={"rule": "asha", "resumePromoted": True}),
    _sweep("tpe-settings-for-random", "spec.algorithm", algorithm={"name": "random", "tpe": {}}),
    _sweep("keep-best-without-count", "spec.trialRetention", trialRetention={"policy": "keepBest"}),
    _sweep("min-above-max", "spec.parameters[0]", parameters=_parameter(type="uniform", min=0.5, max=0.1)),
    _sweep("log-from-zero", "spec.parameters[0]", parameters=_parameter(type="loguniform", min=0.0, max=0.1)),
    _sweep("uniform-missing-max", "spec.parameters[0]", parameters=_parameter(type="uniform", min=0.1)),
    _sweep("q-on-uniform", "spec.parameters[0]", parameters=_parameter(type="uniform", min=0.1, max=0.5, q=0.1)),
    _sweep("randint-fractional", "spec.parameters[0]", parameters=_parameter(type="randint", min=1.5, max=4)),
    _sweep("q-wider-than-range", "spec.parameters[0]", parameters=_parameter(type="quniform", min=0, max=1, q=2)),
    _sweep("log-grid-step", "spec.parameters[0]", parameters=_parameter(type="loguniform", min=0.01, max=1, step=0.5)),
]
"""Each breaks one rule the CRDs carry in CEL (a None value leaves that field unset)."""

TYPOS: list[Case] = [
    _job("learning-rate", "spec.trainer.config.learningRatez", trainer={"config": {"learningRatez": 0.1}}),
    _job("interval", "spec.checkpoint.intervalEpoch", checkpoint={"size": "1Gi", "intervalEpoch": 2}),
    _job(
        "patience", "spec.trainer.config.earlyStopping.patiense", trainer={"config": {"earlyStopping": {"patiense": 2}}}
    ),
    _job("replicas", "spec.replicaz", replicaz=3),
    _sweep(
        "template-epochs",
        "spec.trialTemplate.trainer.config.epoch",
        trialTemplate={"trainer": {"config": {"epoch": 3}}},
    ),
    _sweep("parameter-min", "spec.parameters[0].mni", parameters=_parameter(type="uniform", mni=0.1, max=0.5)),
]
"""Each misspells one field; the refusal names it and the field it was probably meant to be."""
