"""`ratings`: user-item ratings for recommendation, in MovieLens layouts.

- `u.data` (MovieLens 100k): no header, tab-separated `user item rating timestamp`;
- `ratings.csv` (MovieLens latest): a header with `userId,movieId,rating,timestamp`, or other column names
  given by userColumn / itemColumn / ratingColumn.
User and item ids (numbers or text) are remapped to contiguous indices in sorted id order; the original ids
are kept in `extras`. The split is per user: a fifth of each user's ratings is the (seed-independent) test
split and validationSplit of the rest is validation, while every user keeps at least one training rating,
so that each held-out rating belongs to a user the model has seen. Rows with a missing user, item or rating
are dropped and counted in `extras["dropped_rows"]`.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import TensorDataset

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.data.common import (
    TEST_FRACTION,
    TEST_SPLIT_SEED,
    DataBundle,
    DataError,
    encode_labels,
)
from trainsmart_trainer.data.csvfile import Table, existing_file, is_missing, is_number, read_table

log = logging.getLogger(__name__)

DEFAULT_USER: Final = "userId"
DEFAULT_ITEM: Final = "movieId"
DEFAULT_RATING: Final = "rating"
_FIELD_NAMES: Final = ("user (field 1)", "item (field 2)", "rating (field 3)")

Bools = npt.NDArray[np.bool_]


def _read_u_data(config: TrainerConfig, path: str) -> tuple[list[str], list[str], list[str], list[int]]:
    """Headerless whitespace-separated `user item rating [timestamp]` rows, with their line numbers."""
    options = config.dataset
    if options.user_column or options.item_column or options.rating_column:
        raise DataError(
            f"{path}: the file has no header row (u.data layout), so there are no column names to select; remove "
            "dataset.userColumn/itemColumn/ratingColumn or add a header row"
        )
    users: list[str] = []
    items: list[str] = []
    ratings: list[str] = []
    lines: list[int] = []
    with existing_file(path).open(encoding="utf-8-sig") as stream:
        for number, line in enumerate(stream, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) not in (3, 4):
                raise DataError(
                    f"{path}, line {number}: {len(fields)} fields; u.data rows are `user item rating timestamp`, "
                    "separated by tabs"
                )
            users.append(fields[0])
            items.append(fields[1])
            ratings.append(fields[2])
            lines.append(number)
    return users, items, ratings, lines


def _headerless(path: str) -> bool:
    """A u.data-style file: its first line is three or four numbers, not column names."""
    with existing_file(path).open(encoding="utf-8-sig", errors="replace") as stream:
        first = stream.readline().split()
    return len(first) in (3, 4) and all(is_number(field) for field in first)


def per_user_holdout(users: npt.NDArray[np.int64], fraction: float, rng: np.random.Generator) -> Bools:
    """Mark round(fraction * n_u) random ratings of each user u, never all of them (one stays for training)."""
    rows = len(users)
    order = np.lexsort((rng.random(rows), users))
    grouped = users[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    counts = np.diff(np.r_[starts, rows])
    rank = np.arange(rows) - np.repeat(starts, counts)
    quota = np.minimum(np.floor(fraction * counts + 0.5), counts - 1)
    chosen = np.zeros(rows, dtype=np.bool_)
    chosen[order] = rank < np.repeat(quota, counts)
    return chosen


def load_ratings_bundle(config: TrainerConfig) -> DataBundle:
    """Read either layout, remap ids, split per user, and package (user, item, rating) TensorDatasets."""
    options = config.dataset
    assert options.path is not None  # the config requires a path for this dataset
    path = options.path
    if _headerless(path):
        user_raw, item_raw, rating_raw, lines = _read_u_data(config, path)
        names = _FIELD_NAMES
        table = Table(existing_file(path), list(names), [], lines)
    else:
        table = read_table(path)
        names = (
            options.user_column or DEFAULT_USER,
            options.item_column or DEFAULT_ITEM,
            options.rating_column or DEFAULT_RATING,
        )
        user_raw = table.column(names[0], "userColumn")
        item_raw = table.column(names[1], "itemColumn")
        rating_raw = table.column(names[2], "ratingColumn")
    present = [
        row
        for row in range(len(rating_raw))
        if not (is_missing(user_raw[row]) or is_missing(item_raw[row]) or is_missing(rating_raw[row]))
    ]
    dropped = len(rating_raw) - len(present)
    if dropped:
        log.warning("%s: dropped %d rows with a missing user, item or rating", table.path, dropped)
    if not present:
        raise DataError(f"{table.path}: no row has a user, an item and a rating; fill in those columns")
    kept = Table(table.path, table.header, [], [table.lines[row] for row in present])
    ratings = kept.numbers(names[2], [rating_raw[row] for row in present], "ratings must be numbers, e.g. 1-5")
    users, user_ids = encode_labels(np.array([user_raw[row].strip() for row in present], dtype=object))
    items, item_ids = encode_labels(np.array([item_raw[row].strip() for row in present], dtype=object))

    test = per_user_holdout(users, TEST_FRACTION, np.random.default_rng(TEST_SPLIT_SEED))
    pool = np.flatnonzero(~test)
    val = np.zeros(len(users), dtype=np.bool_)
    val[pool] = per_user_holdout(users[pool], config.validation_split, np.random.default_rng(config.seed))
    train = ~test & ~val
    if not test.any() or (config.validation_split > 0 and not val.any()):
        raise DataError(
            f"{table.path}: {len(present)} ratings are too few to hold out test and validation ratings per user; "
            "users need at least 2 ratings (3 with validationSplit > 0) - add ratings or lower validationSplit"
        )
    low, high = float(ratings.min()), float(ratings.max())
    threshold = options.relevance_threshold
    extras: dict[str, Any] = {
        "rating_mean": float(ratings[train].mean()),
        "rating_min": low,
        "rating_max": high,
        "relevance_threshold": low + 0.75 * (high - low) if threshold is None else threshold,
        "user_ids": user_ids,
        "item_ids": item_ids,
        "dropped_rows": dropped,
    }
    tensors = (torch.from_numpy(users), torch.from_numpy(items), torch.from_numpy(ratings.astype(np.float32)))

    def subset(mask: Bools) -> TensorDataset:
        rows = torch.from_numpy(np.flatnonzero(mask))
        return TensorDataset(*(tensor[rows] for tensor in tensors))

    return DataBundle(
        name=options.name.value,
        task="ratings",
        train=subset(train),
        val=subset(val) if val.any() else None,
        test=subset(test),
        input_shape=(),
        num_users=len(user_ids),
        num_items=len(item_ids),
        extras=extras,
    )
