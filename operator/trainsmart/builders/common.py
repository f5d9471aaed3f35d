"""Names, labels and owner references shared by every child of a TrainingJob.

Children are found again by labels (the watch selector) and tied to their job by an ownerReference built
here from the job's uid, not with `kopf.adopt()`: adopt reads a context variable and copies every owner
label onto the child, which would make user labels on the job leak into selectors.
"""

from __future__ import annotations

import re
from typing import Any, Final

from trainsmart.api import API_VERSION, TRAININGJOB_KIND, TrainingJob
from trainsmart.api.common import RESERVED_LABEL_PREFIX

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "trainsmart"
JOB_NAME_LABEL: Final = f"{RESERVED_LABEL_PREFIX}job-name"
REPLICA_INDEX_LABEL: Final = f"{RESERVED_LABEL_PREFIX}replica-index"
ATTEMPT_LABEL: Final = f"{RESERVED_LABEL_PREFIX}attempt"
"""The restart generation a pod belongs to (= status.restarts when it was created)."""

# Kueue's plain-pod integration: a queue, and a pod group admitted as one workload.
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
KUEUE_POD_GROUP_LABEL: Final = "kueue.x-k8s.io/pod-group-name"
KUEUE_POD_GROUP_COUNT_ANNOTATION: Final = "kueue.x-k8s.io/pod-group-total-count"

# Pod hostnames and the Service name are DNS labels: `<job>-<index>` must fit 63 characters, and a
# Service name must start with a letter (RFC 1035).
_DNS_1035_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX: Final = 63


def quantity(value: int | float | str) -> str:
    """A resource quantity as the API's wire format wants it: always a string. The CRD accepts
    int-or-string (`cpu: 2`, `size: 1073741824`), and kubernetes client >= 35 validates request bodies,
    rejecting an int where a Quantity (a string) belongs."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def job_name(job: TrainingJob) -> str:
    """metadata.name, which every child name derives from."""
    name = job.metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("the TrainingJob has no metadata.name")
    return name


def job_namespace(job: TrainingJob) -> str:
    """metadata.namespace; children always live beside their job."""
    namespace = job.metadata.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        raise ValueError("the TrainingJob has no metadata.namespace")
    return namespace


def job_generation(job: TrainingJob) -> int | None:
    """metadata.generation (None for an object not read from the API, as in some tests)."""
    generation = job.metadata.get("generation")
    return generation if isinstance(generation, int) else None


def pod_name(name: str, index: int) -> str:
    """`<job>-<index>`: also the pod's hostname, so DNS gives `<job>-<index>.<job>.<ns>.svc`."""
    return f"{name}-{index}"


def service_name(name: str) -> str:
    """The headless Service shares the job's name (the pods' subdomain)."""
    return name


def report_secret_name(name: str) -> str:
    return f"{name}-report-token"


def checkpoint_claim_name(name: str) -> str:
    return f"{name}-checkpoints"


def master_address(name: str, namespace: str) -> str:
    """Replica 0's DNS name through the headless Service; resolvable before readiness."""
    return f"{pod_name(name, 0)}.{service_name(name)}.{namespace}.svc"


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select every child of one job (Service selector, watch and list selectors)."""
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, JOB_NAME_LABEL: name}


def owner_reference(job: TrainingJob) -> dict[str, Any]:
    """The controller reference that ties a child to its job (garbage collection, watches)."""
    uid = job.metadata.get("uid")
    if not isinstance(uid, str) or not uid:
        raise ValueError("the TrainingJob has no metadata.uid; owner references need the object as stored")
    return {
        "apiVersion": API_VERSION,
        "kind": TRAININGJOB_KIND,
        "name": job_name(job),
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_metadata(job: TrainingJob, name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    """metadata of a child: its name, the job's namespace, selector labels (winning over `labels`), owner."""
    return {
        "name": name,
        "namespace": job_namespace(job),
        "labels": {**(labels or {}), **selector_labels(job_name(job))},
        "ownerReferences": [owner_reference(job)],
    }


def name_problems(name: str, replicas: int) -> list[str]:
    """Why a job name cannot be used for `replicas` pods (empty: fine); for the webhook and InvalidSpec.

    The job name becomes the Service name (an RFC 1035 label) and the prefix of the pod hostnames
    `<name>-<index>` (63 characters at most), stricter than what the apiserver allows for the job itself.
    """
    problems = []
    if not _DNS_1035_LABEL.match(name):
        problems.append(
            f"metadata.name {name!r} must be a DNS label starting with a letter (lower-case letters, digits, "
            "'-'): it names the job's Service"
        )
    longest = pod_name(name, replicas - 1)
    if len(longest) > DNS_LABEL_MAX:
        problems.append(
            f"metadata.name is too long: pod hostname {longest!r} has {len(longest)} characters, the limit is "
            f"{DNS_LABEL_MAX}; shorten the name to {DNS_LABEL_MAX - len(longest) + len(name)} characters"
        )
    return problems
