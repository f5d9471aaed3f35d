"""A training script with nothing but the Python standard library: no torch, no trainsmart.

It fits a line to generated noisy points by minibatch gradient descent and prints one JSON line per epoch
(`epoch`, `epochs`, `train_loss`, `val_loss`), which is all `spec.trainer.metrics: {format: json}` needs.
Its image needs only python3 ([Dockerfile](Dockerfile)), the smallest image the metrics wrapper works
with; the end-to-end test builds that image and runs it as a TrainingJob.

    python3 examples/custom/fit_line.py --epochs 5 --lr 0.05
"""

from __future__ import annotations

import argparse
import json
import random


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.05, help="step size of the gradient descent")
    parser.add_argument("--points", type=int, default=512, help="generated points (a quarter held out)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def mean_squared_error(points: list[tuple[float, float]], slope: float, intercept: float) -> float:
    return sum((slope * x + intercept - y) ** 2 for x, y in points) / len(points)


def main() -> None:
    args = parse_args()
    rng = random.Random(args.seed)  # noqa: S311 - generated data, not secrets
    points = [(x, 3.0 * x + 1.0 + rng.gauss(0.0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(args.points))]
    held_out = len(points) // 4
    val, train = points[:held_out], points[held_out:]
    slope = intercept = 0.0
    for epoch in range(1, args.epochs + 1):
        rng.shuffle(train)
        for start in range(0, len(train), args.batch_size):
            batch = train[start : start + args.batch_size]
            errors = [(slope * x + intercept - y, x) for x, y in batch]
            slope -= args.lr * 2 * sum(error * x for error, x in errors) / len(batch)
            intercept -= args.lr * 2 * sum(error for error, _ in errors) / len(batch)
        line = {
            "epoch": epoch,
            "epochs": args.epochs,
            "train_loss": round(mean_squared_error(train, slope, intercept), 6),
            "val_loss": round(mean_squared_error(val, slope, intercept), 6),
        }
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
