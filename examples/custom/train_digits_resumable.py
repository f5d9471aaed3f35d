"""The digits script of train_digits.py grown as real scripts grow, and still knowing nothing of trainsmart.

* Checkpoints: `--checkpoint-dir` (the manifests pass `$(TRAINSMART_CHECKPOINT_DIR)`, which the kubelet
  expands); on start the newest `epoch-N.pt` there is resumed from.
* SIGTERM: its handler only sets a flag; after the current epoch the script saves it and exits 13, which
  the operator reads as "stopped, resume me". Under `trainer.metrics` the container's main process is the
  operator's metrics wrapper, which forwards the signal to this script.
* Data parallel: when WORLD_SIZE > 1 (the operator sets it with RANK, MASTER_ADDR and MASTER_PORT for one
  process per pod), `init_process_group` with `env://` (gloo on the CPU) and DDP. Each rank trains on its
  shard and scores its own slice of the validation data, and every rank prints its line, as scripts that
  never thought about it do: the wrapper reports rank 0's lines only.

    python3 examples/custom/train_digits_resumable.py --epochs 5 --checkpoint-dir /tmp/digits
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel

EXIT_STOPPED = 13
stop = {"requested": False}


def on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    stop["requested"] = True


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate of Adam")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64, help="width of the hidden layer")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", type=Path, help="where to save on SIGTERM and resume from")
    return parser.parse_args()


def newest_checkpoint(directory: Path | None) -> Path | None:
    found = sorted(directory.glob("epoch-*.pt"), key=lambda p: int(p.stem.split("-")[1])) if directory else []
    return found[-1] if found else None


def all_agree_to_stop(distributed: bool) -> bool:
    """Every rank stops at the same epoch (one that stopped alone would leave the others waiting in DDP)."""
    flag = torch.tensor([1.0 if stop["requested"] else 0.0])
    if distributed:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def main() -> None:
    signal.signal(signal.SIGTERM, on_sigterm)
    args = parse_args()
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    distributed = world > 1
    if distributed:
        dist.init_process_group("gloo", init_method="env://")
    torch.manual_seed(args.seed)  # the same split and initial weights on every rank and in every run
    digits = load_digits()
    features = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    labels = torch.tensor(digits.target, dtype=torch.long)
    order = torch.randperm(len(labels))
    split = int(0.8 * len(labels))
    train_idx, val_idx = order[:split][rank::world], order[split:][rank::world]

    net = nn.Sequential(nn.Linear(64, args.hidden), nn.ReLU(), nn.Linear(args.hidden, 10))
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    done = 0
    checkpoint = newest_checkpoint(args.checkpoint_dir)
    if checkpoint is not None:
        state = torch.load(checkpoint)
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done = int(state["epoch"])
        print(f"resumed from {checkpoint.name} after epoch {done}", flush=True)
    model = DistributedDataParallel(net) if distributed else net
    loss_fn = nn.CrossEntropyLoss()

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
            logits = net(features[val_idx])
            val_loss = loss_fn(logits, labels[val_idx]).item()
            val_accuracy = (logits.argmax(dim=1) == labels[val_idx]).float().mean().item()
        line = {"epoch": epoch, "epochs": args.epochs, "train_loss": round(total / len(train_idx), 6)}
        line.update(val_loss=round(val_loss, 6), val_accuracy=round(val_accuracy, 6))
        print(json.dumps(line), flush=True)
        if all_agree_to_stop(distributed):
            if rank == 0 and args.checkpoint_dir is not None:
                path = args.checkpoint_dir / f"epoch-{epoch}.pt"
                partial = path.with_suffix(".partial")  # renamed when complete: never a torn epoch-N.pt
                torch.save({"epoch": epoch, "model": net.state_dict(), "optimizer": optimizer.state_dict()}, partial)
                partial.replace(path)
                print(f"SIGTERM: saved {path} after epoch {epoch}, exiting {EXIT_STOPPED}", flush=True)
            sys.exit(EXIT_STOPPED)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
