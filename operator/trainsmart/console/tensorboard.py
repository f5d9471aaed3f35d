"""`trainsmart tensorboard JOB|SWEEP`: TensorBoard over the event files the trainers write under
`<checkpoint mountPath>/tensorboard/` on each job's checkpoint volume.

In the local cluster a claim's volume is a host directory (the node agent's provisioner makes hostPath
PVs: claim -> spec.volumeName -> PV -> spec.hostPath.path), so the directories are on this machine and
TensorBoard runs here with one run per job (`--logdir_spec name:dir,...`). On a real cluster the volume is
not on this machine: the command prints how to reach it instead (a pod that mounts the claims read-only
and runs TensorBoard, then `kubectl port-forward`); it does not create that pod itself.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from trainsmart.api.trainingjob_spec import DEFAULT_CHECKPOINT_MOUNT_PATH
from trainsmart.console.access import EXIT_NOT_FOUND, Cluster, ConsoleError
from trainsmart.names import checkpoint_claim_name

TENSORBOARD_SUBDIR: Final = "tensorboard"
DEFAULT_PORT: Final = 6006


@dataclass(frozen=True)
class RunVolume:
    """Where one job's event files live: its claim, the path inside it, and the host directory when the
    volume is a local hostPath this machine has."""

    job: str
    claim: str
    subpath: str
    local_dir: Path | None


def claim_of(job: Mapping[str, Any]) -> str | None:
    checkpoint = (job.get("spec") or {}).get("checkpoint")
    if not checkpoint:
        return None
    return str(checkpoint.get("claimName") or checkpoint_claim_name(str(job["metadata"]["name"])))


def run_volumes(cluster: Cluster, namespace: str, jobs: Sequence[Mapping[str, Any]]) -> list[RunVolume]:
    runs = []
    for job in jobs:
        claim_name = claim_of(job)
        if claim_name is None:
            continue
        local = None
        claim = cluster.claim(namespace, claim_name)
        volume_name = ((claim or {}).get("spec") or {}).get("volumeName")
        volume = cluster.volume(volume_name) if volume_name else None
        host = ((volume or {}).get("spec") or {}).get("hostPath", {}).get("path")
        if host and Path(host).is_dir():
            local = Path(host) / TENSORBOARD_SUBDIR
        runs.append(RunVolume(str(job["metadata"]["name"]), claim_name, TENSORBOARD_SUBDIR, local))
    return runs


def jobs_of(cluster: Cluster, name: str, namespace: str) -> list[dict[str, Any]]:
    obj = cluster.find(name, namespace)
    if obj.get("kind") == "HyperparamSweep":
        return cluster.trials(namespace, name)
    return [obj]


def local_command(runs: Sequence[RunVolume], port: int = DEFAULT_PORT) -> list[str]:
    spec = ",".join(f"{run.job}:{run.local_dir}" for run in runs if run.local_dir is not None)
    return [sys.executable, "-m", "tensorboard.main", "--logdir_spec", spec, "--port", str(port), "--bind_all"]


def remote_instructions(namespace: str, runs: Sequence[RunVolume], port: int = DEFAULT_PORT) -> list[str]:
    """How to see the runs when their volumes are not on this machine."""
    mounts = "\n".join(
        f"    - {{name: run{i}, mountPath: /runs/{run.job}, subPath: {run.subpath}, readOnly: true}}"
        for i, run in enumerate(runs)
    )
    volumes = "\n".join(
        f"  - {{name: run{i}, persistentVolumeClaim: {{claimName: {run.claim}, readOnly: true}}}}"
        for i, run in enumerate(runs)
    )
    manifest = f"""apiVersion: v1
kind: Pod
metadata: {{name: tensorboard, namespace: {namespace}}}
spec:
  containers:
  - name: tensorboard
    image: tensorflow/tensorflow:latest
    command: [tensorboard, --logdir, /runs, --bind_all, --port, "{port}"]
    volumeMounts:
{mounts}
  volumes:
{volumes}"""
    return [
        "the checkpoint volumes are not on this machine; run TensorBoard in the cluster, next to them:",
        "(a ReadWriteOnce volume mounts only on the node that holds it: run this while the jobs are not running,",
        " or on the same node)",
        "",
        "kubectl apply -f - <<'EOF'",
        manifest,
        "EOF",
        f"kubectl -n {namespace} port-forward pod/tensorboard {port}:{port}",
        f"then open http://localhost:{port}/",
    ]


@dataclass(frozen=True)
class TensorBoardPlan:
    runs: list[RunVolume]
    command: list[str] | None
    url: str | None
    instructions: list[str]

    def lines(self) -> list[str]:
        if self.command is not None:
            return [shlex.join(self.command), f"TensorBoard at {self.url}"]
        return self.instructions


def plan(cluster: Cluster, name: str, namespace: str, port: int = DEFAULT_PORT) -> TensorBoardPlan:
    """What `trainsmart tensorboard` would run (or print) for a job or a sweep's trials."""
    runs = run_volumes(cluster, namespace, jobs_of(cluster, name, namespace))
    if not runs:
        raise ConsoleError(
            f"{name} has no checkpoint volume, and TensorBoard event files are written to it: add "
            f"spec.checkpoint (e.g. size: 1Gi; the files go to <mountPath, default {DEFAULT_CHECKPOINT_MOUNT_PATH}>"
            f"/{TENSORBOARD_SUBDIR})",
            EXIT_NOT_FOUND,
        )
    if all(run.local_dir is not None for run in runs):
        return TensorBoardPlan(runs, local_command(runs, port), f"http://localhost:{port}/", [])
    return TensorBoardPlan(runs, None, None, remote_instructions(namespace, runs, port))
