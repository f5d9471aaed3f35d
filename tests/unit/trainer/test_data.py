"""The trainer's built-in and tabular data: splits, shapes, train-only fitting, and errors that say what to fix.

Pins:
- splits: test is a fixed 20 % whatever the seed or validationSplit; val is validationSplit of the rest and
  moves with the seed; stratified by label; too few rows is a DataError saying how many are needed;
- digits: 1,797 images in [0, 1], [1, 8, 8] for cnn/resnet and 64 flat values for mlp; deterministic by seed;
- synthetic: requested size, features, classes and imbalance; regression carries the target's train stats;
- tabular-csv: standard scaling fitted on the training rows only; one-hot categories from the training rows,
  unseen or missing categories all zeros; missing numbers imputed with the training mean; rows without a
  target dropped and counted;
- bad tables (missing file, wrong column, non-numeric values in a numeric column, non-numeric regression
  target, ragged rows, empty files, id-like text columns, too few rows) raise DataError naming file and column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.data import DataBundle, DataError, load_data
from trainsmart_trainer.data.common import TEST_FRACTION, encode_labels, split_rows
from trainsmart_trainer.data.csvfile import read_table
from trainsmart_trainer.data.tabular import encode_column, fit_column


def config(**fields: Any) -> TrainerConfig:
    return TrainerConfig.model_validate(fields)


def tensors(dataset: object) -> tuple[torch.Tensor, ...]:
    assert isinstance(dataset, TensorDataset)
    return dataset.tensors


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> str:
    lines = [",".join(header)] + [",".join(str(value) for value in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


# --- splits -----------------------------------------------------------------------------------------


def test_splits_hold_out_a_fixed_test_set_and_a_seeded_validation_set() -> None:
    first = split_rows(1000, 0.25, seed=1, source="x")
    assert (len(first.test), len(first.val), len(first.train)) == (200, 200, 600)
    everything = np.concatenate([first.train, first.val, first.test])
    assert sorted(everything.tolist()) == list(range(1000))
    other_seed = split_rows(1000, 0.25, seed=2, source="x")
    other_fraction = split_rows(1000, 0.1, seed=1, source="x")
    assert np.array_equal(first.test, other_seed.test) and np.array_equal(first.test, other_fraction.test)
    assert not np.array_equal(np.sort(first.val), np.sort(other_seed.val))
    assert np.array_equal(first.val, split_rows(1000, 0.25, seed=1, source="x").val)


def test_splits_are_stratified_by_label() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    split = split_rows(100, 0.5, seed=0, labels=labels, source="x")
    assert np.bincount(labels[split.test]).tolist() == [18, 2]
    assert np.bincount(labels[split.val]).tolist() == [36, 4]
    assert np.bincount(labels[split.train]).tolist() == [36, 4]


def test_too_few_rows_for_the_splits_is_a_data_error_with_the_minimum() -> None:
    with pytest.raises(DataError, match=r"data.csv: 2 rows are too few .* at least 4 rows, or lower validationSplit"):
        split_rows(2, 0.2, seed=0, source="data.csv")
    assert len(split_rows(4, 0.2, seed=0, source="x").val) == 1


def test_labels_are_encoded_in_numeric_then_text_order() -> None:
    codes, classes = encode_labels(np.array(["10", "2", "cat", "2"], dtype=object))
    assert classes == ["2", "10", "cat"]
    assert codes.tolist() == [1, 0, 2, 0]


# --- built-in data ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "shape"), [("cnn", (1, 8, 8)), ("resnet", (1, 8, 8)), ("mlp", (64,))])
def test_digits_are_images_for_convnets_and_flat_for_the_mlp(model: str, shape: tuple[int, ...]) -> None:
    data = load_data(config(model={"name": model}))
    images, labels = tensors(data.train)
    assert data.input_shape == shape == tuple(images.shape[1:])
    assert (data.task, data.num_classes) == ("classification", 10)
    assert len(data.train) + len(data.val or []) + len(data.test) == 1797
    assert len(data.test) == round(TEST_FRACTION * 1797)
    assert float(images.min()) >= 0.0 and float(images.max()) == 1.0
    assert data.class_counts == torch.bincount(labels, minlength=10).tolist()


def test_digits_are_deterministic_by_seed_and_share_the_test_split() -> None:
    a, b, c = (load_data(config(seed=seed)) for seed in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(tensors(a.train), tensors(b.train), strict=True))
    assert not torch.equal(tensors(a.val)[0], tensors(c.val)[0])
    assert torch.equal(tensors(a.test)[0], tensors(c.test)[0])


def test_no_validation_split_gives_no_validation_dataset() -> None:
    data = load_data(config(validationSplit=0))
    assert data.val is None
    assert len(data.train) + len(data.test) == 1797


def test_synthetic_classification_has_the_requested_shape_and_imbalance() -> None:
    options = {"name": "synthetic", "numSamples": 2000, "numFeatures": 6, "numClasses": 3, "imbalance": 8, "noise": 0}
    data = load_data(config(dataset=options))
    assert (data.input_shape, data.num_classes, len(data.test)) == ((6,), 3, 400)
    counts = data.class_counts
    assert counts is not None and counts[0] > counts[1] > counts[2]
    assert 6 < counts[0] / counts[2] < 10


def test_synthetic_regression_targets_come_with_training_statistics() -> None:
    data = load_data(config(dataset={"name": "synthetic", "task": "regression", "numSamples": 200, "numFeatures": 3}))
    _, target = tensors(data.train)
    assert (data.task, data.num_classes, data.class_counts) == ("regression", None, None)
    assert target.dtype == torch.float32
    assert data.extras["target_mean"] == pytest.approx(float(target.mean()), abs=1e-5)
    assert data.extras["target_std"] == pytest.approx(float(target.std(correction=0)), rel=1e-4)


def test_synthetic_data_too_narrow_for_its_classes_is_refused() -> None:
    with pytest.raises(DataError, match="numFeatures"):
        load_data(config(dataset={"name": "synthetic", "numFeatures": 1, "numClasses": 3}))


# --- tabular-csv -------------------------------------------------------------------------------------


def tabular(path: str, **options: Any) -> DataBundle:
    return load_data(config(dataset={"name": "tabular-csv", "path": path, **options}))


def test_scaling_is_fitted_on_the_training_rows_only(tmp_path: Path) -> None:
    # Only the test rows hold large values, so statistics fitted on all rows would be far from the training
    # rows' ones; the target repeats x, so each split's targets reveal its raw values.
    test_rows = set(split_rows(60, 0.2, seed=0, source="t").test.tolist())
    xs = [1000.0 + i if i in test_rows else float(i % 7) for i in range(60)]
    path = write_csv(tmp_path / "t.csv", ["x", "y"], [[x, x] for x in xs])
    data = tabular(path, task="regression", targetColumn="y")
    train_x, train_raw = tensors(data.train)
    mean, std = float(train_raw.mean()), float(train_raw.std(correction=0))
    assert mean < 7 < np.mean(xs)
    assert data.extras["scaler_mean"]["x"] == pytest.approx(mean, rel=1e-5)
    assert data.extras["scaler_std"]["x"] == pytest.approx(std, rel=1e-5)
    assert torch.allclose(train_x[:, 0], (train_raw - mean) / std, atol=1e-5)
    test_x, test_raw = tensors(data.test)
    assert float(test_raw.min()) >= 1000
    assert torch.allclose(test_x[:, 0], (test_raw - mean) / std, rtol=1e-4)


def test_categories_come_from_the_training_rows_and_unseen_ones_encode_as_zeros(tmp_path: Path) -> None:
    colours = ["red", "green", "blue"] * 10 + ["violet"]
    labels = ["a", "b"] * 15 + ["a"]
    path = write_csv(
        tmp_path / "t.csv",
        ["colour", "size", "label"],
        [[c, i, y] for i, (c, y) in enumerate(zip(colours, labels, strict=True))],
    )
    split = split_rows(31, 0.2, seed=0, labels=encode_labels(np.array(labels, dtype=object))[0], source="t")
    data = tabular(path)
    train_colours = sorted({colours[row] for row in split.train})
    assert data.extras["categories"]["colour"] == train_colours
    assert data.extras["feature_names"] == [f"colour={c}" for c in train_colours] + ["size"]
    encoding = fit_column(read_table(path), "colour", colours, np.arange(30))
    assert encoding.categories == ("blue", "green", "red")
    block = encode_column(encoding, ["green", "violet", "", "NA"])
    assert block.tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_missing_numbers_take_the_training_mean_and_rows_without_target_are_dropped(tmp_path: Path) -> None:
    rows = [[i, "a" if i % 2 else "b"] for i in range(20)] + [["", "a"], ["NaN", "b"], [3, ""], [4, "?"]]
    data = tabular(write_csv(tmp_path / "t.csv", ["x", "label"], rows))
    assert data.extras["dropped_rows"] == 2
    assert len(data.train) + len(data.val or []) + len(data.test) == 22
    everything = torch.cat([tensors(split)[0] for split in (data.train, data.val, data.test) if split is not None])
    assert int((everything[:, 0] == 0).sum()) >= 2
    assert bool(torch.isfinite(everything).all())


def test_feature_columns_select_the_inputs(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["a", "b", "c", "label"], [[i, -i, i * i, i % 2] for i in range(20)])
    data = tabular(path, featureColumns=["c", "a"])
    assert data.input_shape == (2,)
    assert data.extras["feature_names"] == ["c", "a"]
    assert data.extras["classes"] == ["0", "1"]


# --- bad tables -------------------------------------------------------------------------------------


def good_rows() -> list[list[Any]]:
    return [[i, f"c{i % 3}", i % 2] for i in range(20)]


@pytest.mark.parametrize(
    ("content", "options", "expected"),
    [
        (None, {}, r"missing.csv: no such file; check dataset.path"),
        ("x,y\n1,2\n", {}, r"t.csv: no column 'label' \(columns: 'x', 'y'\); set dataset.targetColumn"),
        ("x,label\n1,0\n", {"featureColumns": ["z"]}, r"t.csv: no column 'z' .*dataset.featureColumns"),
        ("", {}, r"t.csv: the file is empty"),
        ("x,label\n", {}, r"t.csv: the file has a header but no data rows"),
        ("x,label\n1,0\n2,1,5\n", {}, r"t.csv, line 3: 3 fields but the header has 2"),
        ("x,label\n1,0\n2,1\n3,0\n", {}, r"t.csv: 3 rows are too few to split"),
        ("x,label\n1,a\n2,b\n", {"task": "regression"}, r"t.csv, line 2, column 'label': 'a' is not a number"),
    ],
)
def test_bad_tables_name_the_file_the_column_and_the_fix(
    tmp_path: Path, content: str | None, options: dict[str, Any], expected: str
) -> None:
    path = tmp_path / ("missing.csv" if content is None else "t.csv")
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=expected):
        tabular(str(path), **options)


def test_a_stray_text_value_in_a_numeric_column_is_reported_with_its_line(tmp_path: Path) -> None:
    rows = good_rows()
    rows[6][0] = "1,5"
    path = tmp_path / "t.csv"
    path.write_text("x,kind,label\n" + "\n".join(f'"{a}",{b},{c}' for a, b, c in rows) + "\n")
    with pytest.raises(DataError, match=r"t.csv, line 8, column 'x': '1,5' is not a number .*featureColumns"):
        tabular(str(path))


def test_an_id_like_text_column_is_refused_rather_than_one_hot_encoded(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["name", "label"], [[f"person{i}", i % 2] for i in range(200)])
    with pytest.raises(DataError, match=r"t.csv, column 'name': 1\d\d distinct text values .*featureColumns"):
        tabular(path)


def test_a_continuous_target_for_classification_suggests_regression(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", ["x", "label"], [[i, i * 1.5] for i in range(150)])
    with pytest.raises(DataError, match=r"column 'label': 150 distinct numeric labels .*task: regression"):
        tabular(path)


def test_a_directory_instead_of_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is a directory; set dataset\.path to the data file"):
        tabular(str(tmp_path))


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"name": "synthetic", "task": "regression", "imbalance": 3}, "imbalance does not apply to task regression"),
        ({"name": "digits", "noise": 0.1}, "noise applies only to dataset.name synthetic"),
        (
            {"name": "tabular-csv", "path": "/t.csv", "minFrequency": 2},
            "minFrequency applies only to dataset.name text-csv",
        ),
        ({"name": "text-csv", "path": "/t.csv", "augment": False}, "augment applies only to dataset.name images"),
        (
            {"name": "images", "path": "/i", "relevanceThreshold": 4},
            "relevanceThreshold applies only to dataset.name ratings",
        ),
    ],
)
def test_dataset_options_are_refused_where_they_do_not_apply(options: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        TrainerConfig.model_validate({"dataset": options, "model": {"name": "cnn"}})
