"""The trainer container's environment: the operator's half of the env contract.

Every name comes from `trainsmart_trainer.contract`, which the trainer reads with the same constants; a
unit test resolves a built pod's env and feeds it to the trainer's own parsers.

Layout for `replicas` pods x `processes` per pod (world size = replicas x processes):

* all pods: torchrun's `PET_*` (nodes, processes per node, this pod's node rank, master address and port),
  the classic `MASTER_ADDR`/`MASTER_PORT`/`WORLD_SIZE`/`LOCAL_WORLD_SIZE`;
* `RANK` only when a pod runs one process (it then equals the node rank); with several, the trainer's
  launcher gives each worker its own `RANK` and `LOCAL_RANK`. `LOCAL_RANK` is never set here: its
  presence tells a process it is a worker that must not spawn workers of its own.
* a sweep trial's objective metric and goal (`TRAINSMART_OBJECTIVE_METRIC`/`_GOAL`, from its annotations):
  what the trainer keeps its best checkpoint by;
* config as inline JSON (`TRAINSMART_CONFIG`): the validated `spec.trainer.config`, no file to mount;
* identity (job, namespace, attempt) through the downward API, the report token through a secretKeyRef
  (never a literal value);
* with an https report URL and the operator's own CA: `TRAINSMART_REPORT_CA_FILE`, the CA bundle as a
  file (`report_ca_volume`), so the trainer verifies the endpoint it hands its token to.

* Weights & Biases run identity, only for a job whose `spec.trainer.env` already has a `WANDB_` variable
  (the user asked for W&B) and only the variables the user did not set: `WANDB_RUN_ID` from the job's
  uid (so every attempt, whichever pod runs rank 0, logs into one run; a re-created job is a new run),
  `WANDB_RESUME=allow`, `WANDB_NAME` = the job's name, and for a sweep's trial `WANDB_RUN_GROUP` = the
  sweep's name. wandb reads them itself, in the packaged trainer and in any user code alike.

User variables (`spec.trainer.env`) come after these and may refer to them with `$(NAME)`, but may not
redefine them: such entries are dropped here (and refused by the webhook), since a later duplicate would
win in Kubernetes and silently break the distributed layout or the report authentication.
"""

from __future__ import annotations

import json
from typing import Any, Final

from trainsmart.api import TrainingJob
from trainsmart.api.common import RESERVED_LABEL_PREFIX, RESERVED_VOLUME_PREFIX
from trainsmart.builders.metrics_wrapper import client_env
from trainsmart.builders.trial_params import parameter_env
from trainsmart.names import (
    ATTEMPT_LABEL,
    JOB_NAME_LABEL,
    OBJECTIVE_GOAL_ANNOTATION,
    OBJECTIVE_METRIC_ANNOTATION,
    REPORT_TOKEN_KEY,
    SWEEP_NAME_LABEL,
    job_name,
    job_namespace,
    master_address,
    report_secret_name,
)
from trainsmart.settings import OperatorSettings
from trainsmart_trainer import contract

OPERATOR_ENV_NAMES: Final = frozenset(
    {
        contract.PET_NNODES,
        contract.PET_NPROC_PER_NODE,
        contract.PET_NODE_RANK,
        contract.PET_MASTER_ADDR,
        contract.PET_MASTER_PORT,
        contract.MASTER_ADDR,
        contract.MASTER_PORT,
        contract.WORLD_SIZE,
        contract.RANK,
        contract.LOCAL_WORLD_SIZE,
        contract.CONFIG_JSON,
        contract.CHECKPOINT_DIR,
        contract.CHECKPOINT_INTERVAL_EPOCHS,
        contract.REPORT_URL,
        contract.REPORT_TOKEN,
        contract.REPORT_CA_FILE,
        contract.METRICS_PORT,
        contract.JOB_NAME,
        contract.JOB_NAMESPACE,
        contract.ATTEMPT,
        contract.PARAMS_FILE,
        contract.OBJECTIVE_METRIC,
        contract.OBJECTIVE_GOAL,
    }
)
"""Every variable the operator may set (some only for some jobs); sweep trials also get `TRAINSMART_PARAM_*`."""

REPORT_CA_ANNOTATION: Final = f"{RESERVED_LABEL_PREFIX}report-ca"
"""Pod annotation holding the report endpoint's CA bundle (PEM), projected into the pod as a file."""
REPORT_CA_VOLUME: Final = f"{RESERVED_VOLUME_PREFIX}report-ca"
REPORT_CA_DIR: Final = "/etc/trainsmart/report-ca"
REPORT_CA_FILE_NAME: Final = "ca.crt"

RESERVED_ENV_NAMES: Final = OPERATOR_ENV_NAMES | {contract.LOCAL_RANK, contract.TORCHELASTIC_RUN_ID}
"""Names `spec.trainer.env` may not use: the operator's, plus the launcher's worker markers."""
RESERVED_ENV_PREFIXES: Final = (contract.PARAM_ENV_PREFIX,)
"""Prefixes `spec.trainer.env` may not use either: a sweep trial's per-parameter variables."""


def is_reserved_env_name(name: str) -> bool:
    """Whether `spec.trainer.env` may not define `name` (it would shadow the operator's value)."""
    return name in RESERVED_ENV_NAMES or name.startswith(RESERVED_ENV_PREFIXES)


def _literal(name: str, value: str | int) -> dict[str, Any]:
    return {"name": name, "value": str(value)}


def _field_ref(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def config_json(job: TrainingJob) -> str | None:
    """`spec.trainer.config` as compact, key-sorted JSON (stable bytes: same job, same pod); None if unset.

    Only the fields the job sets are passed: the trainer in the image applies its own defaults, exactly
    as for a config file, and the variable stays short.
    """
    config = job.spec.trainer.config
    if config is None:
        return None
    data = config.model_dump(mode="json", by_alias=True, exclude_unset=True, exclude_none=True)
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def contract_env(job: TrainingJob, index: int, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The operator's variables for replica `index`, in a fixed order."""
    spec = job.spec
    processes = spec.effective_processes_per_replica
    master = master_address(job_name(job), job_namespace(job))
    env = [
        _literal(contract.PET_NNODES, spec.replicas),
        _literal(contract.PET_NPROC_PER_NODE, processes),
        _literal(contract.PET_NODE_RANK, index),
        _literal(contract.PET_MASTER_ADDR, master),
        _literal(contract.PET_MASTER_PORT, settings.master_port),
        _literal(contract.MASTER_ADDR, master),
        _literal(contract.MASTER_PORT, settings.master_port),
        _literal(contract.WORLD_SIZE, spec.world_size),
        _literal(contract.LOCAL_WORLD_SIZE, processes),
    ]
    if processes == 1:
        env.append(_literal(contract.RANK, index))
    env += [
        _field_ref(contract.JOB_NAME, f"metadata.labels['{JOB_NAME_LABEL}']"),
        _field_ref(contract.JOB_NAMESPACE, "metadata.namespace"),
        _field_ref(contract.ATTEMPT, f"metadata.labels['{ATTEMPT_LABEL}']"),
    ]
    config = config_json(job)
    if config is not None:
        env.append(_literal(contract.CONFIG_JSON, config))
    if spec.checkpoint is not None:
        env.append(_literal(contract.CHECKPOINT_DIR, spec.checkpoint.mount_path))
        env.append(_literal(contract.CHECKPOINT_INTERVAL_EPOCHS, spec.checkpoint.interval_epochs))
    if settings.report_url is not None:
        env.append(_literal(contract.REPORT_URL, settings.report_url))
        secret_ref = {"name": report_secret_name(job_name(job)), "key": REPORT_TOKEN_KEY}
        env.append({"name": contract.REPORT_TOKEN, "valueFrom": {"secretKeyRef": secret_ref}})
        if report_ca_bundle(settings) is not None:
            env.append(_literal(contract.REPORT_CA_FILE, f"{REPORT_CA_DIR}/{REPORT_CA_FILE_NAME}"))
    if settings.metrics_port is not None:
        env.append(_literal(contract.METRICS_PORT, settings.metrics_port))
    env += objective_env(job)
    return env


def objective_env(job: TrainingJob) -> list[dict[str, Any]]:
    """A sweep trial's objective (its annotations, `builders/trial.py`), so the trainer keeps its best
    checkpoint by the metric the sweep ranks it by (issue 15); [] for a job that is no trial."""
    annotations = job.metadata.get("annotations") or {}
    metric, goal = annotations.get(OBJECTIVE_METRIC_ANNOTATION), annotations.get(OBJECTIVE_GOAL_ANNOTATION)
    if not isinstance(metric, str) or not metric:
        return []
    env = [_literal(contract.OBJECTIVE_METRIC, metric)]
    if isinstance(goal, str) and goal:
        env.append(_literal(contract.OBJECTIVE_GOAL, goal))
    return env


def report_ca_bundle(settings: OperatorSettings) -> str | None:
    """The CA bundle pods verify the report endpoint with: only for an https URL (plain HTTP has nothing to
    verify) and only when the operator has one (None: the system CAs, e.g. a publicly trusted certificate)."""
    url = settings.report_url
    if url is None or not url.startswith("https://"):
        return None
    return settings.report_ca_bundle


def report_ca_annotations(settings: OperatorSettings) -> dict[str, str]:
    """The annotation the CA volume projects, on every pod (empty without a CA to give)."""
    bundle = report_ca_bundle(settings)
    return {} if bundle is None else {REPORT_CA_ANNOTATION: bundle}


def report_ca_volume(settings: OperatorSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, trainer volumeMounts) that put the CA bundle at `REPORT_CA_FILE`; empty without one.

    The pod's own annotation through a downwardAPI volume rather than a Secret or ConfigMap: pods run in
    any namespace and the operator's CA lives in its own, and this needs no extra object per namespace or
    job, nor RBAC for one. A CA bundle is public, so an annotation is no leak."""
    if report_ca_bundle(settings) is None:
        return [], []
    field = {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{REPORT_CA_ANNOTATION}']"}
    item = {"path": REPORT_CA_FILE_NAME, "fieldRef": field}
    volume = {"name": REPORT_CA_VOLUME, "downwardAPI": {"items": [item]}}
    return [volume], [{"name": REPORT_CA_VOLUME, "mountPath": REPORT_CA_DIR, "readOnly": True}]


WANDB_PREFIX: Final = "WANDB_"
WANDB_RUN_ID: Final = "WANDB_RUN_ID"
WANDB_RESUME: Final = "WANDB_RESUME"
WANDB_NAME: Final = "WANDB_NAME"
WANDB_RUN_GROUP: Final = "WANDB_RUN_GROUP"


def wandb_run_id(uid: str) -> str:
    """The W&B run id of the job with metadata.uid `uid`: its hex digits, lower-cased (W&B ids allow
    [a-z0-9]; a Kubernetes uid is a UUID, so 32 of them, unique per object ever created)."""
    run_id = "".join(c for c in uid.lower() if c.isascii() and c.isalnum())
    if not run_id:
        raise ValueError(f"metadata.uid {uid!r} has no letters or digits for a W&B run id")
    return run_id


def wandb_env(job: TrainingJob) -> list[dict[str, Any]]:
    """W&B's run identity for a job whose env already has a `WANDB_` variable; each only when the user has
    not set it. [] for any other job (no W&B wanted, or the user set the identity themselves)."""
    names = {var.name for var in job.spec.trainer.env}
    if not any(name.startswith(WANDB_PREFIX) for name in names):
        return []
    uid = job.metadata.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ValueError("the TrainingJob has no metadata.uid; the W&B run id derives from it")
    wanted = [
        (WANDB_RUN_ID, wandb_run_id(uid)),
        (WANDB_RESUME, "allow"),
        (WANDB_NAME, job_name(job)),
    ]
    labels = job.metadata.get("labels")
    sweep = labels.get(SWEEP_NAME_LABEL) if isinstance(labels, dict) else None
    if isinstance(sweep, str) and sweep:
        wanted.append((WANDB_RUN_GROUP, sweep))
    return [_literal(name, value) for name, value in wanted if name not in names]


def user_env(job: TrainingJob) -> list[dict[str, Any]]:
    """`spec.trainer.env` as written, minus entries that would redefine a reserved name."""
    return [var.to_api() for var in job.spec.trainer.env if not is_reserved_env_name(var.name)]


def trainer_env(job: TrainingJob, index: int, settings: OperatorSettings) -> list[dict[str, Any]]:
    """The whole env list of the trainer container: the contract first, then the metrics wrapper's
    PYTHONPATH (only with spec.trainer.metrics), a sweep trial's parameters, W&B's run identity (only for
    a job that uses W&B), then the user's additions."""
    return contract_env(job, index, settings) + client_env(job) + parameter_env(job) + wandb_env(job) + user_env(job)
