"""Experiment tracking of a TrainingJob or a HyperparamSweep: `spec.tracking` (issue 14).

The operator itself logs to MLflow, from the reports and the status it already has (see
`trainsmart.tracking`), so nothing here reaches the training pods. Credentials never appear in the spec:
`credentialsSecret` names a Secret in the object's namespace, and a tracking URI carrying a user or a
password is refused at admission, because the URI is shown in status conditions and logs.
"""

from __future__ import annotations

import urllib.parse
from typing import Final, Self

from pydantic import ConfigDict, Field, model_validator

from trainsmart.api.cel import rule, validations
from trainsmart.api.common import ApiModel, DnsName

TRACKING_URI_PATTERN: Final = r"^https?://[^/@\s]+(/[^\s]*)?$"
"""http(s), a host, an optional path; no `user:password@` (credentials go in credentialsSecret)."""
MAX_TRACKING_URI_CHARS: Final = 2048
MAX_EXPERIMENT_CHARS: Final = 500
TOKEN_KEY: Final = "MLFLOW_TRACKING_TOKEN"  # noqa: S105 - a Secret key's name
USERNAME_KEY: Final = "MLFLOW_TRACKING_USERNAME"
PASSWORD_KEY: Final = "MLFLOW_TRACKING_PASSWORD"  # noqa: S105 - the name of a Secret key, not a password


class MlflowTracking(ApiModel):
    """Where the operator logs this object's runs in MLflow."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "!has(self.trackingUri) || !self.trackingUri.contains('@')",
                "trackingUri may not carry credentials (user:password@); put them in credentialsSecret",
            )
        )
    )

    tracking_uri: str | None = Field(
        default=None,
        pattern=TRACKING_URI_PATTERN,
        max_length=MAX_TRACKING_URI_CHARS,
        description="The MLflow tracking server, http:// or https://, e.g. https://mlflow.example.com. Unset: the "
        "operator's default (the chart's tracking.mlflow.trackingUri); with neither, nothing is logged. No "
        "credentials in the URI: use credentialsSecret.",
    )
    experiment: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_EXPERIMENT_CHARS,
        description="The MLflow experiment, created when missing. Unset: the object's namespace. A sweep's "
        "trials use the sweep's experiment, so they appear under its parent run.",
    )
    credentials_secret: DnsName | None = Field(
        default=None,
        description="A Secret in this namespace with MLFLOW_TRACKING_TOKEN (a bearer token) or "
        "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (basic auth). Read by the operator only: it "
        "never reaches the training pods, the status, Events or logs. Unset: no authentication.",
    )

    @model_validator(mode="after")
    def _no_credentials_in_uri(self) -> Self:
        if self.tracking_uri is not None:
            parts = urllib.parse.urlsplit(self.tracking_uri)
            if parts.username is not None or parts.password is not None or "@" in self.tracking_uri:
                raise ValueError(
                    "trackingUri may not carry credentials (user:password@); put them in credentialsSecret"
                )
        return self


class TrackingSpec(ApiModel):
    """Experiment tracking: the operator logs parameters, per-epoch metrics and the outcome."""

    mlflow: MlflowTracking | None = Field(
        default=None,
        description="Log to MLflow: each TrainingJob is a run (parameters, metrics per epoch, tags namespace, "
        "job, attempt, sweep, phase); a sweep is a parent run with its trials as child runs, the best one "
        "tagged trainsmart.dev/best=true. An unreachable server never slows or fails training: the operator "
        "retries and shows the condition TrackingReady.",
    )
