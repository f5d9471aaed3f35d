"""The operator's own configuration: what every TrainingJob pod gets unless its spec says otherwise.

Kept to what the pure builders need, as one frozen pydantic model, so a builder call is a function of
(job, settings) only and tests can build pods for any configuration without touching the environment.
Where the values come from (Helm values, environment, flags) is the I/O side's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trainsmart import __version__
from trainsmart_trainer import contract

DEFAULT_TRAINER_IMAGE: Final = f"ghcr.io/trainsmart/trainer:{__version__}"
# The packaged trainer itself, not torchrun: its launcher keeps the retryable/permanent exit codes apart
# (see the contract module). `python` (not the script name) so the local node agent's venv is used too.
DEFAULT_TRAINER_COMMAND: Final = ("python", "-m", "trainsmart_trainer")
DEFAULT_MASTER_PORT: Final = 29500
# Long enough for rank 0 to finish its step and write a checkpoint after SIGTERM (suspend, restart,
# preemption); the kubelet's 30 s default would cut large checkpoints short.
DEFAULT_TERMINATION_GRACE_SECONDS: Final = 120
DEFAULT_LOST_NODE_FORCE_DELETE_AFTER_S: Final = 60
NON_ROOT_ID: Final = 1000
DEFAULT_CURRENCY: Final = "USD"
DEFAULT_PRICE_NODE_LABEL: Final = "nvidia.com/gpu.product"
"""GPU Feature Discovery's label of a node's GPU model (e.g. NVIDIA-A100-SXM4-80GB)."""


class NamespaceMode(StrEnum):
    """Which namespaces the operator watches."""

    ALL = "all"
    """Every namespace (cluster-wide RBAC)."""
    OWN = "own"
    """Only the namespace the operator runs in."""
    LIST = "list"
    """The namespaces in `namespaces`."""


Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
"""A price per GPU-hour: finite, not negative (0 is allowed: a node pool someone else pays for)."""


class GpuPricing(BaseModel):
    """What a GPU-hour costs, for the estimated cost in status and metrics (`status/cost.py`).

    An estimate: GPU time as the operator accounts it (`gpuSeconds`) times a price the cluster's owner
    states, per node model where it differs; no cloud bill is read.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    price_per_gpu_hour: Price
    """The price of one GPU for one hour on a node whose label value has no price of its own."""
    currency: str = Field(default=DEFAULT_CURRENCY, pattern=r"^[A-Z]{3}$")
    """ISO 4217 code the prices are in (shown beside every cost)."""
    node_label: str = Field(default=DEFAULT_PRICE_NODE_LABEL, min_length=1)
    """The node label whose value picks a price from `by_label_value`."""
    by_label_value: Mapping[str, Price] = Field(default_factory=dict)
    """Price per GPU-hour by the value of `node_label` (e.g. {"NVIDIA-H100-80GB-HBM3": 6.0})."""

    def price_for(self, label_value: str | None) -> float:
        """The price per GPU-hour on a node whose `node_label` is `label_value` (None: no such label)."""
        if label_value is None:
            return self.price_per_gpu_hour
        return self.by_label_value.get(label_value, self.price_per_gpu_hour)


class OperatorSettings(BaseModel):
    """Operator-wide defaults and endpoints used when building children of a TrainingJob."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trainer_image: str = Field(default=DEFAULT_TRAINER_IMAGE, min_length=1)
    """Image for jobs that leave `spec.trainer.image` unset."""
    trainer_command: tuple[str, ...] = Field(default=DEFAULT_TRAINER_COMMAND, min_length=1)
    """Command for jobs that leave `spec.trainer.command` unset."""
    report_url: str | None = Field(default=None, pattern=r"^https?://")
    """The operator's report endpoint as pods reach it; None: pods get no report URL (and no token)."""
    report_ca_bundle: str | None = None
    """PEM CA bundle pods verify an https `report_url` with (the CA of the endpoint's serving certificate),
    given to each pod as a file; None: the system's CAs."""
    master_port: int = Field(default=DEFAULT_MASTER_PORT, ge=1, le=65535)
    """Rendezvous port on replica 0 (PET_MASTER_PORT / MASTER_PORT)."""
    metrics_port: int | None = Field(default=contract.DEFAULT_METRICS_PORT, ge=1, le=65535)
    """Port of the trainer's Prometheus endpoint; None: not served."""
    termination_grace_period_seconds: int = Field(default=DEFAULT_TERMINATION_GRACE_SECONDS, ge=0)
    """How long a deleted replica has to checkpoint and exit before SIGKILL."""
    lost_node_force_delete_after_seconds: int | None = Field(default=DEFAULT_LOST_NODE_FORCE_DELETE_AFTER_S, ge=0)
    """Force-delete a terminating replica pod once its node's Ready condition has been Unknown this long
    (`status/node_loss.py`); None: never (the pod waits for its node, or a person)."""
    run_as_user: int = Field(default=NON_ROOT_ID, ge=1)
    run_as_group: int = Field(default=NON_ROOT_ID, ge=1)
    fs_group: int | None = Field(default=NON_ROOT_ID, ge=0)
    """Group owning mounted volumes, so the non-root trainer can write checkpoints."""
    read_only_root_filesystem: bool = True
    """The trainer writes only to /tmp, /dev/shm and the checkpoint volume, all mounted writable."""
    shm_size_limit: str | None = None
    """Size limit of the memory-backed /dev/shm (DataLoader workers, NCCL). None: no limit beyond the pod's memory."""
    mount_shm: bool = True
    """Mount a memory-backed emptyDir at /dev/shm (the container runtime's 64 MiB default breaks DataLoaders)."""
    gpu_toleration: bool = True
    """Give GPU pods the `nvidia.com/gpu:NoSchedule` toleration GPU node pools are usually tainted with."""
    pricing: GpuPricing | None = None
    """The price of GPU time, for estimated costs; None: no cost is estimated or shown."""
    namespace_mode: NamespaceMode = NamespaceMode.ALL
    namespaces: tuple[str, ...] = ()
    """Watched namespaces with namespace_mode `list`."""

    @model_validator(mode="after")
    def _namespaces_only_for_list(self) -> Self:
        if (self.namespace_mode == NamespaceMode.LIST) != bool(self.namespaces):
            raise ValueError("namespaces must be given exactly when namespace_mode is 'list'")
        return self
