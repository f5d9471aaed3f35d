"""Optimizers and learning-rate schedules from the config.

Every schedule is a pure function of the global step (`lr_factor`), applied per optimizer step through
LambdaLR. One mechanism for all of them keeps resume exact (the scheduler's only state is its step count)
and lets onecycle and warmup ramp within an epoch instead of jumping once per epoch. onecycle here changes
the learning rate only, not momentum.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.optim import SGD, Adam, AdamW, Optimizer, RMSprop
from torch.optim.lr_scheduler import LambdaLR

from trainsmart_trainer.config import LrScheduleConfig, LrScheduleName, OptimizerName, TrainerConfig

_ONECYCLE_WARM_FRACTION = 0.3  # share of the run spent ramping up to the peak
_ONECYCLE_START_DIVISOR = 25.0  # the run starts at peak / 25 ...
_ONECYCLE_END_DIVISOR = 1e4  # ... and ends at start / 1e4


def build_optimizer(config: TrainerConfig, parameters: list[nn.Parameter]) -> Optimizer:
    """The configured optimizer. weightDecay is L2 for sgd/adam/rmsprop and decoupled for adamw."""
    options, rate, decay = config.optimizer, config.learning_rate, config.weight_decay
    if options.name == OptimizerName.SGD:
        momentum = 0.9 if options.momentum is None else options.momentum
        nesterov = options.nesterov and momentum > 0
        return SGD(parameters, lr=rate, momentum=momentum, nesterov=nesterov, weight_decay=decay)
    if options.name == OptimizerName.ADAM:
        return Adam(parameters, lr=rate, weight_decay=decay)
    if options.name == OptimizerName.ADAMW:
        return AdamW(parameters, lr=rate, weight_decay=decay)
    return RMSprop(parameters, lr=rate, momentum=options.momentum or 0.0, weight_decay=decay)


def _cosine(progress: float) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def lr_factor(schedule: LrScheduleConfig, base_lr: float, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate for optimizer step `step` (0-based) of the whole run; cosine and
    onecycle reach their final rate at the run's last step."""
    epoch_steps = max(steps_per_epoch, 1)
    total = max(epoch_steps * epochs, 1)
    epoch = step // epoch_steps
    name = schedule.name
    if name == LrScheduleName.NONE:
        return 1.0
    if name == LrScheduleName.STEP:
        return (schedule.gamma or 0.1) ** (epoch // (schedule.step_epochs or 10))
    if name == LrScheduleName.WARMUP:
        warm = epoch_steps * (schedule.warmup_epochs if schedule.warmup_epochs is not None else 1)
        return min(1.0, (step + 1) / warm) if warm else 1.0
    if name == LrScheduleName.COSINE:
        warm = epoch_steps * (schedule.warmup_epochs or 0)
        if step < warm:
            return (step + 1) / warm
        floor = (schedule.min_learning_rate or 0.0) / base_lr
        return floor + (1.0 - floor) * _cosine((step - warm) / max(total - 1 - warm, 1))
    # onecycle: cosine up from peak/25 to the peak, then cosine down to peak/25/1e4.
    peak = (schedule.max_learning_rate or 10.0 * base_lr) / base_lr
    start = peak / _ONECYCLE_START_DIVISOR
    end = start / _ONECYCLE_END_DIVISOR
    ramp_up = max(int(_ONECYCLE_WARM_FRACTION * total), 1)
    if step < ramp_up:
        return peak + (start - peak) * _cosine(step / ramp_up)
    return end + (peak - end) * _cosine((step - ramp_up) / max(total - 1 - ramp_up, 1))


def _factor_for(schedule: LrScheduleConfig, base_lr: float, steps_per_epoch: int, epochs: int, step: int) -> float:
    """`lr_factor` with the step last: LambdaLR calls the partial of it with the step alone."""
    return lr_factor(schedule, base_lr, step, steps_per_epoch, epochs)


def build_scheduler(config: TrainerConfig, optimizer: Optimizer, steps_per_epoch: int) -> LambdaLR | None:
    """A per-step LambdaLR, or None for a constant rate (so the hot loop skips scheduler.step entirely)."""
    if config.lr_schedule.name == LrScheduleName.NONE:
        return None
    factor = partial(_factor_for, config.lr_schedule, config.learning_rate, steps_per_epoch, config.epochs)
    return LambdaLR(optimizer, lr_lambda=factor)


def l1_term(model: nn.Module) -> torch.Tensor:
    """Sum of |w| over weight matrices and kernels (biases and norm scales are not penalised)."""
    terms = [param.abs().sum() for param in model.parameters() if param.requires_grad and param.dim() > 1]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def current_lr(optimizer: Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
