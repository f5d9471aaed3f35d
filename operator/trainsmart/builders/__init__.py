"""Pure builders: a parsed TrainingJob (+ operator settings) -> the manifests of its children.

No API calls, no clocks, no randomness (the report token is an argument): the same inputs always give the
same dicts, so the I/O side can compare desired with actual and tests can pin every field. The names
these manifests carry (labels, annotations, child names) are `trainsmart.names`'.
"""

from trainsmart.builders.env import RESERVED_ENV_NAMES
from trainsmart.builders.metadata import owner_reference
from trainsmart.builders.pods import build_worker_pod
from trainsmart.builders.pvc import build_checkpoint_pvc
from trainsmart.builders.secret import build_report_token_secret
from trainsmart.builders.service import build_headless_service

__all__ = [
    "RESERVED_ENV_NAMES",
    "build_checkpoint_pvc",
    "build_headless_service",
    "build_report_token_secret",
    "build_worker_pod",
    "owner_reference",
]
