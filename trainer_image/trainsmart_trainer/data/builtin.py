"""Datasets that need no files: scikit-learn's bundled digits, and generated classification/regression data."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import torch
from sklearn.datasets import load_digits, make_classification, make_regression

from trainsmart_trainer.config import ModelName, Task, TrainerConfig
from trainsmart_trainer.data.common import (
    DataBundle,
    DataError,
    class_histogram,
    optional_split,
    split_rows,
    tensor_split,
)

# The generated data set is the same for every config.seed (only the validation rows move with the seed), so
# trials of a sweep that vary the seed compete on the same problem.
_GENERATION_SEED: Final = 7_919
_DEFAULT_SAMPLES: Final = 10_000
_DEFAULT_FEATURES: Final = 20
_DEFAULT_NOISE: Final = 0.01


def load_digits_bundle(config: TrainerConfig) -> DataBundle:
    """1,797 8x8 digit images in [0, 1]: [1, 8, 8] for convolutional models, 64 flat values for the mlp."""
    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels_np = digits.target.astype(np.int64)
    flat = config.model.name == ModelName.MLP
    inputs = images.flatten(1) if flat else images
    split = split_rows(
        len(labels_np), config.validation_split, config.seed, labels=labels_np, source="built-in digits data"
    )
    labels = torch.from_numpy(labels_np)
    return DataBundle(
        name=config.dataset.name.value,
        task="classification",
        train=tensor_split((inputs,), labels, split.train),
        val=optional_split(tensor_split((inputs,), labels, split.val)),
        test=tensor_split((inputs,), labels, split.test),
        input_shape=tuple(inputs.shape[1:]),
        num_classes=10,
        class_counts=class_histogram(labels_np[split.train], 10),
        extras={"classes": [str(digit) for digit in range(10)]},
    )


def load_synthetic_bundle(config: TrainerConfig) -> DataBundle:
    """Generated tabular data: sklearn's make_classification / make_regression, standardised features.

    `noise` is the fraction of labels drawn at random (classification) or the noise standard deviation
    relative to the clean target's (regression); `imbalance` is the ratio of the largest to the smallest
    class, with the class shares falling off geometrically in between.
    """
    options = config.dataset
    samples = options.num_samples or _DEFAULT_SAMPLES
    features = options.num_features or _DEFAULT_FEATURES
    noise = _DEFAULT_NOISE if options.noise is None else options.noise
    if options.task == Task.REGRESSION:
        features_matrix, targets = _make_regression(samples, features, noise)
        return _bundle(config, features_matrix, targets.astype(np.float32), None)
    classes = options.num_classes or 2
    informative = min(features, max(2, math.ceil(math.log2(classes)), round(0.6 * features)))
    if 2**informative < classes:
        raise DataError(
            f"synthetic data: {features} features cannot separate {classes} classes; set dataset.numFeatures to at "
            f"least {math.ceil(math.log2(classes))} or lower dataset.numClasses"
        )
    ratio = options.imbalance or 1.0
    shares = np.array([ratio ** (-label / (classes - 1)) for label in range(classes)])
    features_matrix, labels = make_classification(
        n_samples=samples,
        n_features=features,
        n_informative=informative,
        n_redundant=min(features - informative, features // 5),
        n_classes=classes,
        n_clusters_per_class=1,
        weights=(shares / shares.sum()).tolist(),
        flip_y=noise,
        class_sep=1.0,
        random_state=_GENERATION_SEED,
    )
    return _bundle(config, features_matrix, labels.astype(np.int64), classes)


def _make_regression(samples: int, features: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    features_matrix, clean = make_regression(
        n_samples=samples,
        n_features=features,
        n_informative=max(1, round(0.6 * features)),
        random_state=_GENERATION_SEED,
    )
    scale = float(clean.std()) or 1.0
    rng = np.random.default_rng(_GENERATION_SEED)
    targets = clean / scale + rng.normal(0.0, noise, size=samples)
    return features_matrix, targets


def _bundle(config: TrainerConfig, features: np.ndarray, targets: np.ndarray, classes: int | None) -> DataBundle:
    labels = targets if classes is not None else None
    split = split_rows(len(targets), config.validation_split, config.seed, labels=labels, source="synthetic data")
    mean = features[split.train].mean(axis=0)
    std = features[split.train].std(axis=0)
    std[std == 0] = 1.0
    inputs = torch.from_numpy(((features - mean) / std).astype(np.float32))
    target = torch.from_numpy(targets)
    extras: dict[str, object] = {"scaler_mean": mean.tolist(), "scaler_std": std.tolist()}
    if classes is None:
        train_targets = targets[split.train]
        extras |= {"target_mean": float(train_targets.mean()), "target_std": float(train_targets.std()) or 1.0}
    else:
        extras["classes"] = [str(label) for label in range(classes)]
    return DataBundle(
        name=config.dataset.name.value,
        task="classification" if classes is not None else "regression",
        train=tensor_split((inputs,), target, split.train),
        val=optional_split(tensor_split((inputs,), target, split.val)),
        test=tensor_split((inputs,), target, split.test),
        input_shape=(features.shape[1],),
        num_classes=classes,
        class_counts=None if classes is None else class_histogram(targets[split.train].astype(np.int64), classes),
        extras=extras,
    )
