"""One replica pod of a TrainingJob, as a plain camelCase manifest ready for the API.

Precedence, lowest first: `spec.template` (labels, annotations, service account, pull secrets, security
contexts, extra containers), then the operator's own fields, which always win where they overlap (selector
and Kueue labels, env contract, restart policy, hostname). Security contexts are the exception by
design: the operator's restricted defaults sit *under* the template's, so a user can, say, run as another
uid; the template is user input like any other and Pod Security Admission still judges the result.

Why each operator field:
* `restartPolicy: Never`: the operator restarts all replicas together (DDP cannot rejoin one rank), so the
  kubelet must not restart a single container behind its back;
* `hostname`/`subdomain` + the headless Service: stable DNS names for rank 0 before any readiness;
* `enableServiceLinks: false`: service env vars would only add noise next to the contract's variables;
* writable `emptyDir`s at /tmp and /dev/shm: the root filesystem is read-only, and PyTorch DataLoader
  workers and NCCL need more shared memory than a container runtime's 64 MiB default;
* `terminationMessagePolicy: FallbackToLogsOnError`: the trainer writes its failure reason to the
  termination message, and for crashes before that the log tail is the next best diagnostic. The policy
  only reads the log when the file is empty *and* the exit failed, so a written result always wins;
* `terminationMessagePath` set to the trainer's default (`/dev/termination-log`, also the API default)
  rather than left implicit: the trainer writes its final result there, and the operator folds that into
  status when the reports never arrived, so both sides must agree on the path. The kubelet bind-mounts
  the file, so it is writable under `readOnlyRootFilesystem`.
"""

from __future__ import annotations

from typing import Any, Final

from trainsmart.api import TrainingJob
from trainsmart.api.common import GPU_RESOURCE, TRAINER_CONTAINER_NAME
from trainsmart.builders.env import report_ca_annotations, report_ca_volume, trainer_env
from trainsmart.builders.metadata import child_metadata, quantity
from trainsmart.builders.metrics_wrapper import client_mount, client_volume, wrapped_command
from trainsmart.builders.service import RENDEZVOUS_PORT_NAME
from trainsmart.builders.trial_params import parameter_pod_annotations, parameter_volume
from trainsmart.names import (
    ATTEMPT_LABEL,
    KUEUE_POD_GROUP_COUNT_ANNOTATION,
    KUEUE_POD_GROUP_LABEL,
    KUEUE_QUEUE_LABEL,
    OBJECTIVE_METRIC_ANNOTATION,
    REPLICA_INDEX_LABEL,
    checkpoint_claim_name,
    job_name,
    pod_name,
    service_name,
)
from trainsmart.settings import OperatorSettings
from trainsmart_trainer import contract

CHECKPOINT_VOLUME: Final = "trainsmart-checkpoints"
TMP_VOLUME: Final = "trainsmart-tmp"
SHM_VOLUME: Final = "trainsmart-shm"
TMP_PATH: Final = "/tmp"
SHM_PATH: Final = "/dev/shm"
METRICS_PORT_NAME: Final = "metrics"
GPU_TOLERATION: Final = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}


def pod_labels(job: TrainingJob, index: int, attempt: int) -> dict[str, str]:
    """Template labels, then Kueue's, then the operator's selector and tracking labels (which win)."""
    spec = job.spec
    labels = dict(spec.template.labels)
    if spec.queue_name is not None:
        labels[KUEUE_QUEUE_LABEL] = spec.queue_name
        labels[KUEUE_POD_GROUP_LABEL] = job_name(job)
    labels[REPLICA_INDEX_LABEL] = str(index)
    labels[ATTEMPT_LABEL] = str(attempt)
    return labels


def pod_annotations(job: TrainingJob) -> dict[str, str]:
    """Template annotations plus Kueue's pod-group size (every replica is admitted as one workload)."""
    annotations = dict(job.spec.template.annotations)
    if job.spec.queue_name is not None:
        annotations[KUEUE_POD_GROUP_COUNT_ANNOTATION] = str(job.spec.replicas)
    return annotations


def pod_security_context(job: TrainingJob, settings: OperatorSettings) -> dict[str, Any]:
    """Restricted-profile defaults (non-root, RuntimeDefault seccomp), overridden key by key by the template."""
    defaults: dict[str, Any] = {
        "runAsNonRoot": True,
        "runAsUser": settings.run_as_user,
        "runAsGroup": settings.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if settings.fs_group is not None:
        defaults["fsGroup"] = settings.fs_group
    return {**defaults, **(job.spec.template.security_context or {})}


def container_security_context(job: TrainingJob, settings: OperatorSettings) -> dict[str, Any]:
    """No privilege escalation, no capabilities, read-only root; the template may override each key."""
    defaults = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": settings.read_only_root_filesystem,
    }
    return {**defaults, **(job.spec.template.container_security_context or {})}


def resource_requirements(job: TrainingJob) -> dict[str, Any]:
    """cpu/memory from `spec.resources`; GPUs from gpusPerReplica, with the request equal to the limit."""
    requests: dict[str, Any] = {name: quantity(value) for name, value in job.spec.resources.requests.items()}
    limits: dict[str, Any] = {name: quantity(value) for name, value in job.spec.resources.limits.items()}
    if job.spec.gpus_per_replica:
        requests[GPU_RESOURCE] = quantity(job.spec.gpus_per_replica)
        limits[GPU_RESOURCE] = quantity(job.spec.gpus_per_replica)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def _volumes(job: TrainingJob, settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, trainer volumeMounts): the operator's (reserved names) first, then the spec's."""
    volumes: list[dict[str, Any]] = [{"name": TMP_VOLUME, "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": TMP_VOLUME, "mountPath": TMP_PATH}]
    if settings.mount_shm:
        shm: dict[str, Any] = {"medium": "Memory"}
        if settings.shm_size_limit is not None:
            shm["sizeLimit"] = settings.shm_size_limit
        volumes.append({"name": SHM_VOLUME, "emptyDir": shm})
        mounts.append({"name": SHM_VOLUME, "mountPath": SHM_PATH})
    checkpoint = job.spec.checkpoint
    if checkpoint is not None:
        claim = checkpoint.claim_name or checkpoint_claim_name(job_name(job))
        volumes.append({"name": CHECKPOINT_VOLUME, "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": CHECKPOINT_VOLUME, "mountPath": checkpoint.mount_path})
    if job.spec.trainer.metrics is not None:
        volumes.append(client_volume(job))
        mounts.append(client_mount())
    params_volumes, params_mounts = parameter_volume(job)  # sweep trials only: builders/trial_params.py
    volumes += params_volumes
    mounts += params_mounts
    ca_volumes, ca_mounts = report_ca_volume(settings)  # an https report endpoint's CA: builders/env.py
    volumes += ca_volumes
    mounts += ca_mounts
    volumes += [volume.to_api() for volume in job.spec.volumes]
    mounts += [mount.to_api() for mount in job.spec.volume_mounts]
    return volumes, mounts


def _ports(settings: OperatorSettings) -> list[dict[str, Any]]:
    ports = [{"name": RENDEZVOUS_PORT_NAME, "containerPort": settings.master_port, "protocol": "TCP"}]
    if settings.metrics_port is not None:
        ports.append({"name": METRICS_PORT_NAME, "containerPort": settings.metrics_port, "protocol": "TCP"})
    return ports


def trainer_container(
    job: TrainingJob, index: int, settings: OperatorSettings, mounts: list[dict[str, Any]]
) -> dict[str, Any]:
    """The `trainer` container: image/command default to the packaged trainer from the settings; with
    `spec.trainer.metrics` the command runs under the metrics wrapper (`builders/metrics_wrapper.py`)."""
    trainer = job.spec.trainer
    command = list(trainer.command or settings.trainer_command)
    if trainer.metrics is not None:
        objective = (job.metadata.get("annotations") or {}).get(OBJECTIVE_METRIC_ANNOTATION)
        command = wrapped_command(trainer.metrics, command, objective if isinstance(objective, str) else None)
    container: dict[str, Any] = {
        "name": TRAINER_CONTAINER_NAME,
        "image": trainer.image or settings.trainer_image,
        "command": command,
    }
    if trainer.args:
        container["args"] = list(trainer.args)
    if trainer.image_pull_policy is not None:
        container["imagePullPolicy"] = trainer.image_pull_policy.value
    container["env"] = trainer_env(job, index, settings)
    resources = resource_requirements(job)
    if resources:
        container["resources"] = resources
    container["ports"] = _ports(settings)
    container["volumeMounts"] = mounts
    container["securityContext"] = container_security_context(job, settings)
    container["terminationMessagePath"] = contract.DEFAULT_TERMINATION_LOG
    container["terminationMessagePolicy"] = "FallbackToLogsOnError"
    return container


def _tolerations(job: TrainingJob, settings: OperatorSettings) -> list[dict[str, Any]]:
    tolerations: list[dict[str, Any]] = []
    if job.spec.gpus_per_replica and settings.gpu_toleration:
        tolerations.append(dict(GPU_TOLERATION))
    for toleration in job.spec.tolerations:
        if toleration not in tolerations:
            tolerations.append(dict(toleration))
    return tolerations


def build_worker_pod(job: TrainingJob, index: int, attempt: int, settings: OperatorSettings) -> dict[str, Any]:
    """The pod `<job>-<index>` of restart generation `attempt`; replica 0 hosts the master (global rank 0).

    User `spec.trainer.env` entries are appended after the contract's variables and may not override them
    (they are dropped; the webhook rejects them). Raises ValueError for an index outside the replicas.
    """
    spec = job.spec
    if not 0 <= index < spec.replicas:
        raise ValueError(f"replica index {index} is outside 0..{spec.replicas - 1}")
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    name = job_name(job)
    template = spec.template
    metadata = child_metadata(job, pod_name(name, index), pod_labels(job, index, attempt))
    annotations = {**pod_annotations(job), **parameter_pod_annotations(job), **report_ca_annotations(settings)}
    if annotations:
        metadata["annotations"] = annotations
    volumes, mounts = _volumes(job, settings)
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "hostname": pod_name(name, index),
        "subdomain": service_name(name),
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_period_seconds,
        "securityContext": pod_security_context(job, settings),
    }
    if template.service_account_name is not None:
        pod_spec["serviceAccountName"] = template.service_account_name
    else:
        pod_spec["automountServiceAccountToken"] = False
    if template.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [ref.to_api() for ref in template.image_pull_secrets]
    if template.init_containers:
        pod_spec["initContainers"] = [container.to_api() for container in template.init_containers]
    pod_spec["containers"] = [
        trainer_container(job, index, settings, mounts),
        *(container.to_api() for container in template.extra_containers),
    ]
    pod_spec["volumes"] = volumes
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    tolerations = _tolerations(job, settings)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if spec.affinity is not None:
        pod_spec["affinity"] = spec.affinity
    if spec.priority_class_name is not None:
        pod_spec["priorityClassName"] = spec.priority_class_name
    if spec.scheduler_name is not None:
        pod_spec["schedulerName"] = spec.scheduler_name
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
