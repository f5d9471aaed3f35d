"""The replica pod builder: one TrainingJob replica as a plain manifest, ready for the API.

Pins:
- names and DNS: pod `<job>-<index>`, hostname = pod name, subdomain = job; rank 0 is the master;
- labels (selector, index, attempt, template, Kueue) and the controller owner reference from the uid;
- the env contract for replicas x processes: PET_*, classic variables, RANK only with one process,
  never LOCAL_RANK; config as JSON; checkpoint dir; report URL + token from a secretKeyRef; identity from
  the downward API; user env appended but unable to redefine the contract's variables;
- GPUs as limits = requests with the nvidia.com/gpu toleration; cpu/memory from spec.resources;
- checkpoint volume from the operator's PVC or the user's claim; data volumes; writable /tmp and /dev/shm;
- restricted security defaults, which the template may override; operator fields win over the template;
- scheduling pass-through; deterministic output; bad index or missing uid refused.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from support import models
from trainsmart.api import TrainingJob
from trainsmart.builders import build_worker_pod
from trainsmart.builders.env import RESERVED_ENV_NAMES
from trainsmart.names import selector_labels
from trainsmart.settings import OperatorSettings
from trainsmart_trainer import contract
from trainsmart_trainer.config import TrainerConfig

SETTINGS = OperatorSettings(report_url="http://trainsmart.trainsmart-system.svc:8080/v1/reports")


make_job = partial(models.make_job, generation=2)


def trainer(pod: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod["spec"]["containers"][0]
    assert container["name"] == "trainer"
    return container


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    """name -> literal value, or the valueFrom dict."""
    return {var["name"]: var.get("value", var.get("valueFrom")) for var in trainer(pod)["env"]}


@pytest.mark.parametrize("index", [0, 1, 3])
def test_names_dns_and_restart_policy(index: int) -> None:
    pod = build_worker_pod(make_job({"replicas": 4}), index, 0, SETTINGS)
    assert pod["apiVersion"] == "v1" and pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == f"mnist-{index}"
    assert pod["metadata"]["namespace"] == "ml"
    assert pod["spec"]["hostname"] == f"mnist-{index}"
    assert pod["spec"]["subdomain"] == "mnist"
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["enableServiceLinks"] is False


def test_labels_and_owner_reference() -> None:
    pod = build_worker_pod(make_job({"replicas": 2, "template": {"labels": {"team": "vision"}}}), 1, 3, SETTINGS)
    assert pod["metadata"]["labels"] == {
        "team": "vision",
        "app.kubernetes.io/managed-by": "trainsmart",
        "trainsmart.dev/job-name": "mnist",
        "trainsmart.dev/replica-index": "1",
        "trainsmart.dev/attempt": "3",
    }
    assert pod["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "trainsmart.dev/v1alpha1",
            "kind": "TrainingJob",
            "name": "mnist",
            "uid": "uid-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


@pytest.mark.parametrize(
    ("spec", "index", "world", "nproc", "rank"),
    [
        ({}, 0, 1, 1, "0"),
        ({"replicas": 4}, 2, 4, 1, "2"),
        ({"replicas": 2, "gpusPerReplica": 4}, 1, 8, 4, None),
        ({"replicas": 3, "gpusPerReplica": 4, "processesPerReplica": 2}, 2, 6, 2, None),
        ({"replicas": 2, "processesPerReplica": 3}, 0, 6, 3, None),
        ({"replicas": 2, "gpusPerReplica": 1}, 1, 2, 1, "1"),
    ],
)
def test_distributed_env(spec: dict[str, Any], index: int, world: int, nproc: int, rank: str | None) -> None:
    job = make_job(spec)
    env = env_of(build_worker_pod(job, index, 0, SETTINGS))
    master = "mnist-0.mnist.ml.svc"
    assert env[contract.PET_NNODES] == str(job.spec.replicas)
    assert env[contract.PET_NPROC_PER_NODE] == str(nproc)
    assert env[contract.PET_NODE_RANK] == str(index)
    assert env[contract.PET_MASTER_ADDR] == env[contract.MASTER_ADDR] == master
    assert env[contract.PET_MASTER_PORT] == env[contract.MASTER_PORT] == "29500"
    assert env[contract.WORLD_SIZE] == str(world)
    assert env[contract.LOCAL_WORLD_SIZE] == str(nproc)
    assert env.get(contract.RANK) == rank
    assert contract.LOCAL_RANK not in env  # its presence would make the trainer a worker that never launches


def test_identity_config_checkpoint_report_and_metrics_env() -> None:
    job = make_job({"trainer": {"config": {"epochs": 3, "learningRate": 0.01}}, "checkpoint": {"size": "1Gi"}})
    env = env_of(build_worker_pod(job, 0, 0, SETTINGS))
    assert env[contract.JOB_NAME] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['trainsmart.dev/job-name']"}
    }
    assert env[contract.JOB_NAMESPACE] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
    assert env[contract.ATTEMPT] == {
        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels['trainsmart.dev/attempt']"}
    }
    assert json.loads(env[contract.CONFIG_JSON]) == {"epochs": 3, "learningRate": 0.01}
    assert TrainerConfig.model_validate_json(env[contract.CONFIG_JSON]) == job.spec.trainer.config
    assert env[contract.CHECKPOINT_DIR] == "/checkpoints"
    assert env[contract.CHECKPOINT_INTERVAL_EPOCHS] == "1"
    assert env[contract.REPORT_URL] == SETTINGS.report_url
    assert env[contract.REPORT_TOKEN] == {"secretKeyRef": {"name": "mnist-report-token", "key": "token"}}
    assert env[contract.METRICS_PORT] == str(contract.DEFAULT_METRICS_PORT)


def test_optional_env_is_left_out() -> None:
    settings = OperatorSettings(report_url=None, metrics_port=None)
    env = env_of(build_worker_pod(make_job(), 0, 0, settings))
    for name in (contract.CONFIG_JSON, contract.CHECKPOINT_DIR, contract.REPORT_URL, contract.REPORT_TOKEN):
        assert name not in env
    assert contract.METRICS_PORT not in env
    assert [port["name"] for port in trainer(build_worker_pod(make_job(), 0, 0, settings))["ports"]] == ["rendezvous"]


def test_user_env_is_appended_and_cannot_redefine_the_contract() -> None:
    user = [
        {"name": "NCCL_DEBUG", "value": "INFO"},
        {"name": contract.WORLD_SIZE, "value": "999"},
        {"name": contract.LOCAL_RANK, "value": "0"},
        {"name": contract.REPORT_TOKEN, "value": "stolen"},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "key"}}},
    ]
    env_list = trainer(build_worker_pod(make_job({"trainer": {"env": user}}), 0, 0, SETTINGS))["env"]
    names = [var["name"] for var in env_list]
    assert len(names) == len(set(names))
    assert names[-2:] == ["NCCL_DEBUG", "WANDB_API_KEY"]
    assert env_list[-1] == user[-1]
    assert {contract.WORLD_SIZE, contract.LOCAL_RANK, contract.REPORT_TOKEN} <= RESERVED_ENV_NAMES
    values = env_of(build_worker_pod(make_job({"trainer": {"env": user}}), 0, 0, SETTINGS))
    assert values[contract.WORLD_SIZE] == "1"
    assert contract.LOCAL_RANK not in values


def test_quantities_are_strings_on_the_wire_even_when_the_spec_has_ints() -> None:
    """kubernetes client >= 35 rejects an int where a Quantity belongs: every GPU job failed to start."""
    spec = {"gpusPerReplica": 2, "resources": {"requests": {"cpu": 2}, "limits": {"cpu": 4, "memory": 1073741824}}}
    resources = trainer(build_worker_pod(make_job(spec), 0, 0, SETTINGS))["resources"]
    assert resources == {
        "requests": {"cpu": "2", "nvidia.com/gpu": "2"},
        "limits": {"cpu": "4", "memory": "1073741824", "nvidia.com/gpu": "2"},
    }
    assert client.ApiClient().sanitize_for_serialization(resources) == resources


def test_report_token_is_never_a_literal() -> None:
    pod = build_worker_pod(make_job(), 0, 0, SETTINGS)
    token = next(var for var in trainer(pod)["env"] if var["name"] == contract.REPORT_TOKEN)
    assert "value" not in token


@pytest.mark.parametrize(("gpus", "expected_gpu"), [(0, None), (1, "1"), (8, "8")])
def test_gpu_resources_and_toleration(gpus: int, expected_gpu: str | None) -> None:
    spec = {
        "gpusPerReplica": gpus,
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "32Gi"}},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"},
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        ],
    }
    pod = build_worker_pod(make_job(spec), 0, 0, SETTINGS)
    resources = trainer(pod)["resources"]
    assert resources["requests"]["cpu"] == "4" and resources["requests"]["memory"] == "16Gi"
    assert resources["limits"]["memory"] == "32Gi"
    assert resources["requests"].get("nvidia.com/gpu") == expected_gpu
    assert resources["limits"].get("nvidia.com/gpu") == expected_gpu
    gpu_toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    tolerations = pod["spec"]["tolerations"]
    assert tolerations.count(gpu_toleration) == 1
    assert tolerations[0 if gpus else 1] == gpu_toleration
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in tolerations


def test_cpu_job_without_resources_or_tolerations() -> None:
    pod = build_worker_pod(make_job(), 0, 0, SETTINGS)
    assert "resources" not in trainer(pod)
    assert "tolerations" not in pod["spec"]


def test_scheduling_pass_through() -> None:
    spec = {
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "priorityClassName": "training-high",
        "schedulerName": "volcano",
    }
    pod_spec = build_worker_pod(make_job(spec), 0, 0, SETTINGS)["spec"]
    assert pod_spec["nodeSelector"] == spec["nodeSelector"]
    assert pod_spec["affinity"] == spec["affinity"]
    assert pod_spec["priorityClassName"] == "training-high"
    assert pod_spec["schedulerName"] == "volcano"


@pytest.mark.parametrize("queue", [None, "team-a"])
def test_kueue_pod_group(queue: str | None) -> None:
    pod = build_worker_pod(make_job({"replicas": 3, "queueName": queue}), 2, 0, SETTINGS)
    labels, annotations = pod["metadata"]["labels"], pod["metadata"].get("annotations", {})
    if queue is None:
        assert not any(key.startswith("kueue.x-k8s.io/") for key in {**labels, **annotations})
    else:
        assert labels["kueue.x-k8s.io/queue-name"] == "team-a"
        assert labels["kueue.x-k8s.io/pod-group-name"] == "mnist"
        assert annotations["kueue.x-k8s.io/pod-group-total-count"] == "3"


@pytest.mark.parametrize(
    ("checkpoint", "claim", "mount_path"),
    [
        ({"size": "20Gi"}, "mnist-checkpoints", "/checkpoints"),
        ({"claimName": "shared-ckpt", "mountPath": "/ckpt"}, "shared-ckpt", "/ckpt"),
        (None, None, None),
    ],
)
def test_checkpoint_volume(checkpoint: dict[str, Any] | None, claim: str | None, mount_path: str | None) -> None:
    pod = build_worker_pod(make_job({"checkpoint": checkpoint}), 0, 0, SETTINGS)
    volumes = {volume["name"]: volume for volume in pod["spec"]["volumes"]}
    mounts = {mount["name"]: mount["mountPath"] for mount in trainer(pod)["volumeMounts"]}
    env = env_of(pod)
    if claim is None:
        assert "trainsmart-checkpoints" not in volumes and contract.CHECKPOINT_DIR not in env
    else:
        assert volumes["trainsmart-checkpoints"] == {
            "name": "trainsmart-checkpoints",
            "persistentVolumeClaim": {"claimName": claim},
        }
        assert mounts["trainsmart-checkpoints"] == mount_path == env[contract.CHECKPOINT_DIR]


def test_data_volumes_and_scratch_space() -> None:
    spec = {
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "imagenet", "readOnly": True}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    }
    pod = build_worker_pod(make_job(spec), 0, 0, SETTINGS)
    assert pod["spec"]["volumes"] == [
        {"name": "trainsmart-tmp", "emptyDir": {}},
        {"name": "trainsmart-shm", "emptyDir": {"medium": "Memory"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "imagenet", "readOnly": True}},
    ]
    assert trainer(pod)["volumeMounts"] == [
        {"name": "trainsmart-tmp", "mountPath": "/tmp"},
        {"name": "trainsmart-shm", "mountPath": "/dev/shm"},
        {"name": "data", "mountPath": "/data", "readOnly": True},
    ]
    no_shm = OperatorSettings(mount_shm=False)
    assert [v["name"] for v in build_worker_pod(make_job(), 0, 0, no_shm)["spec"]["volumes"]] == ["trainsmart-tmp"]
    limited = OperatorSettings(shm_size_limit="8Gi")
    shm = build_worker_pod(make_job(), 0, 0, limited)["spec"]["volumes"][1]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "8Gi"}


def test_restricted_security_defaults() -> None:
    pod = build_worker_pod(make_job(), 0, 0, SETTINGS)
    assert pod["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert trainer(pod)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod["spec"]


def test_template_overrides_security_and_adds_what_the_spec_lacks() -> None:
    template = {
        "labels": {"app.kubernetes.io/managed-by": "helm", "team": "vision"},
        "annotations": {"example.com/owner": "alice"},
        "serviceAccountName": "trainer",
        "imagePullSecrets": [{"name": "regcred"}],
        "securityContext": {"runAsUser": 2000, "supplementalGroups": [3000]},
        "containerSecurityContext": {"readOnlyRootFilesystem": False},
        "initContainers": [{"name": "fetch", "image": "busybox", "command": ["true"]}],
        "extraContainers": [{"name": "exporter", "image": "exporter:1"}],
    }
    pod = build_worker_pod(make_job({"template": template, "queueName": "q"}), 0, 0, SETTINGS)
    metadata, spec = pod["metadata"], pod["spec"]
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "trainsmart"  # the operator's selector wins
    assert metadata["labels"]["team"] == "vision"
    assert metadata["annotations"] == {"example.com/owner": "alice", "kueue.x-k8s.io/pod-group-total-count": "1"}
    assert spec["serviceAccountName"] == "trainer"
    assert "automountServiceAccountToken" not in spec
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["securityContext"]["runAsUser"] == 2000
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["supplementalGroups"] == [3000]
    assert trainer(pod)["securityContext"]["readOnlyRootFilesystem"] is False
    assert trainer(pod)["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["initContainers"] == [{"name": "fetch", "image": "busybox", "command": ["true"]}]
    assert [container["name"] for container in spec["containers"]] == ["trainer", "exporter"]
    assert spec["restartPolicy"] == "Never" and spec["hostname"] == "mnist-0"


@pytest.mark.parametrize(
    ("trainer_spec", "image", "command", "args"),
    [
        ({}, SETTINGS.trainer_image, ["python", "-m", "trainsmart_trainer"], None),
        ({"args": ["--log-level", "DEBUG"]}, SETTINGS.trainer_image, ["python", "-m", "trainsmart_trainer"], None),
        ({"image": "me/custom:1", "command": ["python", "train.py"]}, "me/custom:1", ["python", "train.py"], None),
    ],
)
def test_image_and_command(trainer_spec: dict[str, Any], image: str, command: list[str], args: None) -> None:
    container = trainer(build_worker_pod(make_job({"trainer": trainer_spec}), 0, 0, SETTINGS))
    assert container["image"] == image
    assert container["command"] == command
    assert container.get("args") == trainer_spec.get("args", args)
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["terminationMessagePath"] == contract.DEFAULT_TERMINATION_LOG == "/dev/termination-log"


def test_pull_policy_and_grace_period() -> None:
    settings = OperatorSettings(termination_grace_period_seconds=600)
    pod = build_worker_pod(make_job({"trainer": {"imagePullPolicy": "Always"}}), 0, 0, settings)
    assert trainer(pod)["imagePullPolicy"] == "Always"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 600


def test_output_is_deterministic_json() -> None:
    job = make_job({"replicas": 2, "gpusPerReplica": 2, "checkpoint": {"size": "1Gi"}, "queueName": "q"})
    first = build_worker_pod(job, 1, 2, SETTINGS)
    assert first == build_worker_pod(job, 1, 2, SETTINGS)
    assert json.loads(json.dumps(first)) == first
    assert selector_labels("mnist").items() <= first["metadata"]["labels"].items()


@pytest.mark.parametrize(("index", "attempt"), [(-1, 0), (2, 0), (0, -1)])
def test_out_of_range_index_or_attempt(index: int, attempt: int) -> None:
    with pytest.raises(ValueError, match=r"index|attempt"):
        build_worker_pod(make_job({"replicas": 2}), index, attempt, SETTINGS)


def test_owner_reference_needs_the_stored_object() -> None:
    job = TrainingJob.model_validate({"metadata": {"name": "x", "namespace": "ml"}, "spec": {}})
    with pytest.raises(ValueError, match="uid"):
        build_worker_pod(job, 0, 0, SETTINGS)
