"""Pure builders: a parsed TrainingJob (+ operator settings) -> the manifests of its children.

No API calls, no clocks, no randomness (the report token is an argument): the same inputs always give the
same dicts, so the I/O side can compare desired with actual and tests can pin every field.
"""

from trainsmart.builders.common import (
    ATTEMPT_LABEL,
    JOB_NAME_LABEL,
    MANAGED_BY_LABEL,
    REPLICA_INDEX_LABEL,
    checkpoint_claim_name,
    name_problems,
    owner_reference,
    pod_name,
    report_secret_name,
    selector_labels,
    service_name,
)
from trainsmart.builders.env import RESERVED_ENV_NAMES
from trainsmart.builders.pods import build_worker_pod
from trainsmart.builders.pvc import build_checkpoint_pvc
from trainsmart.builders.secret import REPORT_TOKEN_KEY, build_report_token_secret
from trainsmart.builders.service import build_headless_service

__all__ = [
    "ATTEMPT_LABEL",
    "JOB_NAME_LABEL",
    "MANAGED_BY_LABEL",
    "REPLICA_INDEX_LABEL",
    "REPORT_TOKEN_KEY",
    "RESERVED_ENV_NAMES",
    "build_checkpoint_pvc",
    "build_headless_service",
    "build_report_token_secret",
    "build_worker_pod",
    "checkpoint_claim_name",
    "name_problems",
    "owner_reference",
    "pod_name",
    "report_secret_name",
    "selector_labels",
    "service_name",
]
