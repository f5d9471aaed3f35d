"""The packaged trainer's config: typed, importable without torch, strict about options that do not apply.

Pins:
- `trainsmart_trainer.config` imports no torch (the operator embeds its schema and must not need torch);
- defaults train an MLP on the built-in digits data;
- options belonging to another model, dataset, optimizer or schedule are errors naming the option;
- dataset/model pairs the trainer cannot run, and early stopping without validation data, are refused;
- the MLP is sized by hiddenSizes or by the scalar pair hiddenWidth/hiddenLayers, never both, and
  hiddenLayers alone is refused (a sweep over the width is one number at one path);
- a config survives a dump/parse round trip (the operator passes it to pods as JSON).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import format_validation_error
from trainsmart_trainer.config import COMPATIBLE_MODELS, DatasetName, ModelName, TrainerConfig


def errors_of(config: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        TrainerConfig.model_validate(config)
    return format_validation_error(info.value, prefix="config")


def test_the_config_module_imports_without_torch() -> None:
    code = (
        "import sys; import trainsmart_trainer.config; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'numpy', 'sklearn', 'trainsmart'}); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_defaults_train_an_mlp_on_digits() -> None:
    config = TrainerConfig()
    assert (config.model.name, config.dataset.name) == (ModelName.MLP, DatasetName.DIGITS)
    assert (config.epochs, config.batch_size, config.learning_rate) == (10, 64, 1e-3)
    assert config.early_stopping is None
    assert config.checkpoint_every_epochs is None


def test_a_rich_config_round_trips() -> None:
    wire = {
        "model": {"name": "transformer", "embeddingDim": 128, "numHeads": 4, "numLayers": 2},
        "dataset": {"name": "text-csv", "path": "/data/reviews.csv", "textColumn": "body", "targetColumn": "stars"},
        "optimizer": {"name": "adamw"},
        "lrSchedule": {"name": "onecycle", "maxLearningRate": 0.01},
        "classWeights": {"mode": "explicit", "weights": [1.0, 3.0]},
        "labelSmoothing": 0.1,
        "gradClipNorm": 1.0,
        "earlyStopping": {"patience": 2},
    }
    config = TrainerConfig.model_validate(wire)
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert TrainerConfig.model_validate(dumped) == config
    assert dumped["lrSchedule"] == {"name": "onecycle", "maxLearningRate": 0.01}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"model": {"name": "mlp", "numHeads": 2}}, "config.model: numHeads applies only to model.name transformer"),
        (
            {"model": {"name": "transformer", "embeddingDim": 10, "numHeads": 3}},
            "config.model: embeddingDim (10) must be a multiple of numHeads (3)",
        ),
        ({"model": {"name": "gpt"}}, "config.model.name: Input should be 'mlp'"),
        ({"dataset": {"name": "tabular-csv"}}, "config.dataset: path is required for dataset tabular-csv"),
        (
            {"dataset": {"name": "tabular-csv", "path": "/d.csv", "textColumn": "t"}},
            "config.dataset: textColumn applies only to dataset.name text-csv",
        ),
        ({"dataset": {"name": "digits", "path": "/x"}}, "config.dataset: path applies only to dataset.name"),
        (
            {"dataset": {"name": "synthetic", "task": "regression", "numClasses": 3}},
            "config.dataset: numClasses does not apply to task regression",
        ),
        ({"optimizer": {"name": "adam", "momentum": 0.9}}, "config.optimizer: momentum does not apply to adam"),
        ({"optimizer": {"name": "adam", "nesterov": True}}, "config.optimizer: nesterov applies only to sgd"),
        ({"lrSchedule": {"name": "cosine", "stepEpochs": 3}}, "config.lrSchedule: stepEpochs applies only to"),
        ({"lrSchedule": {"name": "warmup", "warmupEpochs": 0}}, "config.lrSchedule: warmup needs warmupEpochs >= 1"),
        ({"lrSchedule": {"name": "step", "gamma": 1.5}}, "config.lrSchedule.gamma: Input should be less than 1"),
        ({"classWeights": {"mode": "explicit"}}, "config.classWeights: mode explicit needs weights"),
        ({"classWeights": {"weights": [1, 2]}}, "config.classWeights: weights applies only to mode explicit"),
        (
            {"classWeights": {"mode": "explicit", "weights": [1, 0]}},
            "config.classWeights.weights[1]: Input should",
        ),
        (
            {"model": {"hiddenSizes": [64, 0]}},
            "config.model.hiddenSizes[1]: Input should be",
        ),
        (
            {"model": {"hiddenSizes": [64], "hiddenWidth": 32}},
            "config.model: hiddenWidth and hiddenSizes both size the hidden layers; set either hiddenSizes",
        ),
        (
            {"model": {"hiddenSizes": [64], "hiddenWidth": 32, "hiddenLayers": 2}},
            "config.model: hiddenWidth and hiddenLayers and hiddenSizes both size the hidden layers",
        ),
        ({"model": {"hiddenLayers": 2}}, "config.model: hiddenLayers needs hiddenWidth"),
        ({"model": {"name": "cnn", "hiddenWidth": 32}}, "config.model: hiddenWidth applies only to model.name mlp"),
        ({"model": {"hiddenWidth": 0}}, "config.model.hiddenWidth: Input should be greater than or equal to 1"),
        ({"model": {"hiddenWidth": 32.5}}, "config.model.hiddenWidth: Input should be a valid integer"),
        ({"model": {"hiddenWidth": 8, "hiddenLayers": 17}}, "config.model.hiddenLayers: Input should be less than"),
        ({"dropout": 1.0}, "config.dropout: Input should be less than 1"),
        ({"batchSize": 0}, "config.batchSize: Input should be greater than or equal to 1"),
        ({"learningRate": "fast"}, "config.learningRate: Input should be a valid number"),
        ({"mixedPrecision": "fp8"}, "config.mixedPrecision: Input should be 'none', 'fp16' or 'bf16'"),
        ({"learning_rte": 0.1}, "config.learning_rte: Extra inputs are not permitted"),
        (
            {"model": {"name": "lstm"}},
            "config: model lstm cannot train on dataset digits; use one of: cnn, mlp, resnet",
        ),
        (
            {"earlyStopping": {"metric": "val_loss"}, "validationSplit": 0},
            "config: earlyStopping watches val_loss but validationSplit is 0",
        ),
        (
            {"dataset": {"name": "synthetic", "task": "regression"}, "labelSmoothing": 0.1},
            "config: classWeights and labelSmoothing apply to classification only",
        ),
    ],
)
def test_bad_configs_are_rejected_naming_the_option(config: dict[str, Any], expected: str) -> None:
    messages = errors_of(config)
    assert any(message.startswith(expected) for message in messages), messages


def test_every_dataset_has_at_least_one_model() -> None:
    assert set(COMPATIBLE_MODELS) == set(DatasetName)
    assert all(COMPATIBLE_MODELS.values())
    assert set().union(*COMPATIBLE_MODELS.values()) == set(ModelName)


@pytest.mark.parametrize(
    ("model", "sizes"),
    [
        ({"hiddenWidth": 64}, [64]),
        ({"hiddenWidth": 32, "hiddenLayers": 3}, [32, 32, 32]),
        ({"hiddenWidth": 128.0}, [128]),  # what a quniform draw writes
        ({"hiddenSizes": [16, 8]}, [16, 8]),
        ({}, None),
    ],
)
def test_the_mlp_is_sized_by_either_the_list_or_the_width_and_depth(model: dict[str, Any], sizes: Any) -> None:
    config = TrainerConfig.model_validate({"model": model})
    assert config.model.mlp_hidden_sizes() == sizes
    dumped = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert TrainerConfig.model_validate(dumped) == config
