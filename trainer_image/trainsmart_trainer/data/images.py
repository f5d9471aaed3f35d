"""`images`: labelled image arrays from an `.npz` file or MNIST-style IDX files, scaled to [0, 1].

Layouts read:
- `.npz` with `x_train`/`y_train` (and optionally `x_test`/`y_test`, as Keras' mnist.npz), or with a single
  pool under `images`/`labels` or `x`/`y`;
- a directory with `<prefix>-images-idx3-ubyte` and `<prefix>-labels-idx1-ubyte` pairs, optionally
  gzipped (`.gz`); the `t10k`/`test` pair is the test split, the other one the training pool.
Images are [N, H, W] (grey) or [N, C, H, W] / [N, H, W, C] with up to 4 channels. Integer pixels are divided
by 255 (or by the largest value when that exceeds 255); float pixels already in [0, 1] are kept. A test
split shipped with the data is used as is; otherwise one is held out like for every other dataset.
Training images get random shifts and light noise each time they are read (`augment`, default on).
"""

from __future__ import annotations

import gzip
import re
import struct
import zipfile
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional name
from torch.utils.data import TensorDataset

from trainsmart_trainer.config import ModelName, TrainerConfig
from trainsmart_trainer.data.common import (
    DataBundle,
    DataError,
    class_histogram,
    encode_labels,
    optional_split,
    split_rows,
    tensor_split,
)

_IDX_DTYPES: Final = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_NAME: Final = re.compile(r"^(?P<prefix>.+)-(?P<kind>images|labels)[-.]idx[13]-ubyte(?:\.gz)?$")
_NPZ_LAYOUTS: Final = (("x_train", "y_train"), ("images", "labels"), ("x", "y"))
NOISE_STD: Final = 0.05

Array = npt.NDArray[np.generic]


def read_idx(path: Path) -> Array:
    """An IDX file (magic 0,0,type,ndim; big-endian uint32 sizes; data) as an array, gunzipped if `.gz`."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (gzip.BadGzipFile, EOFError, PermissionError) as error:
        # Other OSErrors (a flaky network volume) stay retryable; these are the file's own fault.
        raise DataError(f"{path}: cannot read ({error}); re-copy the file or fix its permissions") from None
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number); provide MNIST-style idx3/idx1-ubyte files")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: IDX header is truncated; re-copy the file")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header promises {expected} bytes of data for shape {shape}, found {len(raw) - header}; "
            "the file is truncated or corrupt, re-copy it"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def _idx_pairs(directory: Path) -> tuple[tuple[Array, Array, str], tuple[Array, Array, str] | None]:
    """(train pool, optional test) as (images, labels, description) from the IDX files in a directory."""
    pairs: dict[str, dict[str, Path]] = {}
    for file in sorted(directory.iterdir()):
        match = _IDX_NAME.match(file.name)
        if match and file.is_file():
            pairs.setdefault(match["prefix"], {})[match["kind"]] = file
    incomplete = sorted(prefix for prefix, files in pairs.items() if len(files) < 2)
    if incomplete:
        raise DataError(
            f"{directory}: {incomplete[0]}-images/-labels IDX files come in pairs and one is missing; add it"
        )
    tests = [prefix for prefix in pairs if prefix in {"t10k", "test"}]
    trains = [prefix for prefix in pairs if prefix not in tests]
    if len(trains) != 1 or len(tests) > 1:
        raise DataError(
            f"{directory}: expected one training pair (e.g. train-images-idx3-ubyte + train-labels-idx1-ubyte) and "
            f"at most one t10k/test pair, found prefixes {sorted(pairs) or 'none'}; set dataset.path to a directory "
            "with exactly those, or to an .npz file"
        )

    def load(prefix: str) -> tuple[Array, Array, str]:
        files = pairs[prefix]
        return read_idx(files["images"]), read_idx(files["labels"]), str(files["images"])

    return load(trains[0]), (load(tests[0]) if tests else None)


def _npz_arrays(path: Path) -> tuple[tuple[Array, Array, str], tuple[Array, Array, str] | None]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise DataError(f"{path}: not a readable .npz file ({error}); save it with numpy.savez") from None
    for images_key, labels_key in _NPZ_LAYOUTS:
        if images_key in arrays and labels_key in arrays:
            pool = (arrays[images_key], arrays[labels_key], f"{path} [{images_key}]")
            if images_key == "x_train" and "x_test" in arrays and "y_test" in arrays:
                return pool, (arrays["x_test"], arrays["y_test"], f"{path} [x_test]")
            return pool, None
    raise DataError(
        f"{path}: arrays {sorted(arrays)} found; expected x_train/y_train (optionally x_test/y_test), images/labels "
        "or x/y; rename the arrays when saving"
    )


def _channels_first(images: Array, source: str) -> Array:
    """[N, C, H, W] from [N, H, W], [N, C, H, W] or [N, H, W, C] (C <= 4)."""
    if images.ndim == 3:
        return images[:, None]
    if images.ndim == 4:
        first, last = images.shape[1] <= 4, images.shape[3] <= 4
        if last and not first:
            return np.moveaxis(images, 3, 1)
        if first and not last:
            return images
    raise DataError(
        f"{source}: image array of shape {images.shape} is not [N, H, W], [N, C, H, W] or [N, H, W, C] with at most "
        "4 channels; reshape it before saving"
    )


def _as_float(images: Array, reference: float) -> torch.Tensor:
    scale = 1.0 if reference <= 1.0 else 255.0 if reference <= 255.0 else reference
    return torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32) / np.float32(scale))


def _check_pair(images: Array, labels: Array, source: str) -> Array:
    labels = labels.reshape(len(labels), -1)
    if labels.shape[1] != 1:
        raise DataError(f"{source}: labels must hold one class per image, got shape {labels.shape}; save a 1-D array")
    if len(labels) != len(images):
        raise DataError(f"{source}: {len(images)} images but {len(labels)} labels; the two arrays must match")
    if not np.issubdtype(images.dtype, np.number):
        raise DataError(f"{source}: images have non-numeric dtype {images.dtype}; save pixel values as numbers")
    return labels[:, 0]


class AugmentedImages(TensorDataset):
    """Training images that come out randomly shifted (zero fill) and noised on every read.

    Randomness comes from torch's global generator, which the DataLoader seeds per worker, so workers do not
    repeat each other's augmentations. `__getitems__` augments a whole batch at once for speed.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, flat: bool, noise: float = NOISE_STD) -> None:
        super().__init__(images, labels)
        self.flat = flat
        self.noise = noise
        self.max_shift = max(1, round(min(images.shape[-2:]) / 10))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, ...]]:
        images, labels = self.tensors[0][indices], self.tensors[1][indices]
        batch, _, height, width = images.shape
        margin = self.max_shift
        padded = F.pad(images, (margin, margin, margin, margin))
        shift_down = torch.randint(0, 2 * margin + 1, (batch, 1))
        shift_right = torch.randint(0, 2 * margin + 1, (batch, 1))
        rows = (torch.arange(height) + shift_down)[:, :, None]
        cols = (torch.arange(width) + shift_right)[:, None, :]
        shifted = padded[torch.arange(batch)[:, None, None], :, rows, cols].permute(0, 3, 1, 2)
        noised = (shifted + self.noise * torch.randn_like(shifted)).clamp_(0.0, 1.0)
        augmented = noised.flatten(1) if self.flat else noised
        return list(zip(augmented, labels, strict=True))


def load_images_bundle(config: TrainerConfig) -> DataBundle:
    """Read the arrays, hold out test (unless shipped) and val, scale, optionally resize, augment train."""
    options = config.dataset
    assert options.path is not None  # the config requires a path for this dataset
    path = Path(options.path)
    if path.is_dir():
        pool, shipped_test = _idx_pairs(path)
    elif path.is_file() and path.suffix == ".npz":
        pool, shipped_test = _npz_arrays(path)
    elif path.exists():
        raise DataError(f"{path}: not an .npz file or a directory of IDX files; set dataset.path to one of those")
    else:
        raise DataError(f"{path}: no such file or directory; check dataset.path and the volume mounts")

    parts = [pool] + ([shipped_test] if shipped_test else [])
    images = [_channels_first(part[0], part[2]) for part in parts]
    labels_raw = [_check_pair(image, part[1], part[2]) for image, part in zip(images, parts, strict=True)]
    if len({image.shape[1:] for image in images}) > 1:
        raise DataError(
            f"{parts[1][2]}: test images are {images[1].shape[1:]}, training {images[0].shape[1:]}; match them"
        )
    codes, classes = encode_labels(np.concatenate(labels_raw))
    pool_codes = codes[: len(labels_raw[0])]
    split = split_rows(
        len(pool_codes),
        config.validation_split,
        config.seed,
        labels=pool_codes,
        source=pool[2],
        has_test=shipped_test is None,
    )
    reference = float(images[0][split.train].max()) if len(split.train) else 1.0
    tensors = [_as_float(image, reference) for image in images]
    if options.image_size is not None:
        size = (options.image_size, options.image_size)
        tensors = [
            F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False) for tensor in tensors
        ]
    all_images = torch.cat(tensors)
    labels = torch.from_numpy(codes)
    if shipped_test is not None:
        test_rows = np.arange(len(pool_codes), len(codes), dtype=np.int64)
        split = type(split)(train=split.train, val=split.val, test=test_rows)
    flat = config.model.name == ModelName.MLP
    shown = all_images.flatten(1) if flat else all_images
    train_rows = torch.from_numpy(split.train)
    augment = True if options.augment is None else options.augment
    train = (
        AugmentedImages(all_images[train_rows], labels[train_rows], flat=flat)
        if augment
        else tensor_split((shown,), labels, split.train)
    )
    return DataBundle(
        name=options.name.value,
        task="classification",
        train=train,
        val=optional_split(tensor_split((shown,), labels, split.val)),
        test=tensor_split((shown,), labels, split.test),
        input_shape=tuple(shown.shape[1:]),
        num_classes=len(classes),
        class_counts=class_histogram(pool_codes[split.train], len(classes)),
        extras={"classes": classes, "image_shape": tuple(all_images.shape[1:]), "augment": augment},
    )
