"""The per-job report-token Secret: what authenticates rank 0's reports to the operator.

The token is an argument, never generated here, so the builder stays a pure function (the same job and
token give the same manifest) and the I/O side decides where randomness comes from and when a token is
rotated. The Secret is immutable: a token never changes during a job, and the kubelet then need not
watch it.
"""

from __future__ import annotations

import base64
from typing import Any

from trainsmart.api import TrainingJob
from trainsmart.builders.metadata import child_metadata
from trainsmart.names import REPORT_TOKEN_KEY, job_name, report_secret_name


def build_report_token_secret(job: TrainingJob, token: str) -> dict[str, Any]:
    """The Secret `<job>-report-token` holding `token` under `REPORT_TOKEN_KEY`."""
    if not token:
        raise ValueError("the report token is empty")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": child_metadata(job, report_secret_name(job_name(job))),
        "type": "Opaque",
        "immutable": True,
        "data": {REPORT_TOKEN_KEY: base64.b64encode(token.encode()).decode("ascii")},
    }
