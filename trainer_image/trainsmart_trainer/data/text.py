"""`text-csv`: short texts and a class label per row, turned into padded token-index sequences.

Tokenising: lower-case, split into runs of letters and digits (an inner apostrophe keeps "don't" whole),
drop scikit-learn's English stop words. The vocabulary is fitted on the training split only: tokens seen at
least `minFrequency` times, most frequent first, capped at `vocabSize` entries including the two reserved
ones (0 padding, 1 unknown). Sequences are truncated to `maxLength` tokens and right-padded with 0 to the
length of the longest training text when that is shorter, which saves compute on short texts.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import torch
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.data.common import (
    DataBundle,
    DataError,
    class_histogram,
    encode_labels,
    optional_split,
    split_rows,
    tensor_split,
)
from trainsmart_trainer.data.csvfile import is_missing, read_table

log = logging.getLogger(__name__)

PAD_INDEX: Final = 0
UNKNOWN_INDEX: Final = 1
PAD_WORD: Final = "<pad>"
UNKNOWN_WORD: Final = "<unk>"
DEFAULT_TEXT: Final = "text"
DEFAULT_TARGET: Final = "label"
DEFAULT_MAX_LENGTH: Final = 128
DEFAULT_VOCAB_SIZE: Final = 20_000
DEFAULT_MIN_FREQUENCY: Final = 2

_TOKEN: Final = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
_STOP_WORDS: Final = frozenset(ENGLISH_STOP_WORDS)


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without English stop words."""
    return [token for token in _TOKEN.findall(text.lower()) if token not in _STOP_WORDS]


def build_vocabulary(texts: Iterable[Sequence[str]], size: int, min_frequency: int) -> list[str]:
    """Index -> token: padding, unknown, then tokens seen >= min_frequency times, most frequent first.

    Ties are broken alphabetically so that the same training texts always give the same indices.
    """
    counts = Counter(token for tokens in texts for token in tokens)
    frequent = sorted(
        (token for token, count in counts.items() if count >= min_frequency),
        key=lambda token: (-counts[token], token),
    )
    return [PAD_WORD, UNKNOWN_WORD, *frequent[: max(0, size - 2)]]


def encode_texts(texts: Sequence[Sequence[str]], vocabulary: Sequence[str], length: int) -> torch.Tensor:
    """[N, length] token indices: unknown tokens -> 1, truncated to `length`, right-padded with 0."""
    index = {token: position for position, token in enumerate(vocabulary)}
    encoded = np.full((len(texts), length), PAD_INDEX, dtype=np.int64)
    for row, tokens in enumerate(texts):
        indices = [index.get(token, UNKNOWN_INDEX) for token in tokens[:length]]
        encoded[row, : len(indices)] = indices
    return torch.from_numpy(encoded)


def load_text_bundle(config: TrainerConfig) -> DataBundle:
    """Read, split (stratified by label), fit the vocabulary on the training texts, encode every split."""
    options = config.dataset
    assert options.path is not None  # the config requires a path for this dataset
    table = read_table(options.path)
    text_name = options.text_column or DEFAULT_TEXT
    target_name = options.target_column or DEFAULT_TARGET
    texts_raw = table.column(text_name, "textColumn")
    labels_raw = table.column(target_name, "targetColumn")
    keep = [row for row, label in enumerate(labels_raw) if not is_missing(label)]
    dropped = len(labels_raw) - len(keep)
    if dropped:
        log.warning("%s: dropped %d rows whose label column %r is empty", table.path, dropped, target_name)
    if not keep:
        raise DataError(f"{table.path}, column {target_name!r}: every label is missing; fill in the label column")
    labels, classes = encode_labels(np.array([labels_raw[row].strip() for row in keep], dtype=object))
    if len(classes) < 2:
        raise DataError(f"{table.path}, column {target_name!r}: only one class ({classes[0]!r}); add other labels")
    split = split_rows(len(keep), config.validation_split, config.seed, labels=labels, source=str(table.path))

    tokens = [tokenize(texts_raw[row]) for row in keep]
    train_tokens = [tokens[row] for row in split.train]
    min_frequency = options.min_frequency or DEFAULT_MIN_FREQUENCY
    vocabulary = build_vocabulary(train_tokens, options.vocab_size or DEFAULT_VOCAB_SIZE, min_frequency)
    if len(vocabulary) == 2:
        raise DataError(
            f"{table.path}, column {text_name!r}: no token occurs {min_frequency} times in the training texts "
            "(after stop-word removal); lower dataset.minFrequency or check that textColumn holds the text"
        )
    longest = max((len(text_tokens) for text_tokens in train_tokens), default=1)
    length = max(1, min(options.max_length or DEFAULT_MAX_LENGTH, longest))
    inputs = encode_texts(tokens, vocabulary, length)
    target = torch.from_numpy(labels)
    return DataBundle(
        name=options.name.value,
        task="classification",
        train=tensor_split((inputs,), target, split.train),
        val=optional_split(tensor_split((inputs,), target, split.val)),
        test=tensor_split((inputs,), target, split.test),
        input_shape=(length,),
        num_classes=len(classes),
        class_counts=class_histogram(labels[split.train], len(classes)),
        vocab_size=len(vocabulary),
        extras={
            "classes": classes,
            "vocabulary": vocabulary,
            "padding_index": PAD_INDEX,
            "unknown_index": UNKNOWN_INDEX,
            "max_length": length,
            "dropped_rows": dropped,
        },
    )
