"""What the pod's environment says about the job this process belongs to.

The variable names are the operator's contract (`trainsmart_trainer/contract.py`), repeated here as plain
strings because this package must run on any Python >= 3.8 with nothing but the standard library; a unit
test checks that every name below equals the contract's, so they cannot drift apart.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import Any, Mapping

REPORT_URL = "TRAINSMART_REPORT_URL"
REPORT_TOKEN = "TRAINSMART_REPORT_TOKEN"  # noqa: S105 - the variable's name, not a secret
REPORT_CA_FILE = "TRAINSMART_REPORT_CA_FILE"
JOB_NAME = "TRAINSMART_JOB_NAME"
JOB_NAMESPACE = "TRAINSMART_NAMESPACE"
CHECKPOINT_DIR = "TRAINSMART_CHECKPOINT_DIR"
SIMULATED_GPUS = "TRAINSMART_SIMULATED_GPUS"
TERMINATION_LOG = "TRAINSMART_TERMINATION_LOG"
PARAMS_FILE = "TRAINSMART_PARAMS_FILE"
PARAM_PREFIX = "TRAINSMART_PARAM_"
RANK = "RANK"
PET_NODE_RANK = "PET_NODE_RANK"
WORLD_SIZE = "WORLD_SIZE"
ATTEMPT = "TRAINSMART_ATTEMPT"
OBJECTIVE_METRIC = "TRAINSMART_OBJECTIVE_METRIC"
OBJECTIVE_GOAL = "TRAINSMART_OBJECTIVE_GOAL"
NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"

SIMULATED_GPUS_ON = "1"
DEFAULT_TERMINATION_LOG = "/dev/termination-log"
# NVIDIA_VISIBLE_DEVICES values that request no particular GPU (CUDA base images set `all` everywhere).
_NO_GPU_REQUEST = frozenset({"", "all", "void", "none"})


def _int(value: str | None, default: int, minimum: int) -> int:
    try:
        number = int(value) if value is not None else default
    except ValueError:
        return default
    return max(number, minimum)


def _attempt(value: str | None) -> int | None:
    """The attempt the operator set, or None when unset or not a count (the report then goes without it:
    an invalid one would get the whole report refused)."""
    try:
        number = int(value) if value else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


@dataclass(frozen=True)
class JobEnvironment:
    """The job identity and report settings of this process; `report_url` None means "not in a job"."""

    report_url: str | None
    report_token: str | None
    report_ca_file: str | None
    namespace: str
    name: str
    rank: int
    world_size: int
    checkpoint_dir: str | None
    device: dict[str, Any]
    attempt: int | None = None
    """Which run of the job this is (the operator's attempt label); None outside a job or from an older one."""

    @property
    def in_job(self) -> bool:
        return self.report_url is not None

    @property
    def reports(self) -> bool:
        """Only global rank 0 reports, as in the packaged trainer: the operator keeps one curve per job."""
        return self.in_job and self.rank == 0

    def identity(self) -> dict[str, Any]:
        identity: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "rank": self.rank,
            "worldSize": self.world_size,
        }
        if self.attempt is not None:
            identity["attempt"] = self.attempt
        return identity


def device_info(env: Mapping[str, str]) -> dict[str, Any]:
    """The report's device, told without torch: GPUs are what the device plugin handed this container.

    The operator only displays it, so an honest approximation from the environment beats importing a
    framework just to ask CUDA.
    """
    simulated = env.get(SIMULATED_GPUS) == SIMULATED_GPUS_ON
    visible = env.get(NVIDIA_VISIBLE_DEVICES, "").strip()
    gpus = 0 if visible.lower() in _NO_GPU_REQUEST else len([item for item in visible.split(",") if item.strip()])
    info: dict[str, Any] = {"type": "cuda" if gpus and not simulated else "cpu", "gpus": gpus}
    if simulated:
        info["simulatedGpus"] = True
    if info["type"] == "cpu":
        info["name"] = platform.machine()
    return info


def read_job_environment(env: Mapping[str, str] | None = None) -> JobEnvironment:
    """The job environment from `env` (default: this process's).

    The rank is RANK when a launcher or the operator set it; a pod running several processes gets no RANK,
    and there the pod's index (PET_NODE_RANK) decides, so a wrapper around torchrun reports from pod 0 only.
    A report URL that is not http(s) is treated as absent rather than failing a training run over it.
    """
    env = os.environ if env is None else env
    url = env.get(REPORT_URL) or None
    if url is not None and not url.startswith(("http://", "https://")):
        url = None
    rank_text = env.get(RANK) or env.get(PET_NODE_RANK)
    return JobEnvironment(
        report_url=url,
        report_token=env.get(REPORT_TOKEN) or None,
        report_ca_file=env.get(REPORT_CA_FILE) or None,
        namespace=env.get(JOB_NAMESPACE, ""),
        name=env.get(JOB_NAME, ""),
        rank=_int(rank_text, 0, 0),
        world_size=_int(env.get(WORLD_SIZE), 1, 1),
        checkpoint_dir=env.get(CHECKPOINT_DIR) or None,
        device=device_info(env),
        attempt=_attempt(env.get(ATTEMPT)),
    )
