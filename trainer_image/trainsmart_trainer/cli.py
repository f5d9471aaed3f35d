"""`trainsmart-train` / `python -m trainsmart_trainer`: the same entry point in a pod and on a laptop.

In a pod the operator passes everything through the environment (see `contract`); on a laptop
`trainsmart-train --config job.yaml` runs the config, or the whole TrainingJob manifest, that `kubectl apply`
would run, and `--nproc-per-node 2` tries DDP on the CPU. Order matters: the device is resolved and announced
before anything else is logged (the first log line says where training runs), then the config is loaded, so
every failure before training starts still ends with the right exit code and a termination message.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from trainsmart_trainer import __version__, contract, launch, results
from trainsmart_trainer.contract import ExitCode, FinalResult, FinalStatus
from trainsmart_trainer.settings import default_termination_log

if TYPE_CHECKING:
    from trainsmart_trainer.components import StopSignal
    from trainsmart_trainer.ddp import DistInfo
    from trainsmart_trainer.device import DevicePlan

log = logging.getLogger("trainsmart_trainer")


class _Parser(argparse.ArgumentParser):
    """Usage errors are permanent failures (a restart runs the same arguments), not argparse's exit 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(ExitCode.PERMANENT_FAILURE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trainsmart-train",
        description="Train a model with the packaged trainsmart trainer. Environment variables (see "
        "trainsmart_trainer.contract) configure it in a pod; the options below override them.",
    )
    parser.add_argument(
        "--config", help=f"YAML/JSON TrainerConfig or TrainingJob manifest (env {contract.CONFIG_PATH})"
    )
    parser.add_argument("--checkpoint-dir", help=f"checkpoint directory (env {contract.CHECKPOINT_DIR})")
    parser.add_argument("--result-file", help=f"where to write the final result JSON (env {contract.RESULT_PATH})")
    parser.add_argument(
        "--metrics-port", type=int, help=f"serve Prometheus /metrics here (env {contract.METRICS_PORT})"
    )
    parser.add_argument("--termination-log", help=f"termination message file (env {contract.TERMINATION_LOG})")
    parser.add_argument(
        "--nproc-per-node", type=int, help=f"local worker processes (DDP); overrides {contract.PET_NPROC_PER_NODE}"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--print-report-schema", action="store_true", help="print the report JSON schema and exit")
    parser.add_argument("--version", action="version", version=f"trainsmart-train {__version__}")
    return parser


def _setup_logging(level: str, rank: str | None) -> None:
    prefix = f"[rank {rank}] " if rank is not None else ""
    logging.basicConfig(
        level=level, format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s", stream=sys.stderr, force=True
    )


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """Worker argv: the supervisor's own arguments minus --nproc-per-node (workers must not spawn again)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--nproc-per-node":
            skip = True
            continue
        if arg.startswith("--nproc-per-node="):
            continue
        kept.append(arg)
    return kept


def _fail_early(code: ExitCode, lines: list[str], termination_log: str | None) -> int:
    """Report a failure that happened before a run existed: stderr and the termination message."""
    for line in lines:
        log.error("%s", line)
    final = FinalResult(status=FinalStatus.FAILED, exit_code=int(code), reason="; ".join(lines)[:2048])
    path = termination_log or os.environ.get(contract.TERMINATION_LOG)
    results.write_termination_message(
        Path(path) if path else default_termination_log(), results.termination_message(final)
    )
    return int(code)


def _install_stop_handlers(stop: StopSignal) -> dict[signal.Signals, Any]:
    """SIGTERM (pod deletion, suspension) and SIGINT (Ctrl-C) ask the loop to checkpoint and stop."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        stop.request(f"received {signal.Signals(signum).name}")

    return {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, launch workers or train in this process; returns the contract's exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.print_report_schema:
        print(json.dumps(contract.TrainerReport.model_json_schema(by_alias=True), indent=2))
        return int(ExitCode.SUCCESS)
    env = os.environ
    try:
        plan = launch.plan_launch(env, args.nproc_per_node, launch.free_local_port())
    except ValueError as error:
        _setup_logging(args.log_level, None)
        return _fail_early(ExitCode.PERMANENT_FAILURE, [str(error)], args.termination_log)
    if plan.in_process_env:
        env.update(plan.in_process_env)
    from trainsmart_trainer.ddp import DistConfigError, dist_info_from_env
    from trainsmart_trainer.device import DeviceError, probe_cuda, resolve_device

    worker_of_many = not plan.spawn and env.get(contract.WORLD_SIZE, "1").strip() not in ("", "1")
    _setup_logging(args.log_level, env.get(contract.RANK, "?") if worker_of_many else None)
    try:
        dist = dist_info_from_env(env)
        simulated = env.get(contract.SIMULATED_GPUS, "").strip() == contract.SIMULATED_GPUS_ON
        device = resolve_device(
            simulated=simulated,
            visible_devices=env.get(contract.NVIDIA_VISIBLE_DEVICES),
            cuda=probe_cuda(),
            local_rank=dist.local_rank,
        )
    except (DeviceError, DistConfigError) as error:
        return _fail_early(ExitCode.PERMANENT_FAILURE, [str(error)], args.termination_log)
    log.info("%s; trainsmart-train %s", device.announcement, __version__)
    if plan.spawn:
        log.info("starting %d worker processes", len(plan.worker_envs))
        return launch.run_workers(plan, _without_nproc(argv))
    return _train(args, dist, device)


def _train(args: argparse.Namespace, dist: DistInfo, device: DevicePlan) -> int:
    from trainsmart_trainer.components import StopSignal

    stop = StopSignal()
    previous = _install_stop_handlers(stop)  # before the slow parts: a SIGTERM now still ends cleanly
    try:
        return _train_with(args, dist, device, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _train_with(args: argparse.Namespace, dist: DistInfo, device: DevicePlan, stop: StopSignal) -> int:
    import torch

    from trainsmart_trainer.loop import TrainingRun
    from trainsmart_trainer.settings import ConfigError, load_config, runtime_settings

    env = os.environ
    try:
        config, sources = load_config(args.config, env)
        settings = runtime_settings(
            env,
            config=config,
            checkpoint_dir=args.checkpoint_dir,
            result_path=args.result_file,
            metrics_port=args.metrics_port,
            termination_log=args.termination_log,
        )
    except ConfigError as error:
        return _fail_early(
            ExitCode.PERMANENT_FAILURE, ["invalid trainer configuration:", *error.lines], args.termination_log
        )
    log.info("config from %s: %s", " + ".join(sources), config.model_dump_json(by_alias=True, exclude_defaults=True))
    if device.type == "cpu" and dist.local_world_size > 1 and "OMP_NUM_THREADS" not in env:
        # Several CPU workers in one pod would each start one thread per core and thrash.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.local_world_size))
    outcome = TrainingRun(config, settings, dist, device, stop=stop).execute()
    log.info("exit %d (%s)", outcome.exit_code, outcome.final.status.value)
    if dist.distributed:
        _exit_now(int(outcome.exit_code))
    return int(outcome.exit_code)


def _exit_now(code: int) -> NoReturn:
    """End a DDP worker without interpreter finalisation.

    Everything that matters is done by now (reports flushed or given up, result and checkpoint written,
    process group destroyed). What is left is torch's C++ teardown, in which gloo's worker threads
    occasionally abort the process ("terminate called without an active exception", exit 134) when the
    interpreter finalises under them: about one run in ten on torch 2.13. That would turn a finished job
    into a failed one, so the worker leaves with os._exit instead.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
