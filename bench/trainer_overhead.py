"""What the packaged trainer costs per epoch over a minimal hand-written PyTorch loop, printed.

Both train the same model (`build_model`, same seed), on the same data (`load_data`), with the same batch
size, optimizer and loss, in this one process, epoch by epoch in lockstep (a trainer epoch, then a minimal
one), so a busy machine slows both alike; the figure is the median of the per-pair ratios, in wall time and
in CPU time of this process. An epoch is the training pass plus a validation pass: the trainer's with
everything it does per epoch (metric reduction, validation metrics, diagnostics; reporting and checkpoints
off), the minimal loop's with a plain accuracy count.

Usage: python bench/trainer_overhead.py [--samples 20000] [--epochs 4] [--rounds 3] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from trainer_workload import add_workload_arguments, workload_config
from trainsmart_trainer import data as data_module
from trainsmart_trainer import metrics as metrics_module
from trainsmart_trainer import models
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.optimizers import build_optimizer
from trainsmart_trainer.settings import RuntimeSettings


@dataclass
class Clock:
    """Wall and CPU time of this process (CPU time is what the busy shared machine disturbs least)."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> Clock:
        return cls(time.perf_counter(), time.process_time())

    def since(self, earlier: Clock) -> Clock:
        return Clock(self.wall - earlier.wall, self.cpu - earlier.cpu)


class MinimalLoop:
    """The loop anyone would write first: shuffle, forward, loss, backward, step; then count hits on val."""

    def __init__(self, config: TrainerConfig) -> None:
        torch.manual_seed(config.seed)
        bundle = data_module.load_data(config)
        self.model = models.build_model(config, bundle)
        self.loss_fn = metrics_module.loss_fn(config, bundle)
        self.optimizer = build_optimizer(config, list(self.model.parameters()))
        self.train = DataLoader(bundle.train, batch_size=config.batch_size, shuffle=True)
        self.val = DataLoader(bundle.val, batch_size=config.batch_size) if bundle.val is not None else None
        self.accuracy = 0.0

    def epoch(self) -> Clock:
        started = Clock.now()
        self.model.train()
        for x, y in self.train:
            self.optimizer.zero_grad()
            loss = self.loss_fn(self.model(x), y)
            loss.backward()
            self.optimizer.step()
        if self.val is not None:
            self.model.eval()
            hits = total = 0
            with torch.no_grad():
                for x, y in self.val:
                    hits += int((self.model(x).argmax(dim=1) == y).sum())
                    total += len(y)
            self.accuracy = hits / max(total, 1)
        return Clock.now().since(started)


def paired_epochs(config: TrainerConfig) -> tuple[list[Clock], list[Clock], float]:
    """Run a real TrainingRun; after each of its epochs run one minimal epoch, so every trainer epoch has a
    minimal one right next to it in time. The trainer's first epoch (set-up) and the minimal loop's first
    (warm-up) are dropped."""
    minimal = MinimalLoop(config)
    trainer_times: list[Clock] = []
    minimal_times: list[Clock] = []
    mark: list[Clock] = []

    def after_epoch(_run: TrainingRun) -> None:
        if mark:
            trainer_times.append(Clock.now().since(mark[-1]))
        spent = minimal.epoch()
        if mark:
            minimal_times.append(spent)
        mark.append(Clock.now())

    plan = resolve_device(simulated=False, visible_devices=None, cuda=CudaProbe(available=False))
    outcome = TrainingRun(config, RuntimeSettings(), DistInfo(), plan, on_epoch_end=after_epoch).execute()
    assert outcome.exit_code == 0, outcome.final.reason
    return trainer_times, minimal_times, minimal.accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps the two loops comparable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = TrainerConfig.model_validate(workload_config(args))
    trainer: list[Clock] = []
    minimal: list[Clock] = []
    accuracy = 0.0
    for round_ in range(args.rounds):
        more_trainer, more_minimal, accuracy = paired_epochs(config)
        trainer += more_trainer
        minimal += more_minimal
        print(f"round {round_ + 1}: trainer {statistics.median(c.wall for c in more_trainer):.3f} s/epoch, minimal "
              f"{statistics.median(c.wall for c in more_minimal):.3f} s/epoch", flush=True)  # fmt: skip
    steps = -(-int(args.samples * 0.8 * 0.8) // args.batch_size)
    print(
        f"synthetic {args.samples} x {args.features}, mlp {models.MLP_HIDDEN}, batch {args.batch_size}, "
        f"~{steps} steps/epoch, {args.threads} torch thread(s), {args.rounds} rounds x {args.epochs} epochs"
    )
    for what in ("wall", "cpu"):
        trainer_median = statistics.median(getattr(clock, what) for clock in trainer)
        minimal_median = statistics.median(getattr(clock, what) for clock in minimal)
        pairs = statistics.median(
            getattr(ours, what) / getattr(theirs, what) for ours, theirs in zip(trainer, minimal, strict=True)
        )
        print(f"{what:4}: trainer median {trainer_median:.3f} s/epoch, minimal {minimal_median:.3f} s/epoch over "
              f"{len(trainer)} epoch pairs; median paired ratio {pairs:.3f} (overhead {100 * (pairs - 1):+.1f}%, "
              "target within 5%)")  # fmt: skip
    print(f"minimal loop's val accuracy after {args.epochs} epochs: {accuracy:.3f}")


if __name__ == "__main__":
    main()
