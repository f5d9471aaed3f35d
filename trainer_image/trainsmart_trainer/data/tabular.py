"""`tabular-csv`: a CSV table of numeric and categorical columns and one target column.

Every statistic is fitted on the training split only, then applied unchanged to val and test, so the
validation and test metrics are honest estimates for data the model never saw:
- numeric columns are standardised with the training mean and standard deviation (a constant column
  keeps scale 1);
- non-numeric columns become one-hot vectors over the categories seen in training; a category first seen in
  val or test encodes as all zeros, like a missing one;
- missing cells (empty, NA, N/A, NaN, null, None, ?) are imputed with the training mean (0 after scaling)
  for numeric columns and all zeros for categorical ones; rows whose target is missing are dropped and
  counted in `extras["dropped_rows"]`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from trainsmart_trainer.config import Task, TrainerConfig
from trainsmart_trainer.data.common import (
    DataBundle,
    DataError,
    Indices,
    class_histogram,
    encode_labels,
    optional_split,
    split_rows,
    tensor_split,
)
from trainsmart_trainer.data.csvfile import Table, is_missing, is_number, read_table

log = logging.getLogger(__name__)

DEFAULT_TARGET: Final = "label"
# A text column whose values are nearly all distinct (names, ids, free text) would explode into one one-hot
# feature per row and teach the model nothing; refuse it and say how to leave it out.
_MAX_DISTINCT_SHARE: Final = 0.5
_MIN_DISTINCT_TO_REFUSE: Final = 50


@dataclass(frozen=True)
class ColumnEncoding:
    """How one input column becomes features: standardised number, or one-hot over training categories."""

    name: str
    mean: float | None = None
    std: float | None = None
    categories: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        return self.mean is not None

    @property
    def feature_names(self) -> list[str]:
        return [self.name] if self.numeric else [f"{self.name}={category}" for category in self.categories]


def load_tabular_bundle(config: TrainerConfig) -> DataBundle:
    """Load, split, then fit the feature encodings on the training rows and encode every split with them."""
    options = config.dataset
    assert options.path is not None  # the config requires a path for this dataset
    table = read_table(options.path)
    target_name = options.target_column or DEFAULT_TARGET
    raw_target = table.column(target_name, "targetColumn")
    feature_names = options.feature_columns or [name for name in table.header if name != target_name]
    if target_name in feature_names:
        raise DataError(f"{table.path}: column {target_name!r} is the target; remove it from dataset.featureColumns")
    if not feature_names:
        raise DataError(f"{table.path}: no feature columns besides target {target_name!r}; add input columns")
    raw_features = {name: table.column(name, "featureColumns") for name in feature_names}

    keep = np.array([not is_missing(value) for value in raw_target], dtype=np.bool_)
    dropped = int((~keep).sum())
    if dropped:
        log.warning("%s: dropped %d rows whose target column %r is empty", table.path, dropped, target_name)
    rows = np.flatnonzero(keep)
    if len(rows) == 0:
        raise DataError(f"{table.path}, column {target_name!r}: every value is missing; fill in the target column")
    regression = options.task == Task.REGRESSION
    target_values = [raw_target[row].strip() for row in rows]
    labels, target, classes = _target(table, target_name, target_values, rows, regression)
    split = split_rows(len(rows), config.validation_split, config.seed, labels=labels, source=str(table.path))

    encodings = [
        fit_column(table, name, [raw_features[name][row] for row in rows], split.train) for name in feature_names
    ]
    matrix = np.concatenate(
        [encode_column(encoding, [raw_features[encoding.name][row] for row in rows]) for encoding in encodings], axis=1
    )
    inputs = torch.from_numpy(matrix.astype(np.float32))
    extras: dict[str, Any] = {
        "feature_names": [feature for encoding in encodings for feature in encoding.feature_names],
        "scaler_mean": {encoding.name: encoding.mean for encoding in encodings if encoding.numeric},
        "scaler_std": {encoding.name: encoding.std for encoding in encodings if encoding.numeric},
        "categories": {encoding.name: list(encoding.categories) for encoding in encodings if not encoding.numeric},
        "dropped_rows": dropped,
    }
    if regression:
        train_target = target[torch.from_numpy(split.train)]
        extras |= {
            "target_mean": float(train_target.mean()),
            "target_std": float(train_target.std(correction=0)) or 1.0,
        }
    else:
        extras["classes"] = classes
    return DataBundle(
        name=options.name.value,
        task="regression" if regression else "classification",
        train=tensor_split((inputs,), target, split.train),
        val=optional_split(tensor_split((inputs,), target, split.val)),
        test=tensor_split((inputs,), target, split.test),
        input_shape=(matrix.shape[1],),
        num_classes=None if regression else len(classes),
        class_counts=None if labels is None else class_histogram(labels[split.train], len(classes)),
        extras=extras,
    )


def _target(
    table: Table, name: str, values: list[str], rows: Indices, regression: bool
) -> tuple[npt.NDArray[np.int64] | None, torch.Tensor, list[str]]:
    """(class codes or None, target tensor, class names) for the kept rows."""
    if regression:
        kept = Table(table.path, table.header, [], [table.lines[row] for row in rows])
        numbers = kept.numbers(name, values, "task regression needs a numeric target; fix the value")
        return None, torch.from_numpy(numbers.astype(np.float32)), []
    codes, classes = encode_labels(np.array(values, dtype=object))
    if len(classes) > 100 and all(is_number(value) for value in classes):
        raise DataError(
            f"{table.path}, column {name!r}: {len(classes)} distinct numeric labels look like a number to predict; "
            "set dataset.task: regression, or use a column of class labels"
        )
    if len(classes) < 2:
        raise DataError(f"{table.path}, column {name!r}: only one class ({classes[0]!r}); classification needs two")
    return codes, torch.from_numpy(codes), classes


def fit_column(table: Table, name: str, values: list[str], train: Indices) -> ColumnEncoding:
    """Decide numeric vs categorical from the column's values, then fit statistics on the training rows only.

    A column is numeric when every present value parses as a number. When most do but some do not, that
    is almost always a data error ("1,200", "12 kg"), not a category, so it is reported rather than guessed.
    """
    present = [(row, value.strip()) for row, value in enumerate(values) if not is_missing(value)]
    non_numbers = [(row, value) for row, value in present if not is_number(value)]
    if not non_numbers:
        numbers = np.array([float(values[row]) if not is_missing(values[row]) else np.nan for row in train])
        observed = numbers[~np.isnan(numbers)]
        mean = float(observed.mean()) if len(observed) else 0.0
        std = float(observed.std()) if len(observed) else 1.0
        return ColumnEncoding(name=name, mean=mean, std=std if std > 0 else 1.0)
    if len(non_numbers) < len(present) / 2:
        row, value = non_numbers[0]
        raise DataError(
            f"{table.path}, line {table.lines[row]}, column {name!r}: {value!r} is not a number although most of the "
            "column is numeric; fix the value, leave the cell empty if it is unknown, or drop the column from "
            "dataset.featureColumns"
        )
    categories = sorted({values[row].strip() for row in train if not is_missing(values[row])})
    if len(categories) >= _MIN_DISTINCT_TO_REFUSE and len(categories) > _MAX_DISTINCT_SHARE * len(train):
        raise DataError(
            f"{table.path}, column {name!r}: {len(categories)} distinct text values in {len(train)} training rows, "
            "too many to one-hot (an id or free text?); list the useful columns in dataset.featureColumns"
        )
    return ColumnEncoding(name=name, categories=tuple(categories))


def encode_column(encoding: ColumnEncoding, values: list[str]) -> npt.NDArray[np.float64]:
    """Features for every row: a scaled number (missing -> training mean -> 0), or a one-hot block."""
    if encoding.numeric:
        assert encoding.mean is not None and encoding.std is not None
        column = np.array([np.nan if is_missing(value) else float(value) for value in values])
        scaled = (column - encoding.mean) / encoding.std
        return np.nan_to_num(scaled, nan=0.0).reshape(-1, 1)
    position = {category: index for index, category in enumerate(encoding.categories)}
    block = np.zeros((len(values), len(encoding.categories)))
    for row, value in enumerate(values):
        index = position.get(value.strip())
        if index is not None:
            block[row, index] = 1.0
    return block
