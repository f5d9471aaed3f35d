"""The trainer's file-based data beyond tables: text, image arrays and ratings, written tiny into tmp_path.

Pins:
- text-csv: lower-casing, scikit-learn's English stop words removed, vocabulary from the training texts only
  with a minimum frequency and a size cap (0 padding, 1 unknown), truncation/padding to maxLength;
- images: IDX files (plain and gzipped, with their t10k test pair) and .npz layouts parse to [N, C, H, W]
  in [0, 1]; flat for mlp; resizing; training images augmented on each read, val/test never;
  corrupt IDX files and mismatched arrays are DataErrors naming the file;
- ratings: u.data and ratings.csv layouts, ids remapped to contiguous indices, a per-user split that keeps
  every held-out user in training, the default relevance threshold; bad columns and values are DataErrors.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.data import DataBundle, DataError, load_data
from trainsmart_trainer.data.common import encode_labels, split_rows
from trainsmart_trainer.data.images import AugmentedImages, read_idx
from trainsmart_trainer.data.ratings import per_user_holdout
from trainsmart_trainer.data.text import build_vocabulary, encode_texts, tokenize


def tensors(dataset: object) -> tuple[torch.Tensor, ...]:
    assert isinstance(dataset, TensorDataset)
    return dataset.tensors


def load(**fields: Any) -> DataBundle:
    return load_data(TrainerConfig.model_validate(fields))


# --- text-csv ------------------------------------------------------------------------------------------


def test_tokenize_lower_cases_and_drops_english_stop_words() -> None:
    assert tokenize("The Movie was NOT good, and I didn't like it... 10/10!") == [
        "movie",
        "good",
        "didn't",
        "like",
        "10",
        "10",
    ]


def test_vocabulary_keeps_frequent_training_tokens_most_frequent_first() -> None:
    texts = [["b", "a", "b", "c"], ["a", "b", "d"], ["c"]]
    assert build_vocabulary(texts, size=100, min_frequency=2) == ["<pad>", "<unk>", "b", "a", "c"]
    assert build_vocabulary(texts, size=3, min_frequency=1) == ["<pad>", "<unk>", "b"]


def test_texts_are_truncated_and_right_padded() -> None:
    vocabulary = ["<pad>", "<unk>", "good", "film"]
    encoded = encode_texts([["good", "film", "good"], ["odd"], []], vocabulary, length=2)
    assert encoded.tolist() == [[2, 3], [1, 0], [0, 0]]


def write_reviews(path: Path, rows: list[tuple[str, str]]) -> str:
    path.write_text("text,label\n" + "".join(f'"{text}",{label}\n' for text, label in rows))
    return str(path)


def test_text_csv_fits_the_vocabulary_on_training_texts_only(tmp_path: Path) -> None:
    labels = ["pos", "neg"] * 20
    test_rows = set(
        split_rows(40, 0.2, seed=0, labels=encode_labels(np.array(labels, dtype=object))[0], source="t").test
    )
    rows = [
        (
            ("secretword secretword " if row in test_rows else "") + ("great fun" if label == "pos" else "dull plot"),
            label,
        )
        for row, label in enumerate(labels)
    ]
    rows[0] = ("great fun and the rare " + "filler " * 30, "pos")
    data = load(
        model={"name": "lstm"},
        dataset={"name": "text-csv", "path": write_reviews(tmp_path / "r.csv", rows), "maxLength": 8},
    )
    vocabulary = data.extras["vocabulary"]
    assert vocabulary[:2] == ["<pad>", "<unk>"]
    assert {"great", "fun", "dull", "plot"} <= set(vocabulary)
    assert "secretword" not in vocabulary and "rare" not in vocabulary and "the" not in vocabulary
    assert (data.vocab_size, data.input_shape, data.num_classes) == (len(vocabulary), (8,), 2)
    test_tokens, _ = tensors(data.test)
    assert int((test_tokens == 1).sum()) >= 2 * len(test_rows)  # secretword is unknown twice in every test text


def test_text_csv_pads_to_the_longest_training_text_when_shorter_than_max_length(tmp_path: Path) -> None:
    rows = [("good film" if i % 2 else "bad film", str(i % 2)) for i in range(20)]
    data = load(model={"name": "lstm"}, dataset={"name": "text-csv", "path": write_reviews(tmp_path / "r.csv", rows)})
    assert data.input_shape == (2,)


def test_min_frequency_is_configurable(tmp_path: Path) -> None:
    rows = [(f"common{i % 2} once{i}", str(i % 2)) for i in range(20)]
    path = write_reviews(tmp_path / "r.csv", rows)
    assert load(model={"name": "lstm"}, dataset={"name": "text-csv", "path": path}).vocab_size == 4
    every = load(model={"name": "lstm"}, dataset={"name": "text-csv", "path": path, "minFrequency": 1})
    assert every.vocab_size == 4 + len(every.train)  # each training text adds its own once<i> token


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        ("body,label\nhi,1\n", {}, r"r.csv: no column 'text' \(columns: 'body', 'label'\); set dataset.textColumn"),
        ("text,stars\nhi,1\n", {}, r"r.csv: no column 'label' .*set dataset.targetColumn"),
        (
            "text,label\n" + "".join(f"w{i},{i % 2}\n" for i in range(10)),
            {},
            r"r.csv, column 'text': no token occurs 2 times .*minFrequency",
        ),
        ("text,label\n" + "good,1\n" * 5, {}, r"r.csv, column 'label': only one class"),
    ],
)
def test_bad_text_files_name_the_file_the_column_and_the_fix(
    tmp_path: Path, content: str, options: dict[str, Any], expected: str
) -> None:
    path = tmp_path / "r.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=expected):
        load(model={"name": "lstm"}, dataset={"name": "text-csv", "path": str(path), **options})


# --- images --------------------------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, *, zipped: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if zipped else raw)


def digit_like(count: int, size: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 60, (count, size, size))
    images[:, 2:-2, 2:-2] += 60 * labels[:, None, None]
    return images.astype(np.uint8), labels.astype(np.uint8)


def test_read_idx_parses_header_and_data(tmp_path: Path) -> None:
    images, labels = digit_like(5)
    write_idx(tmp_path / "x-images-idx3-ubyte.gz", images, zipped=True)
    write_idx(tmp_path / "x-labels-idx1-ubyte", labels)
    assert np.array_equal(read_idx(tmp_path / "x-images-idx3-ubyte.gz"), images)
    assert np.array_equal(read_idx(tmp_path / "x-labels-idx1-ubyte"), labels)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"\x00\x00\x99\x01\x00\x00\x00\x01\x05", "not an IDX file"),
        (bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 4, 4) + bytes(10), "header promises 32 bytes .*found 10"),
    ],
)
def test_corrupt_idx_files_are_data_errors(tmp_path: Path, raw: bytes, expected: str) -> None:
    path = tmp_path / "bad-images-idx3-ubyte"
    path.write_bytes(raw)
    with pytest.raises(DataError, match=f"bad-images-idx3-ubyte: {expected}"):
        read_idx(path)


def write_mnist_dir(directory: Path) -> None:
    train, train_labels = digit_like(30)
    test, test_labels = digit_like(9, seed=1)
    write_idx(directory / "train-images-idx3-ubyte.gz", train, zipped=True)
    write_idx(directory / "train-labels-idx1-ubyte.gz", train_labels, zipped=True)
    write_idx(directory / "t10k-images-idx3-ubyte", test)
    write_idx(directory / "t10k-labels-idx1-ubyte", test_labels)


def test_an_idx_directory_uses_its_t10k_pair_as_the_test_split(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path)
    data = load(model={"name": "cnn"}, dataset={"name": "images", "path": str(tmp_path), "augment": False})
    assert (len(data.test), len(data.train) + len(data.val or [])) == (9, 30)
    assert (data.input_shape, data.num_classes, data.extras["classes"]) == ((1, 8, 8), 3, ["0", "1", "2"])
    test_images, test_labels = tensors(data.test)
    expected, expected_labels = digit_like(9, seed=1)
    assert torch.allclose(test_images[:, 0], torch.from_numpy(expected / 255.0).float())
    assert test_labels.tolist() == expected_labels.tolist()


def test_images_are_flat_for_the_mlp_and_resized_on_request(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path)
    flat = load(dataset={"name": "images", "path": str(tmp_path)})
    assert flat.input_shape == (64,) and tuple(flat.train[0][0].shape) == (64,)
    resized = load(model={"name": "cnn"}, dataset={"name": "images", "path": str(tmp_path), "imageSize": 16})
    assert resized.input_shape == (1, 16, 16)


def test_training_images_are_augmented_on_each_read_and_evaluation_images_never(tmp_path: Path) -> None:
    write_mnist_dir(tmp_path)
    data = load(model={"name": "cnn"}, dataset={"name": "images", "path": str(tmp_path)})
    assert isinstance(data.train, AugmentedImages)
    torch.manual_seed(0)
    first, again = data.train[0][0], data.train[0][0]
    assert first.shape == (1, 8, 8) and not torch.equal(first, again)
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0
    batch = data.train.__getitems__([0, 1, 2])
    assert [tuple(image.shape) for image, _ in batch] == [(1, 8, 8)] * 3
    assert [int(label) for _, label in batch] == tensors(data.train)[1][:3].tolist()
    assert torch.equal(data.test[0][0], data.test[0][0])


def test_npz_files_in_keras_and_single_pool_layouts(tmp_path: Path) -> None:
    images, labels = digit_like(30, size=10)
    np.savez(tmp_path / "keras.npz", x_train=images, y_train=labels, x_test=images[:6], y_test=labels[:6])
    keras = load(model={"name": "resnet"}, dataset={"name": "images", "path": str(tmp_path / "keras.npz")})
    assert (len(keras.test), keras.input_shape) == (6, (1, 10, 10))
    rgb = np.repeat(images[..., None], 3, axis=3)  # channels last
    np.savez(tmp_path / "pool.npz", images=rgb, labels=labels.astype(np.int64))
    pool = load(model={"name": "cnn"}, dataset={"name": "images", "path": str(tmp_path / "pool.npz")})
    assert (len(pool.test), pool.input_shape) == (6, (3, 10, 10))


@pytest.mark.parametrize(
    ("arrays", "expected"),
    [
        ({"pixels": np.zeros((4, 8, 8))}, r"arrays \['pixels'\] found; expected x_train/y_train"),
        ({"x": np.zeros((4, 8, 8)), "y": np.zeros(5)}, r"\[x\]: 4 images but 5 labels"),
        ({"x": np.zeros((4, 8)), "y": np.zeros(4)}, r"\[x\]: image array of shape \(4, 8\)"),
    ],
)
def test_bad_npz_files_are_data_errors_naming_the_file(
    tmp_path: Path, arrays: dict[str, np.ndarray], expected: str
) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="bad.npz.*" + expected):
        load(dataset={"name": "images", "path": str(tmp_path / "bad.npz")})


def test_an_idx_directory_without_a_training_pair_is_a_data_error(tmp_path: Path) -> None:
    images, _ = digit_like(4)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    with pytest.raises(DataError, match="train-images/-labels IDX files come in pairs"):
        load(dataset={"name": "images", "path": str(tmp_path)})
    with pytest.raises(DataError, match="no such file or directory"):
        load(dataset={"name": "images", "path": str(tmp_path / "absent")})


# --- ratings -------------------------------------------------------------------------------------------


def test_per_user_holdout_keeps_a_training_rating_for_every_user() -> None:
    users = np.array([0] * 10 + [1] * 2 + [2])
    held = per_user_holdout(users, 0.2, np.random.default_rng(0))
    assert [int(held[users == user].sum()) for user in range(3)] == [2, 0, 0]  # round(0.4) = 0 for user 1
    assert int(per_user_holdout(users, 0.9, np.random.default_rng(0))[users == 1].sum()) == 1


def write_u_data(path: Path) -> list[tuple[int, int, int]]:
    rng = np.random.default_rng(0)
    triples = [
        (user, int(item), int(rng.integers(1, 6)))
        for user in (10, 20, 30, 40)
        for item in rng.choice(np.arange(100, 120), 10, replace=False)
    ]
    path.write_text("".join(f"{u}\t{i}\t{r}\t88125{u}\n" for u, i, r in triples))
    return triples


def test_u_data_ratings_are_remapped_and_split_per_user(tmp_path: Path) -> None:
    triples = write_u_data(tmp_path / "u.data")
    data = load(model={"name": "mf"}, dataset={"name": "ratings", "path": str(tmp_path / "u.data")})
    assert (data.task, data.input_shape, data.num_users) == ("ratings", (), 4)
    assert data.extras["user_ids"] == ["10", "20", "30", "40"]
    assert data.num_items == len({item for _, item, _ in triples})
    train_users, train_items, train_ratings = tensors(data.train)
    test_users, _, _ = tensors(data.test)
    assert (len(data.test), len(data.val or []), len(data.train)) == (8, 8, 24)
    assert set(test_users.tolist()) <= set(train_users.tolist())
    assert train_ratings.dtype == torch.float32 and int(train_items.max()) < (data.num_items or 0)
    assert data.extras["relevance_threshold"] == 4.0


def test_ratings_csv_with_a_header_and_named_columns(tmp_path: Path) -> None:
    rows = [f"u{u},m{i},{(u + i) % 10 / 2 + 0.5},99" for u in range(5) for i in range(6)]
    (tmp_path / "ratings.csv").write_text("who,what,stars,timestamp\n" + "\n".join(rows) + "\n")
    data = load(
        model={"name": "mf"},
        dataset={
            "name": "ratings",
            "path": str(tmp_path / "ratings.csv"),
            "userColumn": "who",
            "itemColumn": "what",
            "ratingColumn": "stars",
            "relevanceThreshold": 3.5,
        },
    )
    assert (data.num_users, data.num_items, data.extras["relevance_threshold"]) == (5, 6, 3.5)
    assert (data.extras["rating_min"], data.extras["rating_max"]) == (0.5, 5.0)


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        ("userId,itemId,rating\n1,2,3\n", {}, r"no column 'movieId' .*set dataset.itemColumn"),
        ("userId,movieId,rating\n1,2,3\n1,3,x\n", {}, r"line 3, column 'rating': 'x' is not a number"),
        ("1\t2\t3\t4\n", {"userColumn": "u"}, r"no header row .*remove dataset.userColumn"),
        ("1\t2\t3\t4\n1\t3\t5\t4\n", {}, r"2 ratings are too few .*users need at least 2 ratings"),
        ("1\t2\t3\t4\n1\t2\n", {}, r"line 2: 2 fields; u.data rows are"),
    ],
)
def test_bad_ratings_files_name_the_file_the_column_and_the_fix(
    tmp_path: Path, content: str, options: dict[str, Any], expected: str
) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text(content)
    with pytest.raises(DataError, match="ratings.csv.*" + expected):
        load(model={"name": "mf"}, dataset={"name": "ratings", "path": str(path), **options})
