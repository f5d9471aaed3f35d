"""One command that says whether the packaged trainer really works on this machine's NVIDIA GPU.

Unit and cluster tests run on CPUs (simulated GPUs); nothing else exercises CUDA, autocast, NCCL or the
GPU-memory gauge. Run on any GPU machine, it prints the versions and GPU, then PASS/FAIL with figures for:
- the trainer (in-process `TrainingRun`, as `trainsmart-train` runs it) in fp32, bf16 (where the GPU has it)
  and fp16 on digits and on a generated image set; the device is taken from the trainer's own report and
  the model's parameters, the autocast dtype from the trainer's own trainee, never assumed;
- a 1-process `torch.distributed` group (nccl) with an all_reduce and a DDP step on the GPU;
- the trainer's Prometheus `trainsmart_trainer_gpu_memory_bytes`, scraped over HTTP, non-zero;
- trainer samples/s vs a bare PyTorch loop on the same device and data, epoch by epoch in lockstep (the
  method of bench/trainer_overhead.py), and their ratio.
Exit 0 when every check passed, 1 otherwise. Without a usable GPU it says why it skipped and exits 0.
`--cpu` runs the same code paths on the CPU (gloo; AMP is then expected to be ignored by the trainer, with its
diagnostic; no memory gauge), so CI can keep this script working; `--quick` shrinks every workload.

Usage: python bench/gpu_check.py [--cpu] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from trainer_workload import workload_config
from trainsmart_trainer import data as data_module
from trainsmart_trainer import metrics as metrics_module
from trainsmart_trainer import models
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import DiagnosticType
from trainsmart_trainer.ddp import DistInfo, backend_for
from trainsmart_trainer.device import CudaProbe, DevicePlan, probe_cuda, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.optimizers import build_optimizer
from trainsmart_trainer.settings import RuntimeSettings

_GAUGE = re.compile(r'^trainsmart_trainer_gpu_memory_bytes\{kind="max_allocated"\} (\S+)$', re.MULTILINE)


@dataclass
class Sizes:
    """Workload sizes: full ones fit well inside 8 minutes on one GPU, quick ones inside a minute on 2 CPUs."""

    epochs: int
    image_samples: int
    image_side: int
    bench_samples: int
    bench_epochs: int
    bench_batch: int


FULL = Sizes(epochs=4, image_samples=8192, image_side=28, bench_samples=200_000, bench_epochs=5, bench_batch=512)
QUICK = Sizes(epochs=2, image_samples=600, image_side=12, bench_samples=4000, bench_epochs=3, bench_batch=128)


@dataclass
class Report:
    """Every check's verdict, printed as it comes so a hang shows where it hung."""

    failed: list[str] = field(default_factory=list)

    def check(self, name: str, ok: bool, figures: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'} {name}: {figures}", flush=True)
        if not ok:
            self.failed.append(name)


def write_image_set(path: Path, samples: int, side: int) -> Path:
    """A learnable 4-class .npz: each class is a bright bar at its own place, plus noise (no download)."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, samples)
    images = rng.integers(0, 60, (samples, side, side)).astype(np.uint8)
    band = max(side // 4, 1)
    for label in range(4):
        rows = images[labels == label]
        rows[:, label * band : (label + 1) * band, :] += 180
        images[labels == label] = rows
    np.savez(path, x=images, y=labels)
    return path


def scrape_gpu_memory(port: int | None) -> float | None:
    """The exporter's peak-allocated gauge as Prometheus would read it (None: not served or not exported)."""
    if port is None:
        return None
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        found = _GAUGE.search(response.read().decode())
    return float(found.group(1)) if found else None


def train_once(name: str, config: dict[str, Any], plan: DevicePlan, precision: str, report: Report) -> float | None:
    """One trainer run; checks device, autocast dtype, exit code and accuracy. Returns the scraped gauge."""
    seen: dict[str, Any] = {}

    def after_epoch(run: TrainingRun) -> None:
        seen["param_device"] = next(run.trainee.raw_model.parameters()).device.type
        seen["autocast"] = run.trainee.autocast_dtype
        seen["gauge"] = scrape_gpu_memory(run.metrics_port)

    trainer_config = TrainerConfig.model_validate({**config, "mixedPrecision": precision})
    started = time.perf_counter()
    run = TrainingRun(trainer_config, RuntimeSettings(metrics_port=0), DistInfo(), plan, on_epoch_end=after_epoch)
    outcome = run.execute()
    seconds = time.perf_counter() - started
    cuda = plan.type == "cuda"
    expected = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision] if cuda else None
    ignored = any(d.type == DiagnosticType.MIXED_PRECISION_IGNORED for d in outcome.diagnostics)
    metrics = outcome.final.metrics
    accuracy = metrics.get("test_accuracy", metrics.get("val_accuracy", math.nan))
    ok = (
        outcome.exit_code == 0
        and run.reporter.device.type == plan.type  # what the trainer reports to the operator
        and seen.get("param_device") == plan.type
        and seen.get("autocast") == expected
        and (cuda or precision == "none" or ignored)  # on the CPU the trainer must say AMP was ignored
        and accuracy > 0.5
    )
    report.check(
        f"trainer {name} {precision if precision != 'none' else 'fp32'}",
        ok,
        f"exit {int(outcome.exit_code)}, reported device {run.reporter.device.type} ({run.reporter.device.name}), "
        f"params on {seen.get('param_device')}, autocast {seen.get('autocast')}"
        + (", AMP ignored on CPU as documented" if ignored else "")
        + f", accuracy {accuracy:.3f}, {metrics.get('samples_per_second', 0):.0f} samples/s, {seconds:.1f} s"
        + ("" if outcome.exit_code == 0 else f", reason: {outcome.final.reason}"),
    )
    gauge: float | None = seen.get("gauge")
    return gauge


def check_distributed(device: torch.device, report: Report) -> None:
    """A 1-process group on the backend the trainer would pick, an all_reduce and one DDP step on `device`."""
    backend = backend_for(device.type)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    try:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
        values = torch.arange(4, dtype=torch.float32, device=device)
        dist.all_reduce(values)
        model = torch.nn.parallel.DistributedDataParallel(
            torch.nn.Linear(8, 2).to(device), device_ids=[device.index] if device.type == "cuda" else None
        )
        model(torch.randn(16, 8, device=device)).sum().backward()
        grad = next(model.parameters()).grad
        ok = values.tolist() == [0.0, 1.0, 2.0, 3.0] and grad is not None and grad.device == device
        where = grad.device if grad is not None else None
        detail = f"all_reduce {values.tolist()} on {values.device}, DDP gradient on {where}"
    except Exception as error:  # any failure is the finding, reported rather than raised
        ok, detail = False, f"{type(error).__name__}: {error}"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    report.check(f"distributed 1-process {backend}", ok, f"{detail}, {time.perf_counter() - started:.1f} s")


class BareLoop:
    """The loop anyone would write: same data, model, loss, optimizer and batch as the trainer, on `device`."""

    def __init__(self, config: TrainerConfig, device: torch.device) -> None:
        torch.manual_seed(config.seed)
        bundle = data_module.load_data(config)
        self.device = device
        self.model = models.build_model(config, bundle).to(device)
        self.loss_fn = metrics_module.loss_fn(config, bundle).to(device)
        self.optimizer = build_optimizer(config, list(self.model.parameters()))
        cuda = device.type == "cuda"
        self.train = DataLoader(bundle.train, batch_size=config.batch_size, shuffle=True, pin_memory=cuda)

    def epoch(self) -> float:
        """Samples/s of one training pass (synchronised at the end, as the trainer's own figure is)."""
        self.model.train()
        samples = 0
        started = time.perf_counter()
        for x, y in self.train:
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            self.optimizer.zero_grad()
            self.loss_fn(self.model(x), y).backward()
            self.optimizer.step()
            samples += len(y)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return samples / (time.perf_counter() - started)


def check_throughput(plan: DevicePlan, sizes: Sizes, report: Report) -> None:
    """Trainer vs bare loop, an epoch of each in turn; first epochs (set-up, warm-up) dropped; medians."""
    workload = argparse.Namespace(samples=sizes.bench_samples, features=32, epochs=sizes.bench_epochs,
                                  batch_size=sizes.bench_batch)  # fmt: skip
    config = TrainerConfig.model_validate(workload_config(workload))
    bare = BareLoop(config, torch.device(plan.torch_device))
    trainer_rates: list[float] = []
    bare_rates: list[float] = []

    def after_epoch(run: TrainingRun) -> None:
        trainer_rates.append(run.last_metrics["samples_per_second"])
        bare_rates.append(bare.epoch())

    outcome = TrainingRun(config, RuntimeSettings(), DistInfo(), plan, on_epoch_end=after_epoch).execute()
    kept = slice(1, None) if len(trainer_rates) > 1 else slice(None)
    trainer = statistics.median(trainer_rates[kept]) if trainer_rates else 0.0
    minimal = statistics.median(bare_rates[kept]) if bare_rates else math.nan
    ratio = trainer / minimal if minimal > 0 else 0.0
    # A floor for gross regressions only (a stray per-step sync, a CPU copy); the figure itself is the point.
    report.check(
        "throughput trainer vs bare loop",
        outcome.exit_code == 0 and ratio >= 0.5,
        f"synthetic {sizes.bench_samples} x 32, mlp, batch {sizes.bench_batch}, median of "
        f"{len(trainer_rates[kept])} epochs: trainer {trainer:.0f} samples/s, bare {minimal:.0f} samples/s, "
        f"ratio {ratio:.3f}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run every check on the CPU (gloo, AMP ignored)")
    parser.add_argument("--quick", action="store_true", help="tiny workloads: proves the code paths, not speed")
    parser.add_argument("--log-level", default="WARNING", help="the trainer's log level (INFO shows its epochs)")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level, format="  %(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    cudnn = torch.backends.cudnn.version()  # type: ignore[no-untyped-call]
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN {cudnn}")
    probe = CudaProbe(available=False) if args.cpu else probe_cuda()
    if not args.cpu and not probe.available:
        print(f"SKIPPED: no usable GPU ({probe.error or 'no CUDA device visible'}); use --cpu to exercise the paths")
        return 0
    plan = resolve_device(simulated=False, visible_devices=None, cuda=probe)
    print(plan.announcement, flush=True)
    sizes = QUICK if args.quick else FULL
    precisions = ["none", "bf16"]
    if plan.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            precisions.remove("bf16")
            print("bf16 is not supported on this GPU: AMP runs fp16 only")
        precisions.append("fp16")
    report = Report()
    gauges: list[float | None] = []
    common = {"epochs": sizes.epochs, "batchSize": 64, "learningRate": 3e-3, "validationSplit": 0.2}
    with tempfile.TemporaryDirectory() as scratch:
        images = write_image_set(Path(scratch) / "images.npz", sizes.image_samples, sizes.image_side)
        workloads = {
            "digits/mlp": {**common, "dataset": {"name": "digits"}, "model": {"name": "mlp"}},
            "images/cnn": {**common, "dataset": {"name": "images", "path": str(images)}, "model": {"name": "cnn"}},
        }
        for name, config in workloads.items():
            for precision in precisions:
                gauges.append(train_once(name, config, plan, precision, report))
    check_distributed(torch.device(plan.torch_device), report)
    if plan.type == "cuda":
        values = [gauge or 0.0 for gauge in gauges]
        shown = ", ".join(f"{value:.0f}" for value in values)
        figures = f"trainsmart_trainer_gpu_memory_bytes max_allocated scraped after each of {len(values)} runs: {shown}"
        report.check("GPU-memory gauge", min(values, default=0.0) > 0, figures)
    else:
        print("SKIP GPU-memory gauge: exported only when training on CUDA")
    check_throughput(plan, sizes, report)
    verdict = "all checks passed" if not report.failed else f"FAILED: {', '.join(report.failed)}"
    print(f"{plan.type}: {verdict}")
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
