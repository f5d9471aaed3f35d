"""One training pass and one evaluation pass: the hot loop, kept free of reporting and checkpoint I/O.

The training pass never forces a host/device sync per step: losses and gradient norms stay tensors and are
checked in windows of `WINDOW` steps (stacked, one `.tolist()`), which still names the exact step a loss
went non-finite. Gradient norms are sampled (see `train_pass`), which keeps the loop within a few percent
of a bare PyTorch loop (bench/trainer_overhead.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Final

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset, DistributedSampler, Sampler

from trainsmart_trainer import ddp
from trainsmart_trainer.config import MixedPrecision, TrainerConfig
from trainsmart_trainer.diagnostics import EXPLODING_GRAD_NORM
from trainsmart_trainer.optimizers import build_optimizer, build_scheduler, l1_term

WINDOW: Final = 16
NORM_EVERY: Final = 4
# A too-high learning rate usually blows up within the first few steps, faster than every 4th step would
# see: the opening steps of a run measure every step.
NORM_EVERY_STEP_UNTIL: Final = 2 * WINDOW


class NonFiniteLossError(Exception):
    """The loss became NaN/inf at optimizer step `step` (1-based); the run cannot recover."""

    def __init__(
        self, value: float, step: int, large_grad: tuple[int, float] | None = None, split: str = "training"
    ) -> None:
        super().__init__(f"{split} loss {value} at step {step}")
        self.value = value
        self.step = step
        self.split = split
        self.large_grad = large_grad  # (step, norm) of the first huge gradient, often the cause


class EpochSampler(Sampler[int]):
    """DistributedSampler's per-epoch shard, optionally skipping the batches a resumed run already did.

    One object for the whole run (so DataLoader workers can persist); `set_epoch` picks the shuffle and the
    number of leading samples to skip. With one process it is a seeded shuffle, identical for equal seeds.
    """

    def __init__(self, dataset: Dataset[Any], *, world_size: int, rank: int, seed: int, shuffle: bool) -> None:
        self._inner: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self._skip = 0

    def set_epoch(self, epoch: int, skip_samples: int = 0) -> None:
        self._inner.set_epoch(epoch)
        self._skip = skip_samples

    def __iter__(self) -> Iterator[int]:
        indices = list(self._inner)
        return iter(indices[self._skip :])

    def __len__(self) -> int:
        return max(len(self._inner) - self._skip, 0)

    def shard_indices(self, rank: int) -> list[int]:
        """The (unshuffled) indices `rank` evaluates: how gathered evaluation outputs are put back in order."""
        inner = self._inner
        other: DistributedSampler[Any] = DistributedSampler(
            inner.dataset, num_replicas=inner.num_replicas, rank=rank, shuffle=False, drop_last=False
        )
        return list(other)


@dataclass
class TrainPass:
    """What one training pass measured on this rank (sums: they are reduced across ranks afterwards)."""

    steps: int = 0
    samples: int = 0
    loss_sum: float = 0.0
    correct: float = 0.0
    grad_norm_sum: float = 0.0
    grad_norm_count: int = 0
    grad_norm_max: float = 0.0
    layer_norm_sums: dict[str, float] = field(default_factory=dict)
    layer_norm_samples: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    first_large_grad: tuple[int, float] | None = None  # (global step, norm) of the first exploding step


@dataclass
class Trainee:
    """The pieces a training step touches."""

    model: nn.Module  # possibly DDP-wrapped
    raw_model: nn.Module
    optimizer: Optimizer
    scheduler: LambdaLR | None
    loss_module: nn.Module
    device: torch.device
    classification: bool
    grad_clip_norm: float | None = None
    l1_penalty: float = 0.0
    scaler: torch.amp.GradScaler | None = None
    autocast_dtype: torch.dtype | None = None
    exploding_threshold: float = math.inf

    def autocast(self) -> AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)


def build_trainee(
    config: TrainerConfig,
    model: nn.Module,
    loss_module: nn.Module,
    device: torch.device,
    steps_per_epoch: int,
    classification: bool,
) -> Trainee:
    """Optimizer, schedule and mixed precision for `model` as configured (autocast and scaling on CUDA only)."""
    optimizer = build_optimizer(config, [param for param in model.parameters() if param.requires_grad])
    amp = config.mixed_precision != MixedPrecision.NONE and device.type == "cuda"
    dtype = {MixedPrecision.FP16: torch.float16, MixedPrecision.BF16: torch.bfloat16}.get(config.mixed_precision)
    fp16 = amp and config.mixed_precision == MixedPrecision.FP16
    return Trainee(
        model=model,
        raw_model=model,
        optimizer=optimizer,
        scheduler=build_scheduler(config, optimizer, steps_per_epoch),
        loss_module=loss_module,
        device=device,
        classification=classification,
        grad_clip_norm=config.grad_clip_norm,
        l1_penalty=config.l1_penalty,
        scaler=torch.amp.GradScaler("cuda") if fp16 else None,
        autocast_dtype=dtype if amp else None,
        exploding_threshold=EXPLODING_GRAD_NORM,
    )


def to_device(batch: Any, device: torch.device) -> list[torch.Tensor]:
    """The batch's tensors on `device` (on the CPU the loader's tensors are used as they are)."""
    if device.type == "cpu":
        return list(batch)
    return [tensor.to(device, non_blocking=True) for tensor in batch]


class _Window:
    """Per-step values held as tensors until one host sync every WINDOW steps (no per-step `.item()`)."""

    def __init__(self, first_step: int) -> None:
        self.reset(first_step)

    def reset(self, first_step: int) -> None:
        self.first_step = first_step  # global step index (0-based) of the window's first step
        self.losses: list[torch.Tensor] = []
        self.sizes: list[int] = []
        self.norm_steps: list[int] = []
        self.norms: list[torch.Tensor] = []

    def flush(self, result: TrainPass, threshold: float) -> None:
        """Check the window for non-finite losses and huge gradients, fold it into `result`, start a new one.

        A huge gradient counts only before the first non-finite loss (after it every norm is NaN anyway); it
        is handed over with the NaN so the report can show the blow-up that preceded it. Steps in messages
        are 1-based ("the 5th optimizer step").
        """
        if not self.losses:
            return
        loss_values = torch.stack(self.losses).float().tolist()
        norm_values = torch.stack(self.norms).float().tolist() if self.norms else []
        first_bad = next((i for i, value in enumerate(loss_values) if not math.isfinite(value)), len(loss_values))
        if result.first_large_grad is None:
            for step, norm in zip(self.norm_steps, norm_values, strict=True):
                if step - self.first_step < first_bad and not norm <= threshold:  # also catches NaN/inf norms
                    result.first_large_grad = (step + 1, norm)
                    break
        if first_bad < len(loss_values):
            raise NonFiniteLossError(loss_values[first_bad], self.first_step + first_bad + 1, result.first_large_grad)
        finite = [norm for norm in norm_values if math.isfinite(norm)]
        result.loss_sum += sum(loss * size for loss, size in zip(loss_values, self.sizes, strict=True))
        result.grad_norm_sum += sum(finite)
        result.grad_norm_count += len(finite)
        result.grad_norm_max = max([result.grad_norm_max, *finite])
        self.reset(self.first_step + len(loss_values))


def _grad_norms(
    trainee: Trainee, params: list[nn.Parameter], per_tensor: bool
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(total norm, per-parameter norms or []) without a host sync; clips when configured."""
    grads = [param.grad for param in params if param.grad is not None]
    if trainee.grad_clip_norm is not None:
        total = torch.nn.utils.clip_grad_norm_(params, trainee.grad_clip_norm)
        return total, list(torch._foreach_norm(grads)) if per_tensor else []
    norms = list(torch._foreach_norm(grads))
    return torch.linalg.vector_norm(torch.stack(norms)), norms if per_tensor else []


def _add_layer_norms(result: TrainPass, names: list[str], norms: list[torch.Tensor]) -> None:
    for name, norm in zip(names, torch.stack(norms).tolist(), strict=True):
        if name:  # weights only: biases and norm scales may legitimately have ~0 gradients
            result.layer_norm_sums[name] = result.layer_norm_sums.get(name, 0.0) + norm
    result.layer_norm_samples += 1


def train_pass(
    trainee: Trainee,
    loader: Iterator[Any] | Any,
    *,
    global_step: int,
    stop_requested: Callable[[], bool],
    on_step: Callable[[int, TrainPass], None] | None = None,
    distributed: bool = False,
) -> TrainPass:
    """Train over `loader` once. Stops early (interrupted=True) at a step boundary when any rank asks to.

    The gradient norm is measured every NORM_EVERY steps (every step when clipping needs it anyway, and in
    the run's first NORM_EVERY_STEP_UNTIL steps), and per-layer norms every WINDOW steps: enough for the
    epoch's mean and for the exploding/vanishing checks, at a small fraction of a step's cost.
    """
    result = TrainPass()
    trainee.model.train()
    params = [param for param in trainee.raw_model.parameters() if param.requires_grad]
    names = [
        name if param.dim() > 1 else "" for name, param in trainee.raw_model.named_parameters() if param.requires_grad
    ]
    window = _Window(global_step)
    correct = torch.zeros((), device=trainee.device)
    started = time.perf_counter()
    for batch in loader:
        *inputs, target = to_device(batch, trainee.device)
        with trainee.autocast():
            output = trainee.model(*inputs)
            loss = trainee.loss_module(output, target)
        total = loss + trainee.l1_penalty * l1_term(trainee.raw_model) if trainee.l1_penalty else loss
        trainee.optimizer.zero_grad(set_to_none=True)
        if trainee.scaler is not None:
            trainee.scaler.scale(total).backward()
            trainee.scaler.unscale_(trainee.optimizer)
        else:
            total.backward()
        per_layer = global_step % WINDOW == 0
        sampled = global_step % NORM_EVERY == 0 or global_step < NORM_EVERY_STEP_UNTIL
        if trainee.grad_clip_norm is not None or sampled:
            norm, layer_norms = _grad_norms(trainee, params, per_layer)
            window.norm_steps.append(global_step)
            window.norms.append(norm.detach())
            if layer_norms and len(layer_norms) == len(names):
                _add_layer_norms(result, names, layer_norms)
        if trainee.scaler is not None:
            trainee.scaler.step(trainee.optimizer)
            trainee.scaler.update()
        else:
            trainee.optimizer.step()
        if trainee.scheduler is not None:
            trainee.scheduler.step()
        window.losses.append(loss.detach())
        window.sizes.append(len(target))
        if trainee.classification:
            correct += (output.detach().argmax(dim=1) == target).sum()
        result.steps += 1
        result.samples += len(target)
        global_step += 1
        if len(window.losses) >= WINDOW:
            window.flush(result, trainee.exploding_threshold)
        if on_step is not None:
            on_step(global_step, result)
        stop = stop_requested()
        if ddp.any_rank(stop, trainee.device) if distributed else stop:
            result.interrupted = True
            break
    window.flush(result, trainee.exploding_threshold)
    result.correct = float(correct)
    result.seconds = time.perf_counter() - started
    return result
