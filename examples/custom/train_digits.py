"""A plain PyTorch training script that knows nothing about trainsmart.

It trains a small MLP on scikit-learn's bundled 8x8 digits (no download) and prints one JSON line per
epoch (`epochs`, the total, lets the status show a percentage). That is all trainsmart needs:
`spec.trainer.metrics: {format: json}` makes the operator run it under its metrics wrapper, which reads
those lines and reports them (see docs/your-code.md).

    python3 examples/custom/train_digits.py --lr 0.01 --epochs 5
"""

from __future__ import annotations

import argparse
import json

import torch
from sklearn.datasets import load_digits
from torch import nn


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of Adam")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)
    digits = load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels))
    split = int(0.8 * len(labels))
    train_idx, val_idx = order[:split], order[split:]

    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        shuffled = train_idx[torch.randperm(len(train_idx))]
        for batch in shuffled.split(args.batch_size):
            optimizer.zero_grad()
            loss = loss_fn(model(features[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        model.eval()
        with torch.no_grad():
            logits = model(features[val_idx])
            val_loss = loss_fn(logits, labels[val_idx]).item()
            val_accuracy = (logits.argmax(dim=1) == labels[val_idx]).float().mean().item()
        line = {
            "epoch": epoch,
            "epochs": args.epochs,
            "train_loss": round(total / len(train_idx), 6),
            "val_loss": round(val_loss, 6),
            "val_accuracy": round(val_accuracy, 6),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
