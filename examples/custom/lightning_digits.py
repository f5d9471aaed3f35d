"""A PyTorch Lightning script with two trainsmart lines: the import and `callbacks=[TrainsmartCallback()]`.

An MLP learns scikit-learn's bundled 8x8 digits (no download). The callback reports what the module logs
(`train_loss`, `val_loss`, `val_accuracy`) once per epoch, progress in epochs and steps, and on SIGTERM
(suspend, a sweep's early stop) it stops after the current batch, saves `stopped-step=<step>.ckpt` in the
job's checkpoint directory and exits 13; `checkpoint_dirpath()` and `resume_checkpoint()` keep Lightning's
own checkpoints there and resume from the newest. Outside a TrainingJob it runs as it is:

    python3 examples/custom/lightning_digits.py --epochs 3
"""

from __future__ import annotations

import argparse
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from trainsmart_client.callbacks.lightning import TrainsmartCallback, checkpoint_dirpath, resume_checkpoint


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


class DigitsClassifier(pl.LightningModule):
    def __init__(self, hidden: int, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
        self.lr = lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        features, labels = batch
        loss = nn.functional.cross_entropy(self.net(features), labels)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        features, labels = batch
        logits = self.net(features)
        self.log("val_loss", nn.functional.cross_entropy(logits, labels))
        self.log("val_accuracy", (logits.argmax(dim=1) == labels).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def loaders(batch_size: int) -> tuple[DataLoader[Any], DataLoader[Any]]:
    digits = load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels))
    split = int(0.8 * len(labels))
    train = TensorDataset(features[order[:split]], labels[order[:split]])
    val = TensorDataset(features[order[split:]], labels[order[split:]])
    return DataLoader(train, batch_size=batch_size, shuffle=True), DataLoader(val, batch_size=256)


def main() -> None:
    args = parse_args()
    pl.seed_everything(args.seed)
    directory = checkpoint_dirpath("lightning-output")  # the job's checkpoint volume when it has one
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        default_root_dir=directory,
        callbacks=[TrainsmartCallback(), ModelCheckpoint(dirpath=directory, save_last=True)],
        enable_progress_bar=False,  # one line per epoch in the pod's log, not a redrawn bar
        log_every_n_steps=10,
    )
    train, val = loaders(args.batch_size)
    trainer.fit(DigitsClassifier(args.hidden, args.lr), train, val, ckpt_path=resume_checkpoint())


if __name__ == "__main__":
    main()
