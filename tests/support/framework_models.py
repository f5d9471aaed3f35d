"""Tiny models for the framework-callback tests (tests/unit/client/test_callbacks_*.py): built from configs
with random weights, trained on generated data, so nothing is ever downloaded and a run takes well under a
second on a CPU. The frameworks are imported inside the functions: importing this module costs nothing."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TRAIN_ROWS, EVAL_ROWS, BATCH = 64, 32, 8
STEPS_PER_EPOCH = TRAIN_ROWS // BATCH


def token_rows(rows: int, seed: int) -> Any:
    """A map-style dataset of random token ids, labelled by whether the first token is in the upper half of
    the vocabulary (learnable, so accuracy means something)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 32, (rows, 8), generator=generator)
    labels = (ids[:, 0] >= 16).long()
    return [{"input_ids": ids[index], "labels": labels[index]} for index in range(rows)]


def tiny_bert() -> Any:
    """A one-layer BERT sequence classifier (a few thousand weights) from a config, never from a hub."""
    import torch
    import transformers

    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=32,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def accuracy(prediction: Any) -> dict[str, float]:
    return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}


def hf_trainer(out: Path, callbacks: list[Any], *, epochs: int = 2, save_strategy: str = "no") -> Any:
    """A `transformers.Trainer` of the tiny BERT: evaluation and logging once per epoch, on the CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    args = transformers.TrainingArguments(
        output_dir=str(out),
        num_train_epochs=epochs,
        per_device_train_batch_size=BATCH,
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy=save_strategy,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    return transformers.Trainer(
        model=tiny_bert(),
        args=args,
        train_dataset=token_rows(TRAIN_ROWS, 1),
        eval_dataset=token_rows(EVAL_ROWS, 2),
        compute_metrics=accuracy,
        callbacks=callbacks,
    )


def lightning_classifier() -> Any:
    """A LightningModule (one linear layer) that logs `train_loss` per step and epoch, `val_loss` and
    `val_accuracy` per epoch, and `lr` from its own `on_train_epoch_end`."""
    import lightning.pytorch as pl
    import torch
    from torch import nn

    class Classifier(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = nn.Linear(4, 2)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            features, labels = batch
            loss = nn.functional.cross_entropy(self.net(features), labels)
            self.log("train_loss", loss, on_step=True, on_epoch=True)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            features, labels = batch
            logits = self.net(features)
            self.log("val_loss", nn.functional.cross_entropy(logits, labels))
            self.log("val_accuracy", (logits.argmax(-1) == labels).float().mean())

        def on_train_epoch_end(self) -> None:
            self.log("lr", self.optimizers().param_groups[0]["lr"])

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Classifier()


def point_loaders() -> tuple[Any, Any]:
    """Train and validation loaders of 4-feature points labelled by the sign of the first feature."""
    import torch

    def loader(rows: int, seed: int) -> Any:
        generator = torch.Generator().manual_seed(seed)
        features = torch.randn(rows, 4, generator=generator)
        labels = (features[:, 0] > 0).long()
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features, labels), batch_size=BATCH)

    return loader(TRAIN_ROWS, 1), loader(EVAL_ROWS, 2)


def lightning_trainer(root: Path, callbacks: list[Any], *, epochs: int = 2) -> Any:
    """A quiet CPU `lightning.pytorch.Trainer` (no logger, progress bar, summary or own checkpoints)."""
    import lightning.pytorch as pl

    return pl.Trainer(
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(root),
        accelerator="cpu",
        devices=1,
    )
