"""The TrainingJob spec: N replicas x G GPUs of a trainer, with checkpoints, scheduling and a run policy.

Rules the CRD schema cannot express (exactly one checkpoint source, mounts that name real volumes, GPUs
requested in one place only) are model validators, so the webhook and the operator enforce the same rules;
every message names the field and says how to fix it.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import ConfigDict, Field, model_validator

from trainsmart.api.cel import rule, validations
from trainsmart.api.common import (
    ABSOLUTE_PATH_PATTERN,
    GPU_RESOURCE,
    RESERVED_VOLUME_PREFIX,
    ApiModel,
    DnsName,
    FreeFormObject,
    Quantity,
    find_duplicates,
    list_map,
    parse_quantity,
)
from trainsmart.api.podtemplate import (
    MAX_LABEL_VALUE_CHARS,
    MAX_PATH_CHARS,
    NamedObject,
    PodTemplateOverrides,
    VolumeMount,
)
from trainsmart.api.tracking_spec import TrackingSpec
from trainsmart_trainer.config import TrainerConfig

MAX_REPLICAS: Final = 512
MAX_GPUS_PER_REPLICA: Final = 16
DEFAULT_CHECKPOINT_MOUNT_PATH: Final = "/checkpoints"
ENV_NAME_PATTERN: Final = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# Linux refuses to exec a program with any argument or environment string over MAX_ARG_STRLEN (32 pages:
# 128 KiB, counting the terminating NUL): the pod fails with "Argument list too long". A character is
# at least one byte, so longer values can never start; the bounds also keep the CEL cost estimates low.
MAX_ARG_STRLEN: Final = 128 * 1024
MAX_ARG_CHARS: Final = MAX_ARG_STRLEN - 1
MAX_ENV_VALUE_CHARS: Final = MAX_ARG_STRLEN - len("N=") - 1
# A container image reference: a name of at most 255 characters, a tag of at most 128 and a digest
# (sha512: 135); the runtime refuses longer ones (InvalidImageName).
MAX_IMAGE_CHARS: Final = 1024
MAX_SCHEDULER_NAME_CHARS: Final = 253


class EnvVar(ApiModel):
    """An environment variable for the trainer container."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule("!(has(self.value) && has(self.valueFrom))", "set value or valueFrom, not both")
        )
    )

    name: str = Field(pattern=ENV_NAME_PATTERN, min_length=1, max_length=256, description="Variable name.")
    value: str | None = Field(
        default=None,
        max_length=MAX_ENV_VALUE_CHARS,
        description=f"Literal value. Leave unset when valueFrom is set. At most {MAX_ENV_VALUE_CHARS} characters: "
        "Linux starts no process with an environment string (NAME=value) over 128 KiB.",
    )
    value_from: FreeFormObject | None = Field(
        default=None,
        description="A Kubernetes EnvVarSource (secretKeyRef, configMapKeyRef, fieldRef, resourceFieldRef).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set value or valueFrom, not both")
        return self


class ImagePullPolicy(StrEnum):
    """When the kubelet pulls the trainer image."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


class MetricsFormat(StrEnum):
    """How the metric lines in a custom command's output are written."""

    JSON = "json"
    KEY_VALUE = "keyValue"
    REGEX = "regex"


class TrainerMetrics(ApiModel):
    """Where a custom command's metrics appear, so the operator can read them with no change to the code.

    The operator then runs the command under its metrics wrapper (`python3 <client>.pyz wrap ... --
    <command> <args>`), which passes the output through unchanged, forwards signals, keeps the exit code,
    and reports what it parses from rank 0 exactly as the packaged trainer would. The image needs a
    `python3` >= 3.8 on PATH for that (docs/your-code.md).
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "has(self.format) || has(self.tensorboardDir)",
                "set format (metric lines in the output), tensorboardDir (event files), or both",
            ),
            rule(
                "!has(self.pattern) || (has(self.format) && self.format == 'regex')",
                "pattern applies only with format: regex; remove it or set format: regex",
            ),
            rule(
                "!has(self.format) || self.format != 'regex' || has(self.pattern)",
                "format regex needs pattern: a regular expression with named groups",
            ),
        )
    )

    format: MetricsFormat | None = Field(
        default=None,
        description="How metric lines in the command's output look: json (one object per line, e.g. "
        '{"epoch": 3, "val_accuracy": 0.91}), keyValue (key=value pairs, e.g. epoch=3 loss=0.21) or regex '
        "(the named groups of pattern). Other lines pass through untouched. Unset: output is not parsed "
        "(set tensorboardDir instead).",
    )
    pattern: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="With format regex only (and required there): a Python regular expression whose named "
        r"groups are the metrics, e.g. 'epoch (?P<epoch>\d+) .*val_acc=(?P<val_accuracy>[0-9.]+)'.",
    )
    epoch_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="The key (json, keyValue), named group (regex) or TensorBoard step that counts epochs. "
        "Unset: epoch.",
    )
    tensorboard_dir: str | None = Field(
        default=None,
        min_length=1,
        max_length=4096,
        description="A directory the command writes TensorBoard event files to; its scalars are reported by "
        "tag. Relative paths are resolved from the container's working directory.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.format is None and self.tensorboard_dir is None:
            raise ValueError("set format (metric lines in the output), tensorboardDir (event files), or both")
        if self.format != MetricsFormat.REGEX:
            if self.pattern is not None:
                raise ValueError("pattern applies only with format: regex; remove it or set format: regex")
            return self
        if self.pattern is None:
            raise ValueError(r"format regex needs pattern: a regular expression with named groups, e.g. (?P<loss>\S+)")
        try:
            groups = re.compile(self.pattern).groupindex
        except re.error as error:
            raise ValueError(f"pattern does not compile: {error}") from None
        if not groups:
            raise ValueError(r"pattern has no named groups; name each metric, e.g. (?P<val_loss>[0-9.eE+-]+)")
        if self.epoch_key is not None and self.epoch_key not in groups:
            raise ValueError(f"epochKey {self.epoch_key!r} is not a named group of pattern ({sorted(groups)})")
        return self


class TrainerSpec(ApiModel):
    """What runs in each replica: the packaged trainer (configured by `config`) or your own command."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "!has(self.metrics) || has(self.command)",
                "metrics reads the output of your own command; the packaged trainer (no command) reports its "
                "metrics itself: remove metrics or set command",
            )
        )
    )

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IMAGE_CHARS,
        description="Container image. Unset: the packaged trainer image from the operator's configuration. At "
        f"most {MAX_IMAGE_CHARS} characters (a reference is a name of up to 255, a tag and a digest).",
    )
    image_pull_policy: ImagePullPolicy | None = Field(
        default=None, description="Always, IfNotPresent or Never. Unset: the Kubernetes default for the tag."
    )
    command: list[Annotated[str, Field(max_length=MAX_ARG_CHARS)]] | None = Field(
        default=None,
        max_length=64,
        description="Entrypoint override. Unset: the packaged trainer, which starts one worker per process itself. "
        f"Each item at most {MAX_ARG_CHARS} characters: Linux starts no process with a longer argument.",
    )
    args: list[Annotated[str, Field(max_length=MAX_ARG_CHARS)]] = Field(
        default_factory=list,
        max_length=256,
        description=f"Arguments to the command, each at most {MAX_ARG_CHARS} characters: Linux starts no process "
        "with a longer argument.",
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=256,
        description="Extra environment variables; names are unique.",
        json_schema_extra=list_map("name"),
    )
    config: TrainerConfig | None = Field(
        default=None,
        description="Configuration of the packaged trainer (model, dataset, hyperparameters). Unset: "
        "its defaults. Passed to the trainer whatever the command, for custom trainers to read.",
    )
    metrics: TrainerMetrics | None = Field(
        default=None,
        description="Where your command's metrics appear (output lines or TensorBoard files), so status, "
        "sweeps and Prometheus get them with no change to your code. Only with command: the packaged "
        "trainer reports by itself. Unset: no wrapper; report with the trainsmart_client library instead.",
    )

    @model_validator(mode="after")
    def _unique_env(self) -> Self:
        duplicates = find_duplicates(var.name for var in self.env)
        if duplicates:
            raise ValueError(f"env names {duplicates} appear more than once; keep one of each")
        if self.metrics is not None and self.command is None:
            # Refused rather than ignored: wrapping the packaged trainer would report every epoch twice,
            # and a silently ignored block would leave the user wondering where their parser went.
            raise ValueError(
                "metrics reads the output of your own command; the packaged trainer (no command) reports its "
                "metrics itself: remove metrics or set command"
            )
        return self

    def effective_config(self) -> TrainerConfig:
        """The config the trainer runs with: the given one, or the packaged defaults."""
        return self.config if self.config is not None else TrainerConfig()


class ResourceRequirements(ApiModel):
    """CPU, memory and other resources of each replica's trainer container (GPUs: gpusPerReplica)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                f"!(has(self.requests) && '{GPU_RESOURCE}' in self.requests) && "
                f"!(has(self.limits) && '{GPU_RESOURCE}' in self.limits)",
                f"do not put {GPU_RESOURCE} in resources; set spec.gpusPerReplica instead",
            )
        )
    )

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        description="Resources reserved for scheduling, e.g. cpu: '4', memory: 16Gi.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict, description="Hard caps, e.g. memory: 32Gi. Each must be >= its request."
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if GPU_RESOURCE in self.requests or GPU_RESOURCE in self.limits:
            raise ValueError(f"do not put {GPU_RESOURCE} in resources; set spec.gpusPerReplica instead")
        for name, limit in self.limits.items():
            request = self.requests.get(name)
            if request is not None and parse_quantity(request) > parse_quantity(limit):
                raise ValueError(f"requests.{name} ({request}) exceeds limits.{name} ({limit}); raise the limit")
        return self


class CheckpointSpec(ApiModel):
    """Where checkpoints live, so restarts and promoted sweep trials resume instead of starting over.

    Exactly one source: `claimName` (a PVC you created) or `size` (the operator creates a PVC per job,
    optionally of `storageClassName`, deleted with the job).
    """

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "has(self.claimName) != has(self.size)",
                "set exactly one of claimName (an existing PVC) or size (the operator creates a PVC)",
            ),
            rule(
                "!has(self.storageClassName) || has(self.size)",
                "storageClassName applies only with size; remove it or set size instead of claimName",
            ),
        )
    )

    claim_name: DnsName | None = Field(default=None, description="An existing PersistentVolumeClaim to use.")
    size: Quantity | None = Field(
        default=None, description="Size of a PVC the operator creates for this job, e.g. 20Gi."
    )
    storage_class_name: DnsName | None = Field(
        default=None,
        description="Storage class of the operator-created PVC (with size only). Unset: the cluster default.",
    )
    mount_path: str = Field(
        default=DEFAULT_CHECKPOINT_MOUNT_PATH,
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=MAX_PATH_CHARS,
        description="Absolute path where the volume is mounted; given to the trainer in its environment. At "
        f"most {MAX_PATH_CHARS} characters (Linux's PATH_MAX).",
    )
    interval_epochs: int = Field(default=1, ge=1, le=10_000, description="Save a checkpoint every N epochs.")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.claim_name is None) == (self.size is None):
            raise ValueError("set exactly one of claimName (an existing PVC) or size (the operator creates a PVC)")
        if self.storage_class_name is not None and self.size is None:
            raise ValueError("storageClassName applies only with size; remove it or set size instead of claimName")
        if self.size is not None and parse_quantity(self.size) <= 0:
            raise ValueError(f"size must be > 0, got {self.size!r}")
        return self


class CleanPodPolicy(StrEnum):
    """Which pods to delete when a job finishes."""

    ALL = "All"
    RUNNING = "Running"
    NONE = "None"


ExitCode = Annotated[int, Field(ge=1, le=255)]


class RunPolicy(ApiModel):
    """Restarts, deadlines and cleanup. Suspension is `spec.suspend` (top level, where Kueue looks)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "!has(self.retryableExitCodes) || !has(self.permanentExitCodes) || "
                "!self.retryableExitCodes.exists(code, code in self.permanentExitCodes)",
                "an exit code is both retryable and permanent; keep each in one of retryableExitCodes or "
                "permanentExitCodes",
            )
        )
    )

    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="Restarts of the whole job (all ranks) allowed after retryable failures.",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Fail the job once it has run this long. Unset: no deadline."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the job this long after it finished. Unset: keep it."
    )
    clean_pod_policy: CleanPodPolicy = Field(
        default=CleanPodPolicy.RUNNING,
        description="Pods deleted at the end: All, Running (still-running ones; finished pods keep their "
        "logs), or None.",
    )
    retryable_exit_codes: list[ExitCode] = Field(
        default_factory=list,
        max_length=64,
        description="Exit codes that restart all ranks (counted against backoffLimit), on top of the "
        "operator's defaults.",
    )
    permanent_exit_codes: list[ExitCode] = Field(
        default_factory=list,
        max_length=64,
        description="Exit codes that fail the job at once, without a restart, on top of the operator's defaults.",
    )

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        both = sorted(set(self.retryable_exit_codes) & set(self.permanent_exit_codes))
        if both:
            raise ValueError(
                f"exit codes {both} are both retryable and permanent; keep each in one of "
                "retryableExitCodes or permanentExitCodes"
            )
        return self


class TrainingJobSpec(ApiModel):
    """The desired training run. Defaults give one CPU replica of the packaged trainer on its demo data."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            rule(
                "!has(self.processesPerReplica) || !has(self.gpusPerReplica) || self.gpusPerReplica == 0 || "
                "self.processesPerReplica <= self.gpusPerReplica",
                "processesPerReplica exceeds gpusPerReplica; DDP needs one GPU per process: lower "
                "processesPerReplica or leave it unset",
            ),
            rule(
                f"!has(self.volumes) || self.volumes.all(v, !v.name.startsWith('{RESERVED_VOLUME_PREFIX}'))",
                f"volumes use the reserved prefix {RESERVED_VOLUME_PREFIX}; rename them",
            ),
            rule(
                "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                "self.volumes.exists(v, v.name == m.name))",
                "a volumeMount names a volume that is not in volumes; add it there",
            ),
            rule(
                "!has(self.checkpoint) || !has(self.volumeMounts) || "
                "self.volumeMounts.all(m, m.mountPath != self.checkpoint.mountPath)",
                "a volumeMount uses checkpoint.mountPath; use another path",
            ),
            rule(
                "!has(self.checkpoint) || !has(self.trainer) || !has(self.trainer.config) || "
                "!has(self.trainer.config.checkpointEveryEpochs) || "
                "self.trainer.config.checkpointEveryEpochs == self.checkpoint.intervalEpochs",
                "trainer.config.checkpointEveryEpochs disagrees with checkpoint.intervalEpochs; set only one",
            ),
        )
    )

    replicas: int = Field(default=1, ge=1, le=MAX_REPLICAS, description="Pods (nodes) that train together.")
    gpus_per_replica: int = Field(
        default=0, ge=0, le=MAX_GPUS_PER_REPLICA, description="nvidia.com/gpu requested by each replica."
    )
    processes_per_replica: int | None = Field(
        default=None,
        ge=1,
        le=128,
        description="Training processes per replica (torchrun nproc-per-node). Unset: gpusPerReplica, or "
        "1 without GPUs. With GPUs it may not exceed gpusPerReplica (one process per GPU).",
    )
    resources: ResourceRequirements = Field(
        default_factory=ResourceRequirements, description="CPU and memory of each replica."
    )
    trainer: TrainerSpec = Field(default_factory=TrainerSpec, description="What each replica runs.")
    checkpoint: CheckpointSpec | None = Field(
        default=None, description="Checkpoint volume. Unset: no checkpoints; a restart starts from epoch 0."
    )
    volumes: list[NamedObject] = Field(
        default_factory=list,
        max_length=64,
        description="Kubernetes Volumes for data, mounted with volumeMounts. Names under "
        f"{RESERVED_VOLUME_PREFIX} are reserved.",
        json_schema_extra=list_map("name"),
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=64,
        description="Kubernetes VolumeMounts of the trainer container; each names one of volumes.",
        json_schema_extra=list_map("mountPath"),
    )
    node_selector: dict[str, Annotated[str, Field(max_length=MAX_LABEL_VALUE_CHARS)]] = Field(
        default_factory=dict,
        description="Node labels the pods require, e.g. nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3. Values "
        f"are label values: at most {MAX_LABEL_VALUE_CHARS} characters.",
    )
    tolerations: list[FreeFormObject] = Field(
        default_factory=list,
        max_length=64,
        description="Kubernetes Tolerations, added to the nvidia.com/gpu toleration GPU pods get anyway.",
    )
    affinity: FreeFormObject | None = Field(default=None, description="A Kubernetes Affinity for the pods.")
    priority_class_name: DnsName | None = Field(default=None, description="PriorityClass of the pods.")
    scheduler_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_SCHEDULER_NAME_CHARS,
        description="Scheduler for the pods. Unset: the default scheduler. At most "
        f"{MAX_SCHEDULER_NAME_CHARS} characters (Kubernetes requires a DNS subdomain).",
    )
    queue_name: DnsName | None = Field(
        default=None, description="Kueue LocalQueue to admit the job through (sets the queue-name label)."
    )
    run_policy: RunPolicy = Field(default_factory=RunPolicy, description="Restarts, deadlines and cleanup.")
    suspend: bool = Field(
        default=False,
        description="true stops all pods (checkpointing first when possible) and holds the job; false runs "
        "or resumes it. A job created suspended gets its Service, Secret and PVC when it first runs. Kueue sets "
        "this to admit queued jobs.",
    )
    template: PodTemplateOverrides = Field(
        default_factory=PodTemplateOverrides, description="Additions to every replica pod."
    )
    tracking: TrackingSpec | None = Field(
        default=None,
        description="Experiment tracking (MLflow), logged by the operator from the reports it receives. Unset: "
        "the operator's default tracking URI, if it has one. A sweep's trials inherit the sweep's tracking.",
    )

    @property
    def effective_processes_per_replica(self) -> int:
        """torchrun's nproc-per-node: explicit, else one per GPU, else one."""
        return self.processes_per_replica or self.gpus_per_replica or 1

    @property
    def world_size(self) -> int:
        """Total training processes across all replicas."""
        return self.replicas * self.effective_processes_per_replica

    @model_validator(mode="after")
    def _check(self) -> Self:
        gpus, procs = self.gpus_per_replica, self.processes_per_replica
        if gpus and procs and procs > gpus:
            raise ValueError(
                f"processesPerReplica ({procs}) exceeds gpusPerReplica ({gpus}); DDP needs one GPU per "
                "process: lower processesPerReplica or leave it unset"
            )
        self._check_volumes()
        config = self.trainer.config
        every = config.checkpoint_every_epochs if config else None
        if every and self.checkpoint and every != self.checkpoint.interval_epochs:
            raise ValueError(
                f"trainer.config.checkpointEveryEpochs ({every}) disagrees with checkpoint.intervalEpochs "
                f"({self.checkpoint.interval_epochs}); set only one"
            )
        return self

    def _check_volumes(self) -> None:
        names = [volume.name for volume in self.volumes]
        reserved = sorted(name for name in names if name.startswith(RESERVED_VOLUME_PREFIX))
        if reserved:
            raise ValueError(f"volumes {reserved} use the reserved prefix {RESERVED_VOLUME_PREFIX}; rename them")
        for what, duplicates in (
            ("volumes names", find_duplicates(names)),
            ("volumeMounts mountPaths", find_duplicates(mount.mount_path for mount in self.volume_mounts)),
        ):
            if duplicates:
                raise ValueError(f"{what} {duplicates} appear more than once; keep one of each")
        for index, mount in enumerate(self.volume_mounts):
            if mount.name not in names:
                raise ValueError(
                    f"volumeMounts[{index}] names volume {mount.name!r}, which is not in volumes; add it there"
                )
            if self.checkpoint and mount.mount_path.rstrip("/") == self.checkpoint.mount_path.rstrip("/"):
                raise ValueError(
                    f"volumeMounts[{index}].mountPath {mount.mount_path} is checkpoint.mountPath; use another path"
                )
