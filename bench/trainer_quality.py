"""Quality figures of the packaged trainer's data, models and defaults, printed against their targets:

- digits with cnn: test accuracy >= 97 % within 60 s on 2 CPU cores; with mlp: >= 95 %;
- text-csv (generated: sentiment planted as keyword sets in filler text) with lstm and transformer: test
  accuracy and macro F1 against the majority-class baseline;
- ratings (generated: ratings from planted latent factors, users rating what they expect to like) with mf:
  precision@10 against a popularity baseline, rmse against predicting each item's mean rating.

Every run uses the config defaults except the dataset/model choice, so the figures are what a user gets
without tuning, trained by the packaged loop (`trainsmart_trainer.loop.TrainingRun`, one CPU process) or,
with `--loop minimal`, by a bare Adam loop here. Files are generated into a temporary directory; nothing
is downloaded.

Usage: python bench/trainer_quality.py [--seed 0] [--only digits|text|ratings] [--threads N] [--loop trainer|minimal]
Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.data import DataBundle, load_data
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.metrics import classification_metrics, loss_fn, ranking_metrics, regression_metrics
from trainsmart_trainer.models import build_model
from trainsmart_trainer.settings import RuntimeSettings

# A clear margin over a trivial baseline: absolute points of accuracy; relative precision@10 and rmse, since
# precision@10 is small for every ranker when each user has only a handful of held-out ratings.
MARGIN = 0.15
PRECISION_FACTOR = 1.5
RMSE_IMPROVEMENT = 0.10

POSITIVE = [
    "superb",
    "delightful",
    "brilliant",
    "charming",
    "gripping",
    "moving",
    "stunning",
    "flawless",
    "witty",
    "heartfelt",
]
NEGATIVE = ["dreadful", "tedious", "clumsy", "bland", "awful", "shallow", "sloppy", "boring", "painful", "forgettable"]
NEUTRAL = ["runtime", "sequel", "cast", "studio", "release", "trailer", "ticket", "screening", "budget", "premiere"]
FILLER = [f"{a}{b}" for a in "bcdfgklmnprstvz" for b in ("ado", "eno", "ira", "omo", "ute", "ala")]
STOP = ["the", "a", "and", "of", "it", "this", "was", "is", "to", "in", "for", "with", "but", "on", "at", "very"]


def generate_text_csv(path: Path, rows: int, seed: int) -> None:
    """Reviews of 12-30 words: filler and stop words plus 1-3 keywords of the label's set; 5 % labels flipped."""
    rng = random.Random(seed)
    keywords = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}
    labels = rng.choices(list(keywords), weights=[0.45, 0.35, 0.20], k=rows)
    lines = ["id,text,label"]
    for row, label in enumerate(labels):
        words = rng.choices(FILLER + STOP, k=rng.randint(10, 26)) + rng.choices(keywords[label], k=rng.randint(1, 3))
        rng.shuffle(words)
        shown = label if rng.random() > 0.05 else rng.choice(list(keywords))
        text = " ".join(word.capitalize() if rng.random() < 0.2 else word for word in words)
        lines.append(f'{row},"{text}.",{shown}')
    path.write_text("\n".join(lines) + "\n")


def generate_ratings(path: Path, users: int, items: int, per_user: int, seed: int, skew: float = 0.5) -> None:
    """u.data layout. Rating = 3 + user bias + item bias + <p_u, q_i> (rank 4) + noise, rounded to 1..5.

    Users pick what to rate by item popularity (log-normal with sigma `skew`) and by how much they expect to
    like it, as in real data, so the planted factors decide both which items a user rates and how. With a
    much heavier popularity tail a model trained on rating values (MSE), like `mf`, no longer beats
    popularity at top-k: ranking by predicted rating ignores how likely an item is to be picked at all.
    """
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.7, (users, 4))
    q = rng.normal(0, 0.7, (items, 4))
    affinity = p @ q.T + rng.normal(0, 0.3, items)[None, :] + rng.normal(0, 0.3, users)[:, None]
    popularity = rng.lognormal(0.0, skew, items)
    lines = []
    for user in range(users):
        weight = popularity * np.exp(1.5 * affinity[user])
        chosen = rng.choice(items, size=per_user, replace=False, p=weight / weight.sum())
        noisy = 3.0 + affinity[user, chosen] + rng.normal(0, 0.4, per_user)
        for item, rating in zip(chosen, np.clip(np.rint(noisy), 1, 5).astype(int), strict=True):
            lines.append(f"{user + 1}\t{item + 1}\t{rating}\t{881250949 + user * 97 + item}")
    path.write_text("\n".join(lines) + "\n")


@dataclass
class Trained:
    """What a run leaves for the comparison: test metrics (`test_*`), the data it used, the wall time."""

    metrics: dict[str, float]
    data: DataBundle
    seconds: float


def train_with_trainer(config: TrainerConfig) -> Trained:
    """The packaged trainer's own loop (optimizer, schedule, evaluation) on the CPU, one process."""
    plan = resolve_device(simulated=False, visible_devices=None, cuda=CudaProbe(available=False))
    start = time.monotonic()
    run = TrainingRun(config, RuntimeSettings(), DistInfo(), plan)
    outcome = run.execute()
    if outcome.exit_code != 0:
        raise RuntimeError(f"training failed ({outcome.exit_code}): {outcome.final.reason}")
    return Trained(dict(outcome.final.metrics), run.data, time.monotonic() - start)


def train_minimal(config: TrainerConfig) -> Trained:
    """A minimal loop (Adam, learningRate, weightDecay, epochs, batchSize) to tell data/model from loop effects."""
    torch.manual_seed(config.seed)
    start = time.monotonic()
    data = load_data(config)
    model = build_model(config, data)
    criterion = loss_fn(config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    model.train()
    for _ in range(config.epochs):
        for *inputs, target in DataLoader(data.train, batch_size=config.batch_size, shuffle=True):
            optimizer.zero_grad()
            criterion(model(*inputs), target).backward()
            optimizer.step()
    if data.task == "ratings":
        scores = ranking_metrics(model, data, "test")
    else:
        *inputs, target = data.test.tensors
        with torch.no_grad():
            outputs = model.eval()(*inputs)
        scores = classification_metrics(outputs, target, data.num_classes or 0)
    return Trained({f"test_{key}": value for key, value in scores.items()}, data, time.monotonic() - start)


@dataclass
class Outcome:
    line: str
    passed: bool


Train = Callable[[TrainerConfig], Trained]


def bench_digits(train: Train, seed: int) -> list[Outcome]:
    outcomes = []
    for model_name, target in (("cnn", 0.97), ("mlp", 0.95)):
        run = train(TrainerConfig.model_validate({"model": {"name": model_name}, "seed": seed}))
        accuracy = run.metrics["test_accuracy"]
        outcomes.append(
            Outcome(
                f"digits/{model_name}: test accuracy {accuracy:.2%} macro F1 {run.metrics['test_macro_f1']:.3f} "
                f"in {run.seconds:.1f} s (target >= {target:.0%} within 60 s)",
                accuracy >= target and run.seconds <= 60,
            )
        )
    return outcomes


def bench_text(train: Train, seed: int, directory: Path) -> list[Outcome]:
    path = directory / "reviews.csv"
    generate_text_csv(path, rows=3000, seed=1234)
    outcomes = []
    for model_name in ("lstm", "transformer"):
        dataset = {"name": "text-csv", "path": str(path)}
        run = train(TrainerConfig.model_validate({"model": {"name": model_name}, "dataset": dataset, "seed": seed}))
        labels = run.data.test.tensors[-1]
        classes = run.data.num_classes or 0
        majority = int(torch.tensor(run.data.class_counts or [0]).argmax())
        always = nn.functional.one_hot(torch.full_like(labels, majority), classes).float()
        baseline = classification_metrics(always, labels, classes)
        accuracy = run.metrics["test_accuracy"]
        outcomes.append(
            Outcome(
                f"text-csv/{model_name}: test accuracy {accuracy:.2%} (macro F1 {run.metrics['test_macro_f1']:.3f}) vs "
                f"majority class {baseline['accuracy']:.2%} (macro F1 {baseline['macro_f1']:.3f}) in "
                f"{run.seconds:.1f} s (target: +{MARGIN:.0%} accuracy)",
                accuracy >= baseline["accuracy"] + MARGIN,
            )
        )
    return outcomes


class Popularity(nn.Module):
    """Scores an item by how many training ratings it has, whoever asks: the trivial recommender."""

    counts: torch.Tensor

    def __init__(self, counts: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("counts", counts.float())

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        del users
        return self.counts[items]


def bench_ratings(train: Train, seed: int, directory: Path) -> list[Outcome]:
    path = directory / "u.data"
    generate_ratings(path, users=800, items=500, per_user=40, seed=4321)
    dataset = {"name": "ratings", "path": str(path)}
    run = train(TrainerConfig.model_validate({"model": {"name": "mf"}, "dataset": dataset, "seed": seed}))
    data, scores = run.data, run.metrics
    _, train_items, train_ratings = data.train.tensors
    items = data.num_items or 0
    popular = ranking_metrics(Popularity(torch.bincount(train_items, minlength=items)), data, "test")
    sums = torch.zeros(items).index_add_(0, train_items, train_ratings)
    counts = torch.bincount(train_items, minlength=items).float()
    item_mean = torch.where(counts > 0, sums / counts.clamp(min=1), train_ratings.mean())
    _, test_items, test_ratings = data.test.tensors
    mean_rmse = regression_metrics(item_mean[test_items], test_ratings)["rmse"]
    precision, recall, rmse = scores["test_precision_at_k"], scores["test_recall_at_k"], scores["test_rmse"]
    return [
        Outcome(
            f"ratings/mf: test precision@10 {precision:.3f} recall@10 {recall:.3f} vs popularity "
            f"{popular['precision_at_k']:.3f} / {popular['recall_at_k']:.3f} in {run.seconds:.1f} s "
            f"(target: {PRECISION_FACTOR:.1f}x precision@10)",
            precision >= PRECISION_FACTOR * popular["precision_at_k"],
        ),
        Outcome(
            f"ratings/mf: test rmse {rmse:.3f} vs item-mean baseline {mean_rmse:.3f} "
            f"(target: {RMSE_IMPROVEMENT:.0%} lower)",
            rmse <= (1 - RMSE_IMPROVEMENT) * mean_rmse,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("digits", "text", "ratings"))
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument(
        "--loop", choices=("trainer", "minimal"), default="trainer", help="the packaged loop, or a minimal one"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} CPUs "
        f"(load average {load}), seed {args.seed}, {args.loop} loop",
        flush=True,
    )
    train = train_with_trainer if args.loop == "trainer" else train_minimal
    with tempfile.TemporaryDirectory() as tmp:
        benches: dict[str, Callable[[], list[Outcome]]] = {
            "digits": lambda: bench_digits(train, args.seed),
            "text": lambda: bench_text(train, args.seed, Path(tmp)),
            "ratings": lambda: bench_ratings(train, args.seed, Path(tmp)),
        }
        failed = 0
        for name, bench in benches.items():
            if args.only and name != args.only:
                continue
            for outcome in bench():
                failed += not outcome.passed
                print(("PASS " if outcome.passed else "MISS ") + outcome.line, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
