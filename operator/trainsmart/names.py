"""Shared names: the labels, annotations and child names that tie trainsmart's objects together.

Builders write these names, the status derivation and the metrics read them back, the controllers select
by them and admission checks that they will fit. They live in this one module, below all of those, so
that no layer has to import another layer only to spell a label, and a renamed label is renamed
everywhere at once. Only names here: no manifests (`builders`), no decisions (`status`, `sweep`).
"""

from __future__ import annotations

import re
from typing import Final

from trainsmart.api import HyperparamSweep, TrainingJob
from trainsmart.api.common import RESERVED_LABEL_PREFIX

# ---- labels -----------------------------------------------------------------------------------------------

MANAGED_BY_LABEL: Final = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE: Final = "trainsmart"
JOB_NAME_LABEL: Final = f"{RESERVED_LABEL_PREFIX}job-name"
REPLICA_INDEX_LABEL: Final = f"{RESERVED_LABEL_PREFIX}replica-index"
ATTEMPT_LABEL: Final = f"{RESERVED_LABEL_PREFIX}attempt"
"""The restart generation a pod belongs to (= status.restarts when it was created)."""
SWEEP_NAME_LABEL: Final = f"{RESERVED_LABEL_PREFIX}sweep-name"
TRIAL_NUMBER_LABEL: Final = f"{RESERVED_LABEL_PREFIX}trial-number"
ACTIVE_LABEL: Final = f"{RESERVED_LABEL_PREFIX}peering-active"
"""On the operator's own pod while it is the acting peer: the report Service selects it."""

# Kueue's plain-pod integration: a queue, and a pod group admitted as one workload.
KUEUE_QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
KUEUE_POD_GROUP_LABEL: Final = "kueue.x-k8s.io/pod-group-name"
KUEUE_POD_GROUP_COUNT_ANNOTATION: Final = "kueue.x-k8s.io/pod-group-total-count"

# ---- annotations a sweep writes on its trials --------------------------------------------------------------

PARAMETERS_ANNOTATION: Final = f"{RESERVED_LABEL_PREFIX}parameters"
"""The trial's parameter values by parameter name, as a JSON object."""
OBJECTIVE_METRIC_ANNOTATION: Final = f"{RESERVED_LABEL_PREFIX}objective-metric"
"""The metric the trial's status history tracks (the sweep's objective), overriding the trainer's choice."""
OBJECTIVE_GOAL_ANNOTATION: Final = f"{RESERVED_LABEL_PREFIX}objective-goal"
"""maximize or minimize: the direction of the objective metric, for the trial's best values."""
STOPPED_ANNOTATION: Final = f"{RESERVED_LABEL_PREFIX}stopped"
"""Why the sweep stopped (suspended) the trial, e.g. EarlyStopped; absent while it may run."""
STOPPED_MESSAGE_ANNOTATION: Final = f"{RESERVED_LABEL_PREFIX}stopped-message"
"""The same in words (the early-stopping rule's reasoning), for the trial table and Events."""

# ---- keys ---------------------------------------------------------------------------------------------------

REPORT_TOKEN_KEY: Final = "token"  # noqa: S105 - the key's name, not a secret
"""The data key of the report-token Secret; pods read it through a secretKeyRef."""

# ---- object names -------------------------------------------------------------------------------------------

# Pod hostnames and the Service name are DNS labels: `<job>-<index>` must fit 63 characters, and a
# Service name must start with a letter (RFC 1035).
_DNS_1035_LABEL: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX: Final = 63


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


def sweep_name(sweep: HyperparamSweep) -> str:
    """metadata.name of a sweep, which its trials' names derive from."""
    name = sweep.metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("the HyperparamSweep has no metadata.name")
    return name


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


def client_configmap_name(name: str) -> str:
    """The ConfigMap that carries the metrics wrapper (the client zipapp) into a job's pods."""
    return f"{name}-trainsmart-client"


def master_address(name: str, namespace: str) -> str:
    """Replica 0's DNS name through the headless Service; resolvable before readiness."""
    return f"{pod_name(name, 0)}.{service_name(name)}.{namespace}.svc"


def trial_name(sweep: str, number: int) -> str:
    """`<sweep>-<number>`: the name of a sweep's trial TrainingJob (number counts from 0)."""
    return f"{sweep}-{number}"


def selector_labels(name: str) -> dict[str, str]:
    """Labels that select every child of one job (Service selector, watch and list selectors)."""
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, JOB_NAME_LABEL: name}


def trial_labels(sweep: str, number: int) -> dict[str, str]:
    """Labels of a sweep's trial: the sweep's name (its selector) and the trial's number (their order)."""
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, SWEEP_NAME_LABEL: sweep, TRIAL_NUMBER_LABEL: str(number)}


def trial_selector(sweep: str) -> str:
    """The label selector that lists every trial of a sweep."""
    return f"{SWEEP_NAME_LABEL}={sweep}"


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
