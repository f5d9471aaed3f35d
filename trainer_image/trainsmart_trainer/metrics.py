"""Metrics and losses of the packaged trainer: pure functions of tensors (and, for ranking, of a model).

Nothing here is distributed: the loop gathers predictions across ranks first, then calls these once. Names
are snake_case without a split prefix; the loop adds `train_`/`val_`/`test_`. Undefined values (no rows, no
relevant items) are NaN rather than a misleading 0.
"""

from __future__ import annotations

import itertools
import math
from typing import Final

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset

from trainsmart_trainer.config import ClassWeightsMode, TrainerConfig
from trainsmart_trainer.data import DataBundle, DataError

# Score at most this many (user, item) pairs per forward pass when ranking, to bound memory.
_PAIRS_PER_PASS: Final = 1 << 21


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """[C, C] counts, rows = true class, columns = predicted class."""
    flat = targets.long().flatten() * num_classes + predictions.long().flatten()
    return torch.bincount(flat.cpu(), minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_metrics(logits: Tensor, targets: Tensor, num_classes: int) -> dict[str, float]:
    """accuracy, and macro precision / recall / F1 over the classes present in targets or predictions.

    Macro averages skip classes that neither occur nor are predicted (a small validation split need not
    contain every class), and count a class that is never predicted as precision 0, as scikit-learn does
    with zero_division=0. F1 is averaged per class, not computed from the averaged precision and recall.
    """
    if targets.numel() == 0:
        return dict.fromkeys(("accuracy", "macro_f1", "precision", "recall"), math.nan)
    counts = confusion_matrix(logits.argmax(dim=1), targets, num_classes).double()
    hits = counts.diagonal()
    actual, predicted = counts.sum(dim=1), counts.sum(dim=0)
    precision = torch.where(predicted > 0, hits / predicted.clamp(min=1), 0.0)
    recall = torch.where(actual > 0, hits / actual.clamp(min=1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp(min=1e-12), 0.0)
    present = (actual + predicted) > 0
    return {
        "accuracy": float(hits.sum() / counts.sum()),
        "macro_f1": float(f1[present].mean()),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
    }


def regression_metrics(preds: Tensor, targets: Tensor) -> dict[str, float]:
    """rmse and mae in the target's units, and r2 (1 = perfect, 0 = no better than predicting the mean)."""
    if targets.numel() == 0:
        return dict.fromkeys(("rmse", "mae", "r2"), math.nan)
    error = preds.detach().double().flatten() - targets.double().flatten()
    spread = ((targets.double() - targets.double().mean()) ** 2).sum()
    return {
        "rmse": float(error.pow(2).mean().sqrt()),
        "mae": float(error.abs().mean()),
        "r2": float(1 - error.pow(2).sum() / spread) if spread > 0 else math.nan,
    }


def _triples(dataset: Dataset[tuple[Tensor, ...]] | None) -> tuple[Tensor, Tensor, Tensor]:
    if dataset is None:
        return torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long), torch.empty(0)
    if not isinstance(dataset, TensorDataset):
        raise TypeError("ranking_metrics needs the ratings splits as TensorDatasets of (user, item, rating)")
    users, items, ratings = dataset.tensors
    return users, items, ratings


def _grouped_by_user(users: Tensor, items: Tensor, num_users: int) -> tuple[Tensor, Tensor]:
    """(items sorted by user, offsets [U+1]) so that one user's items are items[offsets[u]:offsets[u+1]]."""
    order = torch.argsort(users, stable=True)
    offsets = torch.zeros(num_users + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(torch.bincount(users, minlength=num_users), dim=0)
    return items[order], offsets


def _mark(mask: Tensor, grouped: tuple[Tensor, Tensor], first: int) -> None:
    """Set mask[u - first, item] for the pairs of users first .. first + len(mask) - 1."""
    items, offsets = grouped
    begin, end = int(offsets[first]), int(offsets[first + mask.shape[0]])
    counts = offsets[first + 1 : first + mask.shape[0] + 1] - offsets[first : first + mask.shape[0]]
    rows = torch.repeat_interleave(torch.arange(mask.shape[0]), counts)
    mask[rows, items[begin:end]] = True


def ranking_metrics(model: nn.Module, data: DataBundle, split: str, k: int = 10) -> dict[str, float]:
    """precision_at_k, recall_at_k, rmse and mae of a ratings model on one split ("train", "val", "test").

    For each user with at least one relevant rating in the split (rating >= extras["relevance_threshold"]),
    the model scores every item except those the user rated in the other splits (known items are not
    recommendations); precision@k = relevant items in the top k / k, recall@k = relevant items in the top
    k / relevant items; both are averaged over those users. The model is put back in its previous mode.
    """
    if data.task != "ratings" or data.num_users is None or data.num_items is None:
        raise ValueError(f"ranking_metrics needs ratings data, not {data.task}")
    splits = {"train": data.train, "val": data.val, "test": data.test}
    if split not in splits or splits[split] is None:
        present = [name for name, dataset in splits.items() if dataset is not None]
        raise ValueError(f"no {split!r} split to rank; use one of {present}")
    users, items, ratings = _triples(splits[split])
    others = [_triples(dataset) for name, dataset in splits.items() if name != split]
    known = _grouped_by_user(
        torch.cat([other[0] for other in others]), torch.cat([other[1] for other in others]), data.num_users
    )
    relevant_rows = ratings >= float(data.extras["relevance_threshold"])
    relevant = _grouped_by_user(users[relevant_rows], items[relevant_rows], data.num_users)
    device = _device_of(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            predictions = (
                torch.cat(
                    [
                        model(
                            users[start : start + _PAIRS_PER_PASS].to(device),
                            items[start : start + _PAIRS_PER_PASS].to(device),
                        )
                        for start in range(0, len(users), _PAIRS_PER_PASS)
                    ]
                ).cpu()
                if len(users)
                else torch.empty(0)
            )
            precision, recall = _rank(model, data.num_users, data.num_items, known, relevant, k, device)
    finally:
        model.train(was_training)
    scores = regression_metrics(predictions, ratings)
    return {"precision_at_k": precision, "recall_at_k": recall, "rmse": scores["rmse"], "mae": scores["mae"]}


def _device_of(model: nn.Module) -> torch.device:
    """Where the model's tensors live (the CPU for a model without any, e.g. a popularity baseline)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def _rank(
    model: nn.Module,
    num_users: int,
    num_items: int,
    known: tuple[Tensor, Tensor],
    relevant: tuple[Tensor, Tensor],
    k: int,
    device: torch.device,
) -> tuple[float, float]:
    top = min(k, num_items)
    chunk = max(1, _PAIRS_PER_PASS // num_items)
    every_item = torch.arange(num_items)
    precision_sum = recall_sum = 0.0
    evaluated = 0
    for first in range(0, num_users, chunk):
        count = min(chunk, num_users - first)
        wanted = torch.zeros(count, num_items, dtype=torch.bool)
        _mark(wanted, relevant, first)
        n_relevant = wanted.sum(dim=1)
        if not bool((n_relevant > 0).any()):
            continue
        excluded = torch.zeros(count, num_items, dtype=torch.bool)
        _mark(excluded, known, first)
        pair_users = torch.arange(first, first + count).repeat_interleave(num_items)
        scores = model(pair_users.to(device), every_item.repeat(count).to(device)).view(count, num_items).cpu()
        scores = scores.float().masked_fill(excluded, float("-inf"))
        hits = wanted.gather(1, scores.topk(top, dim=1).indices).sum(dim=1).double()
        scored = n_relevant > 0
        precision_sum += float((hits[scored] / top).sum())
        recall_sum += float((hits[scored] / n_relevant[scored]).sum())
        evaluated += int(scored.sum())
    if evaluated == 0:
        return math.nan, math.nan
    return precision_sum / evaluated, recall_sum / evaluated


def class_weights(config: TrainerConfig, data: DataBundle) -> Tensor | None:
    """Per-class loss weights: None (equal), balanced = n / (C * count_c), or the explicit list.

    A class with no training rows gets the weight of a class with one row rather than a division by zero;
    it only matters with label smoothing, since no target then carries that class.
    """
    weights_mode = config.class_weights.mode
    classes = data.num_classes or 0
    if weights_mode == ClassWeightsMode.NONE:
        return None
    if weights_mode == ClassWeightsMode.EXPLICIT:
        weights = config.class_weights.weights or []
        if len(weights) != classes:
            raise DataError(
                f"dataset {data.name} has {classes} classes but classWeights.weights lists {len(weights)}; give one "
                "weight per class, in the order of the classes (sorted labels)"
            )
        return torch.tensor(weights, dtype=torch.float32)
    counts = torch.tensor(data.class_counts or [0] * classes, dtype=torch.float64).clamp(min=1)
    return (counts.sum() / (classes * counts)).float()


class ScaledMSELoss(nn.Module):
    """MSE of the residuals divided by the training target's standard deviation.

    Regression models predict in the target's units; dividing here keeps the loss (and its gradients) of
    order 1 whatever those units are: 1.0 is as good as always predicting the mean.
    """

    scale: Tensor

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32))

    def forward(self, preds: Tensor, targets: Tensor) -> Tensor:
        return torch.mean(((preds - targets) / self.scale) ** 2)


def loss_fn(config: TrainerConfig, data: DataBundle) -> nn.Module:
    """Cross-entropy with class weights and label smoothing; scaled MSE for regression; MSE for ratings."""
    if data.task == "classification":
        return nn.CrossEntropyLoss(weight=class_weights(config, data), label_smoothing=config.label_smoothing)
    if data.task == "regression":
        return ScaledMSELoss(float(data.extras.get("target_std", 1.0)))
    return nn.MSELoss()
