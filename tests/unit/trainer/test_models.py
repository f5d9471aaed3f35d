"""The trainer's networks: every model runs forward and backward with the documented output shape.

Pins:
- mlp, cnn, resnet, lstm, transformer and mf each take a tiny batch of their dataset's inputs and return
  logits [B, C], regression predictions [B] or ratings [B], with gradients reaching every parameter;
- cnn and resnet adapt to 8x8 and 28x28 images (and colour) with the same defaults;
- text models are padding-aware: extra padding does not change the output, an empty text stays finite;
- sizes from config.model (hiddenSizes, hiddenWidth x hiddenLayers, numLayers, embeddingDim, numHeads) and
  config.dropout are honoured;
- regression models predict in the target's units; mf starts at the mean rating;
- a small mlp learns digits well above chance in a few epochs.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.data import DataBundle, load_data
from trainsmart_trainer.metrics import classification_metrics, loss_fn
from trainsmart_trainer.models import LSTMClassifier, build_model


def config(model: dict[str, Any], dataset: str = "digits", **fields: Any) -> TrainerConfig:
    options: dict[str, Any] = {"name": dataset}
    if dataset in {"text-csv", "images", "ratings", "tabular-csv"}:
        options["path"] = "/unused"
    return TrainerConfig.model_validate({"model": model, "dataset": options, **fields})


def bundle(task: str, shape: tuple[int, ...], **fields: Any) -> DataBundle:
    """A DataBundle with no rows: models only read the shapes and counts."""
    empty = TensorDataset(torch.empty(0))
    return DataBundle(name="fake", task=task, train=empty, val=None, test=empty, input_shape=shape, **fields)  # type: ignore[arg-type]


IMAGES = bundle("classification", (1, 8, 8), num_classes=10)
TEXT = bundle("classification", (12,), num_classes=3, vocab_size=50, extras={"padding_index": 0})
RATINGS = bundle("ratings", (), num_users=7, num_items=9, extras={"rating_mean": 3.5})


def tokens(batch: int, length: int = 12) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(2, 50, (batch, length), generator=generator)
    lengths = torch.tensor([length, 3, 1, 7][:batch])
    ids[torch.arange(length)[None, :] >= lengths[:, None]] = 0
    return ids


CASES = [
    ("mlp", "digits", bundle("classification", (64,), num_classes=10), (torch.rand(4, 64),), (4, 10)),
    ("cnn", "digits", IMAGES, (torch.rand(4, 1, 8, 8),), (4, 10)),
    ("cnn", "images", bundle("classification", (1, 28, 28), num_classes=10), (torch.rand(4, 1, 28, 28),), (4, 10)),
    ("cnn", "images", bundle("classification", (3, 13, 17), num_classes=4), (torch.rand(4, 3, 13, 17),), (4, 4)),
    ("resnet", "digits", IMAGES, (torch.rand(4, 1, 8, 8),), (4, 10)),
    ("resnet", "images", bundle("classification", (1, 28, 28), num_classes=10), (torch.rand(4, 1, 28, 28),), (4, 10)),
    ("lstm", "text-csv", TEXT, (tokens(4),), (4, 3)),
    ("transformer", "text-csv", TEXT, (tokens(4),), (4, 3)),
    ("mf", "ratings", RATINGS, (torch.tensor([0, 1, 6, 2]), torch.tensor([8, 0, 3, 3])), (4,)),
]


@pytest.mark.parametrize(
    ("name", "dataset", "data", "inputs", "shape"), CASES, ids=[f"{c[0]}-{c[1]}-{c[2].input_shape}" for c in CASES]
)
def test_every_model_runs_forward_and_backward(
    name: str, dataset: str, data: DataBundle, inputs: tuple[torch.Tensor, ...], shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    model = build_model(config({"name": name}, dataset), data)
    out = model(*inputs)
    assert tuple(out.shape) == shape
    out.float().pow(2).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing


def test_regression_mlp_predicts_in_the_target_units() -> None:
    data = bundle("regression", (3,), extras={"target_mean": 100.0, "target_std": 10.0})
    model = build_model(config({"name": "mlp"}, "synthetic"), data)
    for parameter in model.parameters():
        nn.init.zeros_(parameter)
    assert model(torch.rand(5, 3)).tolist() == [100.0] * 5


def test_mf_starts_near_the_mean_rating_and_takes_an_ncf_tower() -> None:
    model = build_model(config({"name": "mf", "hiddenSizes": [8]}, "ratings"), RATINGS)
    prediction = model(torch.tensor([0, 1]), torch.tensor([2, 3]))
    assert prediction.shape == (2,)
    assert torch.allclose(prediction, torch.tensor([3.5, 3.5]), atol=0.5)
    assert any(isinstance(module, nn.Linear) for module in model.modules())


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_text_models_ignore_padding(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(config({"name": name}, "text-csv"), TEXT).eval()
    short = tokens(3, length=7)
    longer = torch.cat([short, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model(short), model(longer), atol=1e-5)
        assert bool(torch.isfinite(model(torch.zeros(2, 12, dtype=torch.long))).all())


WIDTH_ATTRIBUTES: dict[type[nn.Module], str] = {
    nn.Linear: "out_features",
    nn.Conv2d: "out_channels",
    nn.LSTM: "hidden_size",
    nn.Embedding: "embedding_dim",
}


def sizes_of(model: nn.Module) -> list[int]:
    """The widths a config can set, read back from the built modules in order; -1 marks a block or layer."""
    sizes: list[int] = []
    for module in model.modules():
        attribute = WIDTH_ATTRIBUTES.get(type(module))
        if attribute is not None:
            sizes.append(getattr(module, attribute))
        elif type(module).__name__ in {"ResidualBlock", "TransformerEncoderLayer"}:
            sizes.append(-1)
    return sizes


@pytest.mark.parametrize(
    ("model", "dataset", "data", "expected"),
    [
        (
            {"name": "mlp", "hiddenSizes": [16, 8]},
            "digits",
            bundle("classification", (64,), num_classes=10),
            [16, 8, 10],
        ),
        (
            {"name": "mlp", "hiddenWidth": 12, "hiddenLayers": 3},
            "digits",
            bundle("classification", (64,), num_classes=10),
            [12, 12, 12, 10],
        ),
        ({"name": "mlp", "hiddenWidth": 24}, "digits", bundle("classification", (64,), num_classes=10), [24, 10]),
        ({"name": "cnn", "hiddenSizes": [4, 6]}, "digits", IMAGES, [4, 6, 128, 10]),
        ({"name": "resnet", "numLayers": 2}, "digits", IMAGES, [32, -1, 32, 32, -1, 64, 64, 64, 10]),
        ({"name": "lstm", "hiddenSizes": [6], "numLayers": 2, "embeddingDim": 5}, "text-csv", TEXT, [5, 6, 6, 3]),
        (
            {"name": "transformer", "embeddingDim": 12, "numHeads": 3, "numLayers": 2},
            "text-csv",
            TEXT,
            [12, 12, -1, 24, 12, -1, 24, 12, 3],
        ),
        ({"name": "mf", "embeddingDim": 5}, "ratings", RATINGS, [5, 5, 1, 1]),
    ],
)
def test_sizes_and_dropout_come_from_the_config(
    model: dict[str, Any], dataset: str, data: DataBundle, expected: list[int]
) -> None:
    built = build_model(config(model, dataset, dropout=0.3), data)
    dropouts = [m.p for m in built.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(p == 0.3 for p in dropouts)
    assert sizes_of(built) == expected


def test_lstm_takes_one_hidden_size_per_layer() -> None:
    built = build_model(config({"name": "lstm", "hiddenSizes": [8, 4]}, "text-csv"), TEXT)
    assert isinstance(built, LSTMClassifier)
    assert [layer.hidden_size for layer in built.layers] == [8, 4]
    assert built(tokens(2)).shape == (2, 3)


def test_a_small_mlp_learns_digits_in_a_few_epochs() -> None:
    torch.manual_seed(0)
    cfg = config({"name": "mlp", "hiddenSizes": [32]}, "digits", learningRate=0.01)
    data = load_data(cfg)
    model, criterion = build_model(cfg, data), loss_fn(cfg, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    for _ in range(3):
        for images, labels in DataLoader(data.train, batch_size=64, shuffle=True):
            optimizer.zero_grad()
            criterion(model(images), labels).backward()
            optimizer.step()
    assert isinstance(data.test, TensorDataset)
    images, labels = data.test.tensors
    with torch.no_grad():
        accuracy = classification_metrics(model.eval()(images), labels, 10)["accuracy"]
    assert accuracy > 0.8  # chance is 0.1


def test_lstm_sizes_and_layer_count_must_agree() -> None:
    with pytest.raises(ValueError, match="hiddenSizes has 2 entries but numLayers is 3"):
        TrainerConfig.model_validate(
            {
                "model": {"name": "lstm", "hiddenSizes": [8, 4], "numLayers": 3},
                "dataset": {"name": "text-csv", "path": "/t"},
            }
        )
