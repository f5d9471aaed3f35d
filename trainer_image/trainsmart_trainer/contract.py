"""The operator <-> trainer contract: environment variable names, exit codes and the report schema.

Both programs import this one module (the operator from here, with pydantic as its only dependency: no
torch), so a renamed variable or a new exit code cannot drift between the pod builder and the trainer. A
test on the operator side checks that the env it builds uses exactly these names.

Distributed layout, as the operator sets it for `replicas` pods x `processesPerReplica` processes:

* every pod gets the torchrun variables (`PET_*`) and the classic `MASTER_ADDR`/`MASTER_PORT`/`WORLD_SIZE`;
* the pod command is the packaged trainer itself (`python -m trainsmart_trainer` / `trainsmart-train`), not
  torchrun: with `PET_NPROC_PER_NODE` > 1 it starts one worker process per GPU, giving each the classic
  per-process variables (`RANK`, `LOCAL_RANK`, ...), forwards SIGTERM to them and exits with the most
  severe of their exit codes. torchrun would work too (the trainer detects it and runs as a plain worker),
  but torchrun turns every worker failure into exit code 1, which erases the retryable/permanent split
  below; that is why the packaged image does not use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import Final, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

# ---- torchrun's variables (what the operator sets on every pod) -------------------------------------------

PET_NNODES: Final = "PET_NNODES"
"""Number of pods (replicas) that train together. torchrun reads it as `--nnodes`."""
PET_NPROC_PER_NODE: Final = "PET_NPROC_PER_NODE"
"""Training processes per pod (one per GPU on GPU pods). > 1 makes the trainer start that many workers."""
PET_NODE_RANK: Final = "PET_NODE_RANK"
"""Index of this pod among the replicas, 0-based; pod 0 hosts global rank 0 (the master)."""
PET_MASTER_ADDR: Final = "PET_MASTER_ADDR"
"""DNS name or IP of pod 0 (through the job's headless Service), where the rendezvous store listens."""
PET_MASTER_PORT: Final = "PET_MASTER_PORT"
"""TCP port of the rendezvous store on pod 0."""

# ---- the classic torch.distributed variables (env:// initialisation) ----------------------------------------

MASTER_ADDR: Final = "MASTER_ADDR"
"""Same as PET_MASTER_ADDR; read by torch.distributed's env:// init in each worker process."""
MASTER_PORT: Final = "MASTER_PORT"
"""Same as PET_MASTER_PORT, for env:// init."""
WORLD_SIZE: Final = "WORLD_SIZE"
"""Total training processes in the job: replicas x processes per replica. 1 (or unset) = no DDP."""
RANK: Final = "RANK"
"""Global rank of one process, 0 .. WORLD_SIZE-1. The operator sets it only when a pod runs one process
(then it equals PET_NODE_RANK); with several processes per pod the launcher sets it per worker."""
LOCAL_RANK: Final = "LOCAL_RANK"
"""Index of a process inside its pod; selects its GPU (cuda:LOCAL_RANK). Set by the launcher, never by the
operator: its presence is how a process knows it is a worker and must not spawn workers itself."""
LOCAL_WORLD_SIZE: Final = "LOCAL_WORLD_SIZE"
"""Processes in this pod (= PET_NPROC_PER_NODE)."""
TORCHELASTIC_RUN_ID: Final = "TORCHELASTIC_RUN_ID"
"""Set by torchrun in its workers; the trainer then runs as a worker and never launches its own."""

# ---- trainsmart's own variables -----------------------------------------------------------------------------

CONFIG_JSON: Final = "TRAINSMART_CONFIG"
"""The TrainerConfig as inline JSON (camelCase), as the operator injects `spec.trainer.config`. When a
config file is also given, this JSON is merged over it key by key (nested objects merged, lists replaced)."""
CONFIG_PATH: Final = "TRAINSMART_CONFIG_PATH"
"""Path of a config file (YAML or JSON): a bare TrainerConfig, or a whole TrainingJob manifest whose
`spec.trainer.config` is used. `--config` on the command line takes precedence over it."""
CHECKPOINT_DIR: Final = "TRAINSMART_CHECKPOINT_DIR"
"""Directory (the mounted checkpoint volume) where rank 0 saves checkpoints and from which every rank
resumes. Unset: no checkpoints, and a restart starts from epoch 0."""
CHECKPOINT_INTERVAL_EPOCHS: Final = "TRAINSMART_CHECKPOINT_INTERVAL_EPOCHS"
"""Save every N epochs when the config's checkpointEveryEpochs is unset (spec.checkpoint.intervalEpochs).
Default 1. A checkpoint is also saved on SIGTERM and after the last epoch, whatever N is."""
CHECKPOINT_KEEP: Final = "TRAINSMART_CHECKPOINT_KEEP"
"""How many of the newest checkpoints to keep; older ones are deleted after each save. Default 3."""
REPORT_URL: Final = "TRAINSMART_REPORT_URL"
"""The operator's report endpoint (http or https) to which rank 0 POSTs `TrainerReport` JSON. Unset: no
reports (the result file and termination message still carry the outcome)."""
REPORT_TOKEN: Final = "TRAINSMART_REPORT_TOKEN"  # noqa: S105 - the variable's name, not a secret
"""Per-job bearer token (from the Secret the operator creates for the job), sent as
`Authorization: Bearer <token>`; the endpoint rejects reports without the job's own token."""
REPORT_CA_FILE: Final = "TRAINSMART_REPORT_CA_FILE"
"""PEM bundle to verify an https report endpoint with (e.g. the operator's serving CA). Unset: system CAs."""
METRICS_PORT: Final = "TRAINSMART_METRICS_PORT"
"""Port of the trainer's Prometheus `/metrics` (served by local rank 0 of each pod, for a PodMonitor).
Unset or empty: not served; 0: an ephemeral port, logged (tests)."""
RESULT_PATH: Final = "TRAINSMART_RESULT_PATH"
"""Where rank 0 writes the final result as JSON (atomically). Unset: `result.json` in the checkpoint
directory when there is one, else not written."""
TERMINATION_LOG: Final = "TRAINSMART_TERMINATION_LOG"
"""Where the compact final result (or the failure reason) goes, for the pod's terminationMessagePath. Unset:
`/dev/termination-log` if that file exists and is writable (the kubelet creates it), else skipped. It is
the `FinalResult` as compact JSON within TERMINATION_MESSAGE_MAX_BYTES, written by rank 0 before the last
reports are flushed; the operator folds it into the job's status when the final report never arrived
(endpoint unreachable, operator restarting), so the outcome and final metrics do not depend on reports."""
JOB_NAME: Final = "TRAINSMART_JOB_NAME"
"""Name of the TrainingJob this pod belongs to; part of every report's identity."""
JOB_NAMESPACE: Final = "TRAINSMART_NAMESPACE"
"""Namespace of the TrainingJob; part of every report's identity."""
ATTEMPT: Final = "TRAINSMART_ATTEMPT"
"""Which run of the job this pod belongs to: 0, then one more for each whole-job restart or resume (the
job's `status.restarts` when the pod was created). Part of every report's identity, so the operator orders
reports by attempt first: a late report of an earlier run never moves a later run's progress."""
PARAM_ENV_PREFIX: Final = "TRAINSMART_PARAM_"
"""A sweep trial's pods get one variable per parameter, `TRAINSMART_PARAM_<NAME>` (see `param_env_name`),
holding the text a `${params.NAME}` placeholder becomes (strings as they are, everything else as JSON)."""
PARAMS_FILE: Final = "TRAINSMART_PARAMS_FILE"
"""Path of a JSON file with all of a sweep trial's parameters by name, values as JSON types."""
OBJECTIVE_METRIC: Final = "TRAINSMART_OBJECTIVE_METRIC"
"""A sweep trial's objective metric (the sweep's `objective.metric`): the metric the trainer keeps its best
checkpoint by, so the sweep's bestTrial points at the model its value came from. Unset (a plain job): the
run's own objective (the early-stopping metric, else val_loss)."""
OBJECTIVE_GOAL: Final = "TRAINSMART_OBJECTIVE_GOAL"
"""`maximize` or `minimize`, with OBJECTIVE_METRIC (the sweep's `objective.goal`)."""
SIMULATED_GPUS: Final = "TRAINSMART_SIMULATED_GPUS"
"""Set to "1" when the node agent of the local cluster only pretends to have GPUs: the trainer runs on the CPU
and says so in its first log line and first report instead of failing for lack of CUDA."""
NVIDIA_VISIBLE_DEVICES: Final = "NVIDIA_VISIBLE_DEVICES"
"""Set by the NVIDIA device plugin to the GPUs a container was given (indices or GPU-/MIG- UUIDs). Such a
value with no usable CUDA fails fast; `all`, `void`, `none` and empty are not a request (CUDA base images
set `all` for every container, GPU or not)."""


def param_env_name(name: str) -> str:
    """`TRAINSMART_PARAM_<NAME>` for parameter `name`: upper-cased, anything but ASCII letters and digits as `_`."""
    return PARAM_ENV_PREFIX + "".join(c if c.isascii() and c.isalnum() else "_" for c in name.upper())


SIMULATED_GPUS_ON: Final = "1"
DEFAULT_TERMINATION_LOG: Final = "/dev/termination-log"
DEFAULT_METRICS_PORT: Final = 9400
"""The port the operator should put in METRICS_PORT and the PodMonitor (clear of Prometheus' 9090)."""
DEFAULT_CHECKPOINT_KEEP: Final = 3
RESULT_FILE_NAME: Final = "result.json"
BEST_CHECKPOINT_DIR: Final = "best"
"""Directory inside the checkpoint directory that holds the best checkpoint by the objective (written
atomically, only when the objective improves); the newest checkpoints, for resuming, stay beside it."""
TERMINATION_MESSAGE_MAX_BYTES: Final = 4096
"""The kubelet truncates termination messages beyond 4 KiB; the trainer trims its own, keeping JSON valid."""


class ExitCode(IntEnum):
    """How a trainer process ends, so the operator can tell "restart all ranks" from "fail the job".

    The values stay clear of codes with other meanings: 1 (any uncaught Python exception: treated as
    retryable by the operator, like RETRYABLE_FAILURE), 2 (command-line usage errors from argparse and
    shells), 64-78 (BSD sysexits), 126-127 (shell: not executable / not found), 128+N (killed by signal N,
    e.g. 137 = SIGKILL, 143 = SIGTERM without a handler) and 255 (exit(-1)). 10-13 mean nothing elsewhere.
    """

    SUCCESS = 0
    """All epochs ran; the final result was written and reported."""
    RETRYABLE_FAILURE = 10
    """Something that a restart may fix: a lost peer, an I/O or network error, an unexpected exception. The
    operator restarts all ranks (DDP cannot rejoin a running group), counted against backoffLimit."""
    PERMANENT_FAILURE = 11
    """A restart cannot help: invalid config, unusable data, a non-finite loss, GPUs requested but CUDA
    unusable. The operator fails the job at once; the termination message says why."""
    EARLY_STOPPED = 12
    """The config's early stopping ended training before the last epoch; the result is final (a success
    for the job, reported separately so a sweep can tell it from a full run)."""
    TERMINATED = 13
    """SIGTERM (pod deletion, suspension, preemption) stopped training at a step boundary after rank 0 saved
    a checkpoint (when a checkpoint directory is configured). Retryable: a restart resumes from it."""


RETRYABLE_EXIT_CODES: Final = frozenset({ExitCode.RETRYABLE_FAILURE, ExitCode.TERMINATED})
PERMANENT_EXIT_CODES: Final = frozenset({ExitCode.PERMANENT_FAILURE})


class ObjectiveDirection(StrEnum):
    """Which way an objective metric improves: the one encoding the operator (a sweep's `goal`, the status
    history, early stopping) and the trainer (its best-so-far and early stopping) share. The values are the
    sweep API's spelling; the trainer config's `min`/`max` convert through `ObjectiveDirection.of`."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    @classmethod
    def of(cls, text: str) -> ObjectiveDirection:
        """The direction named `maximize`/`minimize` or, as the trainer config writes it, `max`/`min`."""
        aliases = {"max": cls.MAXIMIZE, "min": cls.MINIMIZE}
        return aliases.get(text) or cls(text)

    def is_better(self, candidate: float, incumbent: float) -> bool:
        """Whether `candidate` strictly beats `incumbent`."""
        return candidate > incumbent if self is ObjectiveDirection.MAXIMIZE else candidate < incumbent

    def best(self, values: Iterable[float]) -> float:
        """The best of `values` (at least one)."""
        return max(values) if self is ObjectiveDirection.MAXIMIZE else min(values)

    def as_loss(self, value: float) -> float:
        """`value` turned into something to minimise (hyperopt's loss, a badness to rank by)."""
        return -value if self is ObjectiveDirection.MAXIMIZE else value


# ---- the report schema (trainer -> operator) --------------------------------------------------------------


class _WireModel(BaseModel):
    """camelCase on the wire, unknown keys rejected, no NaN/inf (JSON cannot carry them)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", allow_inf_nan=False, frozen=True
    )


class ReportKind(StrEnum):
    """What a report carries."""

    PROGRESS = "progress"
    EPOCH = "epoch"
    DIAGNOSTIC = "diagnostic"
    FINAL = "final"


class Severity(StrEnum):
    """The operator's DiagnosticSeverity values, so diagnostics land in status unchanged."""

    INFO = "Info"
    WARNING = "Warning"
    ERROR = "Error"


class DiagnosticType(StrEnum):
    """Findings the trainer reports."""

    NON_FINITE_LOSS = "NonFiniteLoss"
    EXPLODING_GRADIENTS = "ExplodingGradients"
    VANISHING_GRADIENTS = "VanishingGradients"
    OVERFITTING = "Overfitting"
    UNDERFITTING = "Underfitting"
    CLASS_IMBALANCE = "ClassImbalance"
    MIXED_PRECISION_IGNORED = "MixedPrecisionIgnored"


class Diagnostic(_WireModel):
    """A finding about the run, with what to do about it and where in training it was seen."""

    type: DiagnosticType
    severity: Severity
    message: str = Field(max_length=1024)
    suggestion: str = Field(default="", max_length=1024)
    epoch: int | None = Field(default=None, ge=0, description="1-based epoch the finding is about.")
    step: int | None = Field(default=None, ge=0, description="Global optimizer step, when it is about one.")


class JobIdentity(_WireModel):
    """Which job (and which process of it) sent a report; the token must belong to the same job."""

    namespace: str = ""
    name: str = ""
    rank: int = Field(default=0, ge=0)
    world_size: int = Field(default=1, ge=1)
    attempt: int | None = Field(default=None, ge=0, description="The run of the job (`ATTEMPT`); None: not told.")


class DeviceInfo(_WireModel):
    """Where training runs."""

    type: str = Field(pattern=r"^(cpu|cuda)$", description="cpu or cuda.")
    simulated_gpus: bool = Field(default=False, description="GPUs are simulated: training runs on the CPU.")
    gpus: int = Field(default=0, ge=0, description="GPUs this process can see (simulated ones included).")
    name: str = Field(default="", description="GPU product name or the CPU architecture.")
    distributed_backend: str = Field(default="", description="gloo, nccl, or empty without DDP.")


class CheckpointInfo(_WireModel):
    """The checkpoint the report's state was saved to."""

    path: str
    epoch: int = Field(ge=0, description="Epochs completed when it was saved.")
    time: datetime


class BestCheckpointInfo(_WireModel):
    """The checkpoint of the epoch with the best objective value so far, kept apart from the newest ones."""

    path: str
    epoch: int = Field(ge=0, description="Epochs completed when it was saved (the epoch of its value).")
    metric: str = Field(min_length=1, max_length=128, description="The objective it is the best of.")
    value: float = Field(description="The objective's value at that epoch.")


class FinalStatus(StrEnum):
    """How training ended; mirrors ExitCode."""

    SUCCEEDED = "succeeded"
    EARLY_STOPPED = "early_stopped"
    TERMINATED = "terminated"
    FAILED = "failed"


FINAL_HISTORY_MAX_ITEMS: Final = 64
"""Objective values a final result carries (the newest epochs): enough for a sweep's early-stopping rungs,
small enough for the 4 KiB termination message."""


class EpochValue(_WireModel):
    """The objective's value after one epoch."""

    epoch: int = Field(ge=1, description="1-based epoch.")
    value: float


class FinalResult(_WireModel):
    """The outcome, also written to the result file and the termination message."""

    status: FinalStatus
    exit_code: int = Field(ge=0, le=255)
    reason: str = Field(default="", max_length=2048, description="Why it failed or stopped, in words.")
    epochs_completed: int = Field(default=0, ge=0)
    objective_metric: str = ""
    best_value: float | None = None
    best_epoch: int | None = Field(default=None, ge=1)
    metrics: dict[str, float] = Field(default_factory=dict, description="Last epoch's and the test metrics.")
    duration_seconds: float = Field(default=0.0, ge=0)
    objective_history: list[EpochValue] = Field(
        default_factory=list,
        max_length=FINAL_HISTORY_MAX_ITEMS,
        description="The objective after each of the last epochs this process ran, oldest first, so a "
        "status that missed those epoch reports can still fill its history.",
    )


class TrainerReport(_WireModel):
    """One JSON document POSTed by rank 0 to the report endpoint.

    `metrics` keys are `<split>_<name>` (train_loss, val_accuracy, test_macro_f1, ...) plus run-wide ones
    (samples_per_second, epoch_time_seconds, grad_norm, learning_rate); `epoch` counts completed epochs.
    """

    schema_version: int = Field(default=1, ge=1)
    job: JobIdentity
    kind: ReportKind
    time: datetime
    step: int = Field(default=0, ge=0, description="Optimizer steps done (all epochs).")
    epoch: int = Field(default=0, ge=0, description="Epochs completed.")
    total_epochs: int = Field(ge=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    samples_per_second: float | None = Field(default=None, ge=0)
    eta_seconds: float | None = Field(default=None, ge=0)
    objective_metric: str = Field(default="", description="The metric early stopping / sweeps watch.")
    diagnostics: list[Diagnostic] = Field(default_factory=list, max_length=64)
    checkpoint: CheckpointInfo | None = None
    best_checkpoint: BestCheckpointInfo | None = Field(
        default=None, description="The best checkpoint by the objective so far (unchanged until it improves)."
    )
    final: FinalResult | None = None
    device: DeviceInfo

    @model_validator(mode="after")
    def _final_only_when_final(self) -> Self:
        if (self.kind == ReportKind.FINAL) != (self.final is not None):
            raise ValueError("final is required for kind final and forbidden otherwise")
        return self
