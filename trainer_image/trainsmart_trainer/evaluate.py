"""Epoch metrics: the training pass's sums reduced across ranks, and a whole split evaluated.

Evaluation shards a split over the ranks like training does, gathers every rank's outputs back into dataset
order and then calls the (non-distributed) metric functions once, so macro F1 and friends are exact, not
averages of per-rank values. Every rank ends up with the same numbers, which keeps decisions taken on them
(early stopping, diagnostics) identical everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset

from trainsmart_trainer import ddp
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.epoch import EpochSampler, Trainee, TrainPass, to_device
from trainsmart_trainer.optimizers import current_lr

if TYPE_CHECKING:
    from trainsmart_trainer.components import Components
    from trainsmart_trainer.data import DataBundle


def dataset_size(dataset: Dataset[Any] | None) -> int:
    """Samples in a split (torch's Dataset type does not promise __len__; every loader's datasets have it)."""
    return 0 if dataset is None else len(dataset)  # type: ignore[arg-type]


def prefixed(prefix: str, metrics: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{key}": float(value) for key, value in metrics.items()}


@dataclass(frozen=True)
class EvalSplit:
    """A split to evaluate: its dataset, this rank's (unshuffled) shard of it, and the loader over that."""

    dataset: Dataset[Any]
    sampler: EpochSampler
    loader: DataLoader[Any]


def make_loader(
    dataset: Dataset[Any], sampler: EpochSampler, config: TrainerConfig, device: torch.device
) -> DataLoader[Any]:
    """One loader per split for the whole run (workers persist across epochs; the sampler picks the order)."""
    workers = config.data_loader_workers
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(config.seed),
    )


def eval_split(
    dataset: Dataset[Any] | None, dist: DistInfo, config: TrainerConfig, device: torch.device
) -> EvalSplit | None:
    """This rank's shard of a validation/test split, or None when the split is absent or empty."""
    if dataset is None or dataset_size(dataset) == 0:
        return None
    sampler = EpochSampler(dataset, world_size=dist.world_size, rank=dist.rank, seed=0, shuffle=False)
    return EvalSplit(dataset, sampler, make_loader(dataset, sampler, config, device))


def train_metrics(measured: TrainPass, trainee: Trainee, task: str, *, distributed: bool) -> dict[str, float]:
    """train_loss/accuracy (or rmse), throughput, epoch time, gradient norms, learning rate for one epoch."""
    sums = torch.tensor(
        [measured.loss_sum, measured.samples, measured.correct, measured.grad_norm_sum, measured.grad_norm_count],
        dtype=torch.float64,
    )
    if distributed:
        sums = ddp.all_reduce_sum(sums.to(trainee.device)).cpu()
    loss_sum, samples, correct, norm_sum, norm_count = sums.tolist()
    metrics = {
        "train_loss": loss_sum / max(samples, 1),
        "samples_per_second": samples / max(measured.seconds, 1e-9),
        "epoch_time_seconds": measured.seconds,
        # Gradients are all-reduced, so every rank added up the same norms: the ratio is the mean per sample.
        "grad_norm": norm_sum / max(norm_count, 1),
        "grad_norm_max": measured.grad_norm_max,
        "learning_rate": current_lr(trainee.optimizer),
    }
    if trainee.classification:
        metrics["train_accuracy"] = correct / max(samples, 1)
    elif task == "ratings":  # plain MSE: its root is the rmse (regression's loss is scaled)
        metrics["train_rmse"] = math.sqrt(max(metrics["train_loss"], 0.0))
    return metrics


def evaluate_split(
    trainee: Trainee, shard: EvalSplit, split: str, data: DataBundle, components: Components, world_size: int
) -> dict[str, float]:
    """`<split>_loss` plus the task's metrics (classification, regression, or ranking for ratings)."""
    outputs = predict(trainee, shard.loader, shard.sampler, dataset_size(shard.dataset), world_size)
    with torch.no_grad():
        loss = float(trainee.loss_module(outputs.outputs.to(trainee.device), outputs.targets.to(trainee.device)))
    metrics: dict[str, float] = {"loss": loss}
    if data.task == "classification":
        metrics.update(components.classification_metrics(outputs.outputs, outputs.targets, data.num_classes or 0))
    elif data.task == "regression":
        metrics.update(components.regression_metrics(outputs.outputs, outputs.targets))
    else:
        metrics.update(components.ranking_metrics(trainee.raw_model, data, split))
    return prefixed(split, metrics)


@dataclass
class EvalOutputs:
    """Model outputs and targets for a whole split, in dataset order, on the CPU."""

    outputs: torch.Tensor
    targets: torch.Tensor


@torch.no_grad()
def predict(trainee: Trainee, loader: Any, sampler: EpochSampler, dataset_len: int, world_size: int) -> EvalOutputs:
    """Run the (unwrapped) model over this rank's shard; gather every rank's shard back into dataset order."""
    trainee.raw_model.eval()
    output_batches: list[torch.Tensor] = []
    target_batches: list[torch.Tensor] = []
    for batch in loader:
        *inputs, target = to_device(batch, trainee.device)
        with trainee.autocast():
            output_batches.append(trainee.raw_model(*inputs).float())
        target_batches.append(target)
    local_outputs, local_targets = torch.cat(output_batches), torch.cat(target_batches)
    if world_size == 1:
        return EvalOutputs(local_outputs.cpu(), local_targets.cpu())
    output_parts, target_parts = ddp.all_gather_equal(local_outputs), ddp.all_gather_equal(local_targets)
    order = torch.tensor([index for rank in range(world_size) for index in sampler.shard_indices(rank)])
    outputs = torch.empty((dataset_len, *local_outputs.shape[1:]), dtype=local_outputs.dtype)
    targets = torch.empty((dataset_len, *local_targets.shape[1:]), dtype=local_targets.dtype)
    # DistributedSampler pads the last shards with repeats of the first samples: writing a repeat twice
    # stores the same value twice, so plain index assignment de-duplicates.
    outputs[order] = torch.cat(output_parts).cpu()
    targets[order] = torch.cat(target_parts).cpu()
    return EvalOutputs(outputs, targets)
