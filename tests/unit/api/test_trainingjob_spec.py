"""The TrainingJob spec model parses what users write and rejects mistakes with the field path and the fix.

Pins:
- an empty spec is valid and means one CPU replica of the packaged trainer with its defaults;
- camelCase on the wire, snake_case accepted in Python, camelCase out; `to_api` round-trips;
- processesPerReplica defaults to the GPU count (or 1), and may not exceed it;
- checkpoint has exactly one source (claimName XOR size); storageClassName only with size;
- GPUs are requested only through gpusPerReplica; requests may not exceed limits; quantities are checked;
- volume mounts name real volumes; reserved names, labels and container names are refused;
- every rejection is reported as `spec.<path>: <what is wrong and how to fix it>`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import TrainingJob, TrainingJobSpec, format_validation_error
from trainsmart.api.common import parse_quantity
from trainsmart.api.trainingjob_spec import CleanPodPolicy

FULL_SPEC: dict[str, Any] = {
    "replicas": 2,
    "gpusPerReplica": 4,
    "resources": {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"memory": "64Gi"}},
    "trainer": {
        "image": "registry.example/trainer:1.2",
        "imagePullPolicy": "IfNotPresent",
        "env": [
            {"name": "NCCL_DEBUG", "value": "INFO"},
            {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}},
        ],
        "config": {
            "model": {"name": "resnet", "numLayers": 18},
            "dataset": {"name": "images", "path": "/data/train", "imageSize": 64},
            "epochs": 30,
            "batchSize": 128,
            "learningRate": 0.1,
            "optimizer": {"name": "sgd", "momentum": 0.9, "nesterov": True},
            "lrSchedule": {"name": "cosine", "warmupEpochs": 2},
            "earlyStopping": {"metric": "val_accuracy", "mode": "max", "patience": 3},
            "mixedPrecision": "bf16",
        },
    },
    "checkpoint": {"size": "20Gi", "storageClassName": "fast-ssd", "intervalEpochs": 2},
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet", "readOnly": True}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}],
    "affinity": {"podAntiAffinity": {}},
    "priorityClassName": "training-high",
    "queueName": "team-a",
    "runPolicy": {
        "backoffLimit": 5,
        "activeDeadlineSeconds": 86400,
        "cleanPodPolicy": "All",
        "retryableExitCodes": [137],
        "permanentExitCodes": [2],
    },
    "suspend": False,
    "template": {
        "labels": {"team": "vision"},
        "annotations": {"example.com/owner": "alice"},
        "serviceAccountName": "trainer",
        "imagePullSecrets": [{"name": "regcred"}],
        "securityContext": {"runAsNonRoot": True},
        "extraContainers": [{"name": "exporter", "image": "exporter:1"}],
    },
}


def errors_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        TrainingJobSpec.model_validate(spec)
    return format_validation_error(info.value)


def test_an_empty_spec_is_one_cpu_replica_of_the_packaged_trainer() -> None:
    spec = TrainingJobSpec.model_validate({})
    assert (spec.replicas, spec.gpus_per_replica, spec.effective_processes_per_replica) == (1, 0, 1)
    assert spec.trainer.image is None  # the operator's configured default image
    assert spec.trainer.effective_config().model.name == "mlp"
    assert spec.run_policy.backoff_limit == 3
    assert spec.run_policy.clean_pod_policy == CleanPodPolicy.RUNNING
    assert spec.suspend is False
    assert spec.checkpoint is None


def test_a_full_spec_parses_and_round_trips_through_the_wire_format() -> None:
    spec = TrainingJobSpec.model_validate(FULL_SPEC)
    assert spec.gpus_per_replica == 4
    assert spec.effective_processes_per_replica == 4
    assert spec.world_size == 8
    assert spec.trainer.env[1].value_from == {"secretKeyRef": {"name": "wandb", "key": "key"}}
    assert spec.volume_mounts[0].model_extra == {"readOnly": True}
    wire = spec.to_api()
    assert wire["gpusPerReplica"] == 4
    assert wire["volumeMounts"] == [{"name": "data", "mountPath": "/data", "readOnly": True}]
    assert TrainingJobSpec.model_validate(wire) == spec


def test_python_names_are_accepted_and_camel_case_comes_out() -> None:
    spec = TrainingJobSpec(gpus_per_replica=2, processes_per_replica=1)
    assert spec.to_api()["processesPerReplica"] == 1
    assert TrainingJobSpec.model_validate({"gpus_per_replica": 2}).gpus_per_replica == 2


def test_a_whole_object_parses_with_kind_and_api_version() -> None:
    job = TrainingJob.model_validate(
        {"apiVersion": "trainsmart.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "a"}, "spec": {}}
    )
    assert job.spec.replicas == 1
    with pytest.raises(ValidationError, match="apiVersion"):
        TrainingJob.model_validate({"apiVersion": "trainsmart.dev/v1", "kind": "TrainingJob", "spec": {}})


@pytest.mark.parametrize(
    ("gpus", "processes", "expected"),
    [(0, None, 1), (4, None, 4), (4, 2, 2), (0, 3, 3)],
)
def test_processes_per_replica_defaults_to_one_per_gpu(gpus: int, processes: int | None, expected: int) -> None:
    spec = TrainingJobSpec(gpus_per_replica=gpus, processes_per_replica=processes)
    assert spec.effective_processes_per_replica == expected


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"replicas": 0}, "spec.replicas: Input should be greater than or equal to 1"),
        ({"replicas": "two"}, "spec.replicas: Input should be a valid integer"),
        ({"replica": 2}, "spec.replica: Extra inputs are not permitted"),
        ({"gpusPerReplica": 2, "processesPerReplica": 4}, "spec: processesPerReplica (4) exceeds gpusPerReplica"),
        ({"checkpoint": {"claimName": "ckpt", "size": "1Gi"}}, "spec.checkpoint: set exactly one of claimName"),
        ({"checkpoint": {}}, "spec.checkpoint: set exactly one of claimName"),
        (
            {"checkpoint": {"claimName": "ckpt", "storageClassName": "ssd"}},
            "spec.checkpoint: storageClassName applies only with size",
        ),
        ({"checkpoint": {"size": "0"}}, "spec.checkpoint: size must be > 0"),
        ({"checkpoint": {"claimName": "ckpt", "mountPath": "ckpt"}}, "spec.checkpoint.mountPath: String should"),
        ({"resources": {"limits": {"nvidia.com/gpu": 1}}}, "spec.resources: do not put nvidia.com/gpu"),
        (
            {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}},
            "spec.resources: requests.memory (2Gi) exceeds limits.memory (1Gi)",
        ),
        ({"resources": {"requests": {"cpu": "lots"}}}, "spec.resources.requests.cpu: 'lots' is not a quantity"),
        ({"resources": {"requests": {"cpu": -1}}}, "spec.resources.requests.cpu: -1 is negative"),
        ({"runPolicy": {"cleanPodPolicy": "Sometimes"}}, "spec.runPolicy.cleanPodPolicy: Input should be 'All'"),
        ({"runPolicy": {"backoffLimit": -1}}, "spec.runPolicy.backoffLimit: Input should be greater than or equal"),
        ({"runPolicy": {"suspend": True}}, "spec.runPolicy.suspend: Extra inputs are not permitted"),
        (
            {"runPolicy": {"retryableExitCodes": [1, 137], "permanentExitCodes": [1]}},
            "spec.runPolicy: exit codes [1] are both retryable and permanent",
        ),
        ({"runPolicy": {"permanentExitCodes": [0]}}, "spec.runPolicy.permanentExitCodes[0]: Input should be greater"),
        (
            {"trainer": {"env": [{"name": "A", "value": "1", "valueFrom": {"fieldRef": {}}}]}},
            "spec.trainer.env[0]: env A: set value or valueFrom, not both",
        ),
        (
            {"trainer": {"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}},
            "spec.trainer: env names ['A'] appear more than once",
        ),
        ({"trainer": {"env": [{"name": "1=A"}]}}, "spec.trainer.env[0].name: String should match pattern"),
        (
            {"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
            "spec: volumeMounts[0] names volume 'data', which is not in volumes",
        ),
        ({"volumes": [{"name": "trainsmart-x", "emptyDir": {}}]}, "spec: volumes ['trainsmart-x'] use the reserved"),
        ({"volumes": [{"emptyDir": {}}]}, "spec.volumes[0].name: Field required"),
        (
            {
                "checkpoint": {"claimName": "c"},
                "volumes": [{"name": "d", "emptyDir": {}}],
                "volumeMounts": [{"name": "d", "mountPath": "/checkpoints/"}],
            },
            "spec: volumeMounts[0].mountPath /checkpoints/ is checkpoint.mountPath",
        ),
        ({"template": {"labels": {"trainsmart.dev/job": "x"}}}, "spec.template: labels ['trainsmart.dev/job'] use"),
        ({"template": {"extraContainers": [{"name": "trainer"}]}}, "spec.template: container name 'trainer' is"),
        (
            {"template": {"initContainers": [{"name": "a"}], "extraContainers": [{"name": "a"}]}},
            "spec.template: container names ['a'] appear more than once",
        ),
        (
            {
                "checkpoint": {"claimName": "c", "intervalEpochs": 2},
                "trainer": {"config": {"checkpointEveryEpochs": 3}},
            },
            "spec: trainer.config.checkpointEveryEpochs (3) disagrees with checkpoint.intervalEpochs (2)",
        ),
        ({"trainer": {"config": {"learningRate": 0}}}, "spec.trainer.config.learningRate: Input should be greater"),
        (
            {"trainer": {"config": {"model": {"name": "mf"}}}},
            "spec.trainer.config: model mf cannot train on dataset digits; use one of: cnn, mlp, resnet",
        ),
        ({"affinity": []}, "spec.affinity: Input should be a valid dictionary"),
        ({"priorityClassName": "High_Prio"}, "spec.priorityClassName: String should match pattern"),
    ],
)
def test_bad_specs_are_rejected_naming_the_field_and_the_fix(patch: dict[str, Any], expected: str) -> None:
    messages = errors_of(patch)
    assert any(message.startswith(expected) for message in messages), messages


def test_every_problem_is_reported_at_once() -> None:
    messages = errors_of({"replicas": 0, "gpusPerReplica": 99})
    assert [message.split(":")[0] for message in messages] == ["spec.replicas", "spec.gpusPerReplica"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (4, Decimal(4)),
        ("500m", Decimal("0.5")),
        ("16Gi", Decimal(16 * 2**30)),
        ("1.5G", Decimal("1.5e9")),
        ("1e3", Decimal(1000)),
        (".5", Decimal("0.5")),
    ],
)
def test_quantities_parse_like_kubernetes(text: int | str, expected: Decimal) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "1.2.3", "5 Gi", "Gi", "-1", "1iB", True])
def test_malformed_quantities_are_refused(text: Any) -> None:
    with pytest.raises(ValueError, match="quantit"):
        parse_quantity(text)
