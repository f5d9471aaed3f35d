"""What every loader shares: the bundle it returns, the error it raises, and how rows are split.

Splits are index arrays, computed before any statistic is fitted, so each loader can fit its scaler,
vocabulary or categories on the training rows alone and cannot leak test data into them by accident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import TensorDataset

# The test split does not depend on config.seed: sweep trials that vary the seed, or validationSplit, are
# then scored on the very same test rows, and a better test metric means a better model, not a luckier draw.
TEST_FRACTION: Final = 0.2
TEST_SPLIT_SEED: Final = 20_240_917

Indices = npt.NDArray[np.int64]
TaskName = Literal["classification", "regression", "ratings"]


class DataError(Exception):
    """Data the trainer cannot use. The message names the file, the column and the fix.

    Retrying cannot help, so the training loop maps it to the permanent-failure exit code.
    """


@dataclass
class DataBundle:
    """Everything a model, the loss and the metrics need to know about the loaded data.

    Splits are TensorDatasets of `(*inputs, target)`: `(x, label)` for classification, `(x, value)` for
    regression, `(user, item, rating)` for ratings (`input_shape` is then `()`, a scalar user index).
    `extras` keys by dataset, for reports and for the models and metrics that need them:
    `classes` (class names in index order: every classification dataset), `target_mean`/`target_std`
    (regression; the training split's), `scaler_mean`/`scaler_std`, `feature_names`, `categories`
    (tabular), `vocabulary`, `padding_index`, `unknown_index`, `max_length` (text), `image_shape`, `augment`
    (images), `rating_mean`/`rating_min`/`rating_max`, `relevance_threshold`, `user_ids`/`item_ids` (ratings),
    `dropped_rows` (files: rows without a target).
    """

    name: str
    task: TaskName
    train: TensorDataset
    val: TensorDataset | None
    test: TensorDataset
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    class_counts: list[int] | None = None
    vocab_size: int | None = None
    num_users: int | None = None
    num_items: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Split:
    """Row indices of the three splits; `val` is empty when validationSplit is 0."""

    train: Indices
    val: Indices
    test: Indices


def _allocate(
    labels: npt.NDArray[Any] | None, rows: int, fraction: float, rng: np.random.Generator
) -> npt.NDArray[np.bool_]:
    """Mark round(fraction * rows) rows, keeping each label's share when labels are given (stratified).

    Per-label quotas use largest remainders so that the total is exact and tiny classes still get their
    fair share instead of all rounding down to zero.
    """
    chosen = np.zeros(rows, dtype=np.bool_)
    total = round(fraction * rows)
    if total == 0:
        return chosen
    if labels is None:
        chosen[rng.permutation(rows)[:total]] = True
        return chosen
    values, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse, minlength=len(values))
    ideal = counts * (total / rows)
    quota = np.floor(ideal).astype(np.int64)
    remainder_order = np.lexsort((np.arange(len(values)), -(ideal - quota)))
    quota[remainder_order[: total - int(quota.sum())]] += 1
    for label_index, take in enumerate(quota):
        members = np.flatnonzero(inverse == label_index)
        chosen[members[rng.permutation(len(members))[:take]]] = True
    return chosen


def split_rows(
    rows: int,
    validation_split: float,
    seed: int,
    *,
    labels: npt.NDArray[Any] | None = None,
    source: str,
    has_test: bool = True,
) -> Split:
    """Split `rows` rows into train/val/test: test fixed (TEST_FRACTION, constant seed), val from the rest by `seed`.

    `validation_split` is a fraction of the rows left after the test split. With `has_test=False` the caller
    brings its own test rows (e.g. an IDX t10k file) and only val is taken out. Stratified when `labels`
    is given, so that rare classes appear in every split they can.
    """
    everything = np.arange(rows, dtype=np.int64)
    if has_test:
        test_mask = _allocate(labels, rows, TEST_FRACTION, np.random.default_rng(TEST_SPLIT_SEED))
        test, pool = everything[test_mask], everything[~test_mask]
    else:
        test, pool = everything[:0], everything
    pool_labels = None if labels is None else labels[pool]
    val_mask = _allocate(pool_labels, len(pool), validation_split, np.random.default_rng(seed))
    split = Split(train=pool[~val_mask], val=pool[val_mask], test=test)
    wanted = ["train"] + (["test"] if has_test else []) + (["validation"] if validation_split > 0 else [])
    sizes = {"train": len(split.train), "test": len(split.test), "validation": len(split.val)}
    empty = [name for name in wanted if sizes[name] == 0]
    if empty:
        needed = _rows_needed(validation_split, has_test)
        raise DataError(
            f"{source}: {rows} rows are too few to split; the {' and '.join(empty)} split would be empty. "
            f"Provide at least {needed} rows" + (", or lower validationSplit" if validation_split > 0 else "")
        )
    return split


def _rows_needed(validation_split: float, has_test: bool) -> int:
    """The smallest row count for which every requested split gets at least one row."""
    for rows in range(1, 10_000):
        test = round(TEST_FRACTION * rows) if has_test else 0
        val = round(validation_split * (rows - test))
        if rows - test - val >= 1 and (not has_test or test >= 1) and (validation_split == 0 or val >= 1):
            return rows
    return 10_000


def encode_labels(values: npt.NDArray[Any]) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Map labels to 0..C-1 by sorted value; returns (codes, class names in code order).

    Classes come from every row, not only the training rows: the label set is part of the schema, and a
    class that happens to land only in the test split must still have an output. Numbers sort numerically
    ("2" before "10"), text alphabetically.
    """
    unique = sorted(set(values.tolist()), key=_label_sort_key)
    index = {value: code for code, value in enumerate(unique)}
    codes = np.fromiter((index[value] for value in values.tolist()), dtype=np.int64, count=len(values))
    return codes, [str(value) for value in unique]


def _label_sort_key(value: Any) -> tuple[int, float, str]:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, math.nan, str(value))


def class_histogram(codes: npt.NDArray[np.int64], num_classes: int) -> list[int]:
    """Training-label counts per class, for `balanced` loss weights and imbalance diagnostics."""
    return [int(count) for count in np.bincount(codes, minlength=num_classes)]


def tensor_split(inputs: tuple[torch.Tensor, ...], target: torch.Tensor, rows: Indices) -> TensorDataset:
    """The rows of one split as a TensorDataset of (*inputs, target)."""
    index = torch.from_numpy(rows)
    return TensorDataset(*(tensor[index] for tensor in inputs), target[index])


def optional_split(dataset: TensorDataset) -> TensorDataset | None:
    """No validation dataset at all (rather than an empty one) when validationSplit is 0."""
    return dataset if len(dataset) else None
