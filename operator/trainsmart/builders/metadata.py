"""Metadata shared by every child of a TrainingJob: owner references, child metadata, quantities.

Children are found again by labels (the watch selector; the names live in `trainsmart.names`) and tied
to their job by an ownerReference built here from the job's uid, not with `kopf.adopt()`: adopt reads a
context variable and copies every owner label onto the child, which would make user labels on the job
leak into selectors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainsmart.api import API_VERSION, TRAININGJOB_KIND, TrainingJob
from trainsmart.names import job_name, job_namespace, selector_labels


def quantity(value: int | float | str) -> str:
    """A resource quantity as the API's wire format wants it: always a string. The CRD accepts
    int-or-string (`cpu: 2`, `size: 1073741824`), and kubernetes client >= 35 validates request bodies,
    rejecting an int where a Quantity (a string) belongs."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def controller_reference(kind: str, name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The controller ownerReference to the object of `kind` named `name` with `metadata` (as stored: the
    uid is required). It ties a child to its owner for garbage collection and watches, and a re-created
    owner (a new uid) never adopts the previous one's children."""
    uid = metadata.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ValueError(f"the {kind} has no metadata.uid; owner references need the object as stored")
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def owner_reference(job: TrainingJob) -> dict[str, Any]:
    """The controller reference that ties a child to its job."""
    return controller_reference(TRAININGJOB_KIND, job_name(job), job.metadata)


def child_metadata(job: TrainingJob, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """metadata of a child: its name, the job's namespace, selector labels (winning over `labels`), owner."""
    return {
        "name": name,
        "namespace": job_namespace(job),
        "labels": {**(labels or {}), **selector_labels(job_name(job))},
        "ownerReferences": [owner_reference(job)],
    }
