"""The digits script of train_digits.py, reporting through trainsmart's client library instead of stdout.

What the client adds over printing JSON lines: `report()` sends each epoch itself (the TrainingJob needs
no `trainer.metrics`), `latest_checkpoint()` finds where a stopped run left off, and `stop_requested()`
turns SIGTERM (suspend, a sweep's early stop, preemption) into a flag the loop checks after each epoch:
the script saves that epoch and exits 13, the contract's "stopped, resume me", and a promoted trial goes on
from there instead of starting over. Outside a TrainingJob every call does nothing, so it also runs here:

    python3 examples/custom/train_with_client.py --lr 0.01 --epochs 5

A checkpoint is written only when asked to stop, which keeps the example short; a long run would also
save every few epochs to survive a crash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from torch import nn

import trainsmart_client as ts

EXIT_STOPPED = 13
"""The trainer contract's TERMINATED: the operator restarts (or keeps suspended) and the run resumes."""


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of Adam")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def save(model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int) -> Path | None:
    """`epoch-N.pt` in the job's checkpoint directory, written under a hidden name and renamed into place,
    so a run killed mid-write never leaves a torn file that `latest_checkpoint()` would pick."""
    directory = ts.checkpoint_dir()
    if directory is None:
        return None
    path = directory / f"epoch-{epoch}.pt"
    partial = directory / f".{path.name}.partial"
    torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict()}, partial)
    partial.replace(path)
    return path


def main() -> None:
    args = parse_args()
    torch.manual_seed(args.seed)  # the same split in every run, resumed or not
    digits = load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels))
    split = int(0.8 * len(labels))
    train_idx, val_idx = order[:split], order[split:]

    model = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()

    done = 0
    checkpoint = ts.latest_checkpoint("epoch-*.pt")
    if checkpoint is not None:
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done = int(state["epoch"])
        print(f"resumed from {checkpoint.name} after epoch {done}", flush=True)
    ts.progress(done, total_epochs=args.epochs)

    for epoch in range(done + 1, args.epochs + 1):
        model.train()
        total = 0.0
        for batch in train_idx[torch.randperm(len(train_idx))].split(args.batch_size):
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
        metrics = {"train_loss": total / len(train_idx), "val_loss": val_loss, "val_accuracy": val_accuracy}
        ts.report(metrics, epoch=epoch)
        print(f"epoch {epoch}/{args.epochs} " + " ".join(f"{k}={v:.4f}" for k, v in metrics.items()), flush=True)
        if ts.stop_requested():
            path = save(model, optimizer, epoch)
            print(f"stop requested after epoch {epoch}: saved {path}, exiting {EXIT_STOPPED}", flush=True)
            sys.exit(EXIT_STOPPED)


if __name__ == "__main__":
    main()
