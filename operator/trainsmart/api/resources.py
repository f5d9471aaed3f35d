"""Whole objects (apiVersion, kind, metadata, spec, status) as the operator receives them.

The CRDs are generated from the spec and status models; these envelopes exist so that handlers and tests
can parse and build complete objects with one call, with the kind and apiVersion checked.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import Field

from trainsmart.api.common import ApiModel
from trainsmart.api.sweep_spec import HyperparamSweepSpec
from trainsmart.api.sweep_status import HyperparamSweepStatus
from trainsmart.api.trainingjob_spec import TrainingJobSpec
from trainsmart.api.trainingjob_status import TrainingJobStatus

TRAININGJOB_KIND: Final = "TrainingJob"
TRAININGJOB_PLURAL: Final = "trainingjobs"
SWEEP_KIND: Final = "HyperparamSweep"
SWEEP_PLURAL: Final = "hyperparamsweeps"


class TrainingJob(ApiModel):
    """A TrainingJob object."""

    api_version: Literal["trainsmart.dev/v1alpha1"] = Field(
        default="trainsmart.dev/v1alpha1", description="API version."
    )
    kind: Literal["TrainingJob"] = Field(default=TRAININGJOB_KIND, description="Kind.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: TrainingJobSpec = Field(description="Desired state.")
    status: TrainingJobStatus | None = Field(default=None, description="Observed state.")


class HyperparamSweep(ApiModel):
    """A HyperparamSweep object."""

    api_version: Literal["trainsmart.dev/v1alpha1"] = Field(
        default="trainsmart.dev/v1alpha1", description="API version."
    )
    kind: Literal["HyperparamSweep"] = Field(default=SWEEP_KIND, description="Kind.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Standard object metadata.")
    spec: HyperparamSweepSpec = Field(description="Desired state.")
    status: HyperparamSweepStatus | None = Field(default=None, description="Observed state.")
