"""The trainer's metrics and losses, against hand-computed values and scikit-learn as the reference.

Pins:
- classification: accuracy and macro precision/recall/F1 equal scikit-learn's (zero_division=0) on random
  and on hand-worked predictions, including a class that is never predicted or absent from the targets;
- regression: rmse, mae, r2 by hand; empty inputs give NaN, not 0;
- ranking: precision@k and recall@k over users with relevant held-out items, known items excluded, by hand;
  the model's train/eval mode is restored;
- losses: balanced class weights equal scikit-learn's `compute_class_weight("balanced")`; explicit weights
  must match the class count; label smoothing reaches the loss; regression MSE is scaled by the target std.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, precision_recall_fscore_support
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import TensorDataset

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.data import DataBundle, DataError
from trainsmart_trainer.metrics import (
    ScaledMSELoss,
    class_weights,
    classification_metrics,
    confusion_matrix,
    loss_fn,
    ranking_metrics,
    regression_metrics,
)


def one_hot(predictions: list[int], classes: int) -> torch.Tensor:
    return nn.functional.one_hot(torch.tensor(predictions), classes).float()


def sklearn_scores(targets: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    precision, recall, f1, _ = precision_recall_fscore_support(targets, predictions, average="macro", zero_division=0)
    return {"accuracy": accuracy_score(targets, predictions), "macro_f1": f1, "precision": precision, "recall": recall}


def test_classification_metrics_by_hand() -> None:
    # true 0,0,1,1,2 predicted 0,1,1,1,1: class 0 P=1 R=.5; class 1 P=2/4 R=1; class 2 never predicted: P=R=0.
    scores = classification_metrics(one_hot([0, 1, 1, 1, 1], 4), torch.tensor([0, 0, 1, 1, 2]), num_classes=4)
    f1 = [2 * 1 * 0.5 / 1.5, 2 * 0.5 * 1 / 1.5, 0.0]
    assert scores == pytest.approx(
        {"accuracy": 0.6, "precision": (1 + 0.5 + 0) / 3, "recall": (0.5 + 1 + 0) / 3, "macro_f1": sum(f1) / 3}
    )
    assert confusion_matrix(torch.tensor([0, 1, 1, 1, 1]), torch.tensor([0, 0, 1, 1, 2]), 3).tolist() == [
        [1, 1, 0],
        [0, 2, 0],
        [0, 1, 0],
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_scikit_learn(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(200, 5, generator=generator)
    targets = torch.randint(0, 4, (200,), generator=generator)  # class 4 never occurs, but may be predicted
    expected = sklearn_scores(targets.numpy(), logits.argmax(1).numpy())
    assert classification_metrics(logits, targets, num_classes=5) == pytest.approx(expected)


def test_regression_metrics_by_hand() -> None:
    scores = regression_metrics(torch.tensor([1.0, 2.0, 5.0]), torch.tensor([1.0, 4.0, 3.0]))
    assert scores["rmse"] == pytest.approx(math.sqrt(8 / 3))
    assert scores["mae"] == pytest.approx(4 / 3)
    assert scores["r2"] == pytest.approx(1 - 8 / 4.6666666)


def test_metrics_of_nothing_are_nan() -> None:
    assert all(math.isnan(v) for v in classification_metrics(torch.empty(0, 3), torch.empty(0), 3).values())
    assert all(math.isnan(v) for v in regression_metrics(torch.empty(0), torch.empty(0)).values())


class TableModel(nn.Module):
    """Scores from a fixed [users, items] table, so the ranking is known in advance."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.table[users, items]


def ratings_bundle(train: list[tuple[int, int, float]], test: list[tuple[int, int, float]]) -> DataBundle:
    def dataset(rows: list[tuple[int, int, float]]) -> TensorDataset:
        users, items, ratings = zip(*rows, strict=True)
        return TensorDataset(torch.tensor(users), torch.tensor(items), torch.tensor(ratings))

    return DataBundle(
        name="ratings",
        task="ratings",
        train=dataset(train),
        val=None,
        test=dataset(test),
        input_shape=(),
        num_users=3,
        num_items=5,
        extras={"relevance_threshold": 4.0},
    )


def test_ranking_metrics_by_hand() -> None:
    # Scores rank items 4 > 3 > 2 > 1 > 0 for every user. User 0 rated item 4 in training, so its top 2 are
    # items 3, 2: relevant test items {3, 0} -> 1 hit: P@2 = 1/2, R@2 = 1/2. User 1: top 2 = 4, 3; relevant
    # {1} -> 0 hits. User 2 has no relevant test rating (a 2.0) and is not averaged in.
    data = ratings_bundle(
        train=[(0, 4, 5.0), (1, 0, 3.0), (2, 0, 4.0)],
        test=[(0, 3, 4.0), (0, 0, 5.0), (0, 2, 1.0), (1, 1, 4.5), (2, 3, 2.0)],
    )
    model = TableModel(torch.arange(5.0).repeat(3, 1))
    model.train()
    scores = ranking_metrics(model, data, "test", k=2)
    assert scores["precision_at_k"] == pytest.approx((1 / 2 + 0) / 2)
    assert scores["recall_at_k"] == pytest.approx((1 / 2 + 0) / 2)
    errors = torch.tensor([3 - 4.0, 0 - 5.0, 2 - 1.0, 1 - 4.5, 3 - 2.0])
    assert scores["rmse"] == pytest.approx(float(errors.pow(2).mean().sqrt()))
    assert model.training


def test_ranking_needs_an_existing_split_of_ratings_data() -> None:
    data = ratings_bundle(train=[(0, 0, 1.0)], test=[(0, 1, 5.0)])
    with pytest.raises(ValueError, match="no 'val' split"):
        ranking_metrics(TableModel(torch.zeros(3, 5)), data, "val")


def trainer_config(**fields: Any) -> TrainerConfig:
    return TrainerConfig.model_validate(fields)


def classification_bundle(counts: list[int]) -> DataBundle:
    empty = TensorDataset(torch.empty(0))
    return DataBundle(
        name="t", task="classification", train=empty, val=None, test=empty, input_shape=(2,),
        num_classes=len(counts), class_counts=counts,
    )  # fmt: skip


def test_balanced_class_weights_match_scikit_learn() -> None:
    counts = [50, 30, 15, 5]
    labels = np.repeat(np.arange(4), counts)
    weights = class_weights(trainer_config(classWeights={"mode": "balanced"}), classification_bundle(counts))
    assert weights is not None
    assert weights.tolist() == pytest.approx(compute_class_weight("balanced", classes=np.arange(4), y=labels).tolist())


def test_explicit_weights_must_match_the_classes() -> None:
    explicit = trainer_config(classWeights={"mode": "explicit", "weights": [1, 2, 3]})
    loss = loss_fn(explicit, classification_bundle([5, 5, 5]))
    assert isinstance(loss, nn.CrossEntropyLoss) and loss.weight is not None
    assert loss.weight.tolist() == [1, 2, 3]
    with pytest.raises(DataError, match=r"has 2 classes but classWeights\.weights lists 3"):
        loss_fn(explicit, classification_bundle([5, 5]))


def test_cross_entropy_gets_label_smoothing_and_no_weights_by_default() -> None:
    loss = loss_fn(trainer_config(labelSmoothing=0.1), classification_bundle([3, 4]))
    assert isinstance(loss, nn.CrossEntropyLoss)
    assert (loss.weight, loss.label_smoothing) == (None, 0.1)


def test_regression_loss_is_mse_in_units_of_the_target_std() -> None:
    empty = TensorDataset(torch.empty(0))
    data = DataBundle("t", "regression", empty, None, empty, (2,), extras={"target_std": 10.0})
    loss = loss_fn(trainer_config(dataset={"name": "synthetic", "task": "regression"}), data)
    assert isinstance(loss, ScaledMSELoss)
    assert float(loss(torch.tensor([110.0, 90.0]), torch.tensor([100.0, 100.0]))) == pytest.approx(1.0)
    ratings = DataBundle("r", "ratings", empty, None, empty, ())
    assert isinstance(
        loss_fn(trainer_config(model={"name": "mf"}, dataset={"name": "ratings", "path": "/r"}), ratings), nn.MSELoss
    )
