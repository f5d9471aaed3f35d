"""The packaged trainer's data: `load_data(config)` turns `config.dataset` into a `DataBundle`.

Every loader returns TensorDatasets whose items are `(*inputs, target)`, splits the rows into a test split
that is the same for every seed and a validation split drawn with `config.seed`, fits whatever it fits
(scalers, categories, vocabulary) on the training split only, and raises `DataError` - naming the file, the
column and the fix - for data it cannot use. Nothing is downloaded: the built-in data ship with scikit-learn,
everything else is read from `dataset.path`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from trainsmart_trainer.config import DatasetName, TrainerConfig
from trainsmart_trainer.data.builtin import load_digits_bundle, load_synthetic_bundle
from trainsmart_trainer.data.common import TEST_FRACTION, DataBundle, DataError
from trainsmart_trainer.data.images import load_images_bundle
from trainsmart_trainer.data.ratings import load_ratings_bundle
from trainsmart_trainer.data.tabular import load_tabular_bundle
from trainsmart_trainer.data.text import load_text_bundle

__all__ = ["TEST_FRACTION", "DataBundle", "DataError", "load_data"]

_LOADERS: Final[dict[DatasetName, Callable[[TrainerConfig], DataBundle]]] = {
    DatasetName.DIGITS: load_digits_bundle,
    DatasetName.SYNTHETIC: load_synthetic_bundle,
    DatasetName.TABULAR_CSV: load_tabular_bundle,
    DatasetName.TEXT_CSV: load_text_bundle,
    DatasetName.IMAGES: load_images_bundle,
    DatasetName.RATINGS: load_ratings_bundle,
}


def load_data(config: TrainerConfig) -> DataBundle:
    """Load `config.dataset`, deterministically for a given `config.seed`."""
    return _LOADERS[config.dataset.name](config)
