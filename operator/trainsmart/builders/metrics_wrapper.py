"""The metrics wrapper a job with `spec.trainer.metrics` runs under: its command line, ConfigMap and mount.

With `spec.trainer.metrics` set, the trainer container runs `python3 <zipapp> wrap <flags> -- <command>
<args>` instead of the command itself. The zipapp is the stdlib-only `trainsmart_client` package; it
starts the command as its child, passes its output through unchanged, forwards signals, keeps its exit
code and reports the metric lines it parses, with the job's token, as the packaged trainer does. Every
replica runs the same wrapper; only global rank 0 reports, which the wrapper decides from the contract's
RANK / PET_NODE_RANK, so the pod spec needs no per-replica difference.

Why a per-job ConfigMap, mounted read-only, rather than an init container copying from the operator
image: it works with any image registry policy (nothing to pull but the user's image), it needs no
writable volume (the pod keeps its read-only root filesystem and stays PSS-restricted), and the bytes
travel with the job (immutable, owned by the job, gone with it). The zipapp is tens of KiB, far below the
1 MiB object limit.

The bytes are an argument, so these builders stay pure: the controller builds the zipapp once per process.
PYTHONPATH points at the zipapp too, so the user's code can `import trainsmart_client` without installing
it; a user who sets PYTHONPATH themselves keeps exactly their value (and may add the zipapp's path to it).
"""

from __future__ import annotations

import base64
from typing import Any, Final

from trainsmart.api import TrainingJob
from trainsmart.api.trainingjob_spec import MetricsFormat, TrainerMetrics
from trainsmart.builders.metadata import child_metadata
from trainsmart.names import client_configmap_name, job_name

CLIENT_VOLUME: Final = "trainsmart-client"
CLIENT_MOUNT_PATH: Final = "/opt/trainsmart/client"
CLIENT_ZIPAPP_KEY: Final = "trainsmart-client.pyz"
CLIENT_ZIPAPP_PATH: Final = f"{CLIENT_MOUNT_PATH}/{CLIENT_ZIPAPP_KEY}"
WRAPPER_INTERPRETER: Final = "python3"
"""The one thing the user's image must provide: any python3 >= 3.8 on PATH (the zipapp uses only the stdlib)."""
PYTHONPATH: Final = "PYTHONPATH"
_FORMAT_FLAGS: Final = {MetricsFormat.JSON: "json", MetricsFormat.KEY_VALUE: "kv", MetricsFormat.REGEX: "regex"}


def wrapper_flags(metrics: TrainerMetrics, objective: str | None = None) -> list[str]:
    """The `wrap` options for `metrics`, in a fixed order (the same job gives the same pod). The wrapper
    parses JSON lines unless told otherwise, so a block with only tensorboardDir says so explicitly.
    `objective` (a sweep trial's objective metric) is the metric whose per-epoch values the final result
    carries, so a trial whose reports were lost still has its objective history from the termination
    message."""
    flags: list[str] = [] if objective is None else ["--objective", objective]
    if metrics.format is None:
        flags.append("--no-stdout-metrics")
    else:
        flags += ["--format", _FORMAT_FLAGS[metrics.format]]
    if metrics.pattern is not None:
        flags += ["--pattern", metrics.pattern]
    if metrics.epoch_key is not None:
        flags += ["--epoch-key", metrics.epoch_key]
    if metrics.tensorboard_dir is not None:
        flags += ["--tensorboard-dir", metrics.tensorboard_dir]
    return flags


def wrapped_command(metrics: TrainerMetrics, command: list[str], objective: str | None = None) -> list[str]:
    """The container command that runs `command` under the wrapper. The container's `args` stay as the
    user wrote them: they follow the command, so they land after the `--` that ends the wrapper's options."""
    return [WRAPPER_INTERPRETER, CLIENT_ZIPAPP_PATH, "wrap", *wrapper_flags(metrics, objective), "--", *command]


def client_volume(job: TrainingJob) -> dict[str, Any]:
    """The pod volume of the job's client ConfigMap."""
    return {"name": CLIENT_VOLUME, "configMap": {"name": client_configmap_name(job_name(job))}}


def client_mount() -> dict[str, Any]:
    """Read-only: the wrapper only reads its own code."""
    return {"name": CLIENT_VOLUME, "mountPath": CLIENT_MOUNT_PATH, "readOnly": True}


def client_env(job: TrainingJob) -> list[dict[str, Any]]:
    """PYTHONPATH = the zipapp, so `import trainsmart_client` works; nothing when the user sets PYTHONPATH
    themselves (theirs wins untouched) or the job has no wrapper."""
    if job.spec.trainer.metrics is None or any(var.name == PYTHONPATH for var in job.spec.trainer.env):
        return []
    return [{"name": PYTHONPATH, "value": CLIENT_ZIPAPP_PATH}]


def build_client_configmap(job: TrainingJob, zipapp: bytes) -> dict[str, Any]:
    """The ConfigMap `<job>-trainsmart-client` with the zipapp under `CLIENT_ZIPAPP_KEY`. Immutable: the
    pods of one job must all run the same wrapper, and the kubelet then need not watch it."""
    if not zipapp:
        raise ValueError("the client zipapp is empty")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(job, client_configmap_name(job_name(job))),
        "immutable": True,
        "binaryData": {CLIENT_ZIPAPP_KEY: base64.b64encode(zipapp).decode("ascii")},
    }
