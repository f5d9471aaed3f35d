"""Starting one worker per GPU in a multi-process pod, without torchrun.

The operator sets torchrun's `PET_*` variables on every pod and runs the trainer itself as the command.
When a pod should run several processes (`PET_NPROC_PER_NODE` > 1) and this process is not already a worker
(no `LOCAL_RANK`, not under torchrun), it becomes a small supervisor: it starts the workers with the classic
per-process variables (static rendezvous at `PET_MASTER_ADDR:PET_MASTER_PORT`: pods have fixed ranks and a
headless Service, nothing elastic is needed), forwards SIGTERM/SIGINT to them, stops the rest when one fails
(DDP cannot continue without it) and exits with the most severe worker exit code, so the operator's
retryable/permanent classification still works. torchrun would collapse every failure to exit code 1.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import FrameType

from trainsmart_trainer import contract
from trainsmart_trainer.contract import ExitCode

log = logging.getLogger(__name__)

# After one worker fails, the others get this long to notice (their collectives fail) and exit on their own.
FAILURE_GRACE_S = 10.0
_DEFAULT_MASTER_PORT = 29500
# Every worker stopping one of these ways is an orderly end; anything else is a failure the others must see.
_ORDERLY_EXITS = frozenset({ExitCode.SUCCESS, ExitCode.EARLY_STOPPED, ExitCode.TERMINATED})


@dataclass(frozen=True)
class LaunchPlan:
    """What this process should do: be the (only) worker, or spawn `nproc` workers with these envs."""

    worker_envs: tuple[dict[str, str], ...] = ()
    in_process_env: dict[str, str] | None = None  # classic variables to apply when running in-process

    @property
    def spawn(self) -> bool:
        return len(self.worker_envs) > 0


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None


def is_worker(env: Mapping[str, str]) -> bool:
    """A process started by a launcher (ours or torchrun) trains; it never launches."""
    return contract.LOCAL_RANK in env or contract.TORCHELASTIC_RUN_ID in env


def plan_launch(env: Mapping[str, str], nproc_override: int | None = None, free_port: int | None = None) -> LaunchPlan:
    """Decide from the environment (and `--nproc-per-node`) how many local workers to run.

    Without PET_* and without an override, nothing changes: a single process, or a worker whose classic
    variables were set by someone else. `free_port` is the rendezvous port for a standalone multi-process run
    (no master given), picked by the caller.
    """
    if is_worker(env):
        return LaunchPlan()
    if nproc_override is None and contract.PET_NPROC_PER_NODE not in env:
        return LaunchPlan()
    nproc = nproc_override if nproc_override is not None else _int(env, contract.PET_NPROC_PER_NODE, 1)
    nnodes = _int(env, contract.PET_NNODES, 1)
    node_rank = _int(env, contract.PET_NODE_RANK, 0)
    if nproc < 1 or nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ValueError(
            f"inconsistent launch variables: nproc_per_node={nproc}, {contract.PET_NNODES}={nnodes}, "
            f"{contract.PET_NODE_RANK}={node_rank}"
        )
    master_addr = env.get(contract.PET_MASTER_ADDR) or env.get(contract.MASTER_ADDR) or "127.0.0.1"
    port_text = env.get(contract.PET_MASTER_PORT) or env.get(contract.MASTER_PORT)
    master_port = int(port_text) if port_text else (free_port or _DEFAULT_MASTER_PORT)
    world = nnodes * nproc

    def worker_env(local_rank: int) -> dict[str, str]:
        return {
            contract.RANK: str(node_rank * nproc + local_rank),
            contract.WORLD_SIZE: str(world),
            contract.LOCAL_RANK: str(local_rank),
            contract.LOCAL_WORLD_SIZE: str(nproc),
            contract.MASTER_ADDR: master_addr,
            contract.MASTER_PORT: str(master_port),
        }

    if nproc == 1:
        return LaunchPlan(in_process_env=worker_env(0))
    return LaunchPlan(worker_envs=tuple(worker_env(i) for i in range(nproc)))


def free_local_port() -> int:
    """A port for a standalone run's rendezvous; the tiny race until the workers bind it is acceptable."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def combine_exit_codes(codes: Sequence[int]) -> int:
    """The pod's exit code from its workers': permanent > retryable (incl. crashes, signals) > terminated >
    early stopped > success. Any permanent failure makes the whole job permanent; a crash anywhere is
    worth a restart; all workers stop together on SIGTERM or early stopping."""
    if any(code == ExitCode.PERMANENT_FAILURE for code in codes):
        return ExitCode.PERMANENT_FAILURE
    if any(code not in _ORDERLY_EXITS for code in codes):
        return ExitCode.RETRYABLE_FAILURE
    for code in (ExitCode.TERMINATED, ExitCode.EARLY_STOPPED):
        if code in codes:
            return code
    return ExitCode.SUCCESS


def run_workers(plan: LaunchPlan, argv: Sequence[str]) -> int:
    """Start the planned workers (`python -m trainsmart_trainer argv`), supervise them, combine exit codes."""
    workers: list[subprocess.Popen[bytes]] = []
    for worker_env in plan.worker_envs:
        env = {**os.environ, **worker_env}
        workers.append(subprocess.Popen([sys.executable, "-m", "trainsmart_trainer", *argv], env=env))
    log.info("started %d workers: pids %s", len(workers), [worker.pid for worker in workers])

    def forward(signum: int, _frame: FrameType | None) -> None:
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _supervise(workers)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _supervise(workers: list[subprocess.Popen[bytes]]) -> int:
    failed_at: float | None = None
    while any(worker.poll() is None for worker in workers):
        codes = [worker.returncode for worker in workers if worker.returncode is not None]
        failures = [code for code in codes if code not in _ORDERLY_EXITS]
        if failures and failed_at is None:
            failed_at = time.monotonic()
            log.warning("a worker exited with %s; giving the others %.0f s to stop", failures[0], FAILURE_GRACE_S)
        if failed_at is not None and time.monotonic() - failed_at > FAILURE_GRACE_S:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
        time.sleep(0.1)
    codes = [worker.returncode for worker in workers]
    # A negative return code is "killed by signal N"; report it the shell's way (128 + N) before combining.
    codes = [128 - code if code < 0 else code for code in codes]
    log.info("workers exited with %s", codes)
    return combine_exit_codes(codes)
