"""The checkpoint PersistentVolumeClaim `<job>-checkpoints`, when the job asks for one by size.

With `spec.checkpoint.claimName` the user owns the claim and nothing is built. The operator-created claim is
owned by the job, so it is garbage-collected with it (the CheckpointSpec documents this).

Access mode: rank 0 writes checkpoints and *every* rank reads the newest one on resume, so a job with more
than one replica needs ReadWriteMany (pods usually land on different nodes); a single replica gets
ReadWriteOnce, which every storage class supports.
"""

from __future__ import annotations

from typing import Any

from trainsmart.api import TrainingJob
from trainsmart.builders.metadata import child_metadata, quantity
from trainsmart.names import checkpoint_claim_name, job_name


def checkpoint_access_modes(replicas: int) -> list[str]:
    """ReadWriteOnce for one replica, ReadWriteMany when several pods mount the volume."""
    return ["ReadWriteOnce"] if replicas == 1 else ["ReadWriteMany"]


def build_checkpoint_pvc(job: TrainingJob) -> dict[str, Any] | None:
    """The claim to create, or None when the job has no checkpoint or uses an existing claim."""
    checkpoint = job.spec.checkpoint
    if checkpoint is None or checkpoint.size is None:
        return None
    spec: dict[str, Any] = {
        "accessModes": checkpoint_access_modes(job.spec.replicas),
        "resources": {"requests": {"storage": quantity(checkpoint.size)}},
    }
    if checkpoint.storage_class_name is not None:
        spec["storageClassName"] = checkpoint.storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": child_metadata(job, checkpoint_claim_name(job_name(job))),
        "spec": spec,
    }
