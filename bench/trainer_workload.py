"""The synthetic job the trainer benches time, defined once so their figures describe the same training.

`trainer_overhead.py` (in-process loop vs a minimal one) and `trainer_ddp.py` (1 vs 2 processes) are read
side by side; a different data size or batch in one of them would make the two sets of numbers disagree for
a reason that has nothing to do with what they measure. Imported as a sibling module: the benches run as
`python bench/<name>.py`, which puts this directory on the path.
"""

from __future__ import annotations

import argparse


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    """--samples, --features, --epochs, --batch-size, with the defaults both benches report against."""
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=128)


def workload_config(args: argparse.Namespace, **overrides: object) -> dict[str, object]:
    """The TrainerConfig (camelCase, as a TrainingJob holds it) for the parsed arguments, plus `overrides`."""
    return {
        "dataset": {"name": "synthetic", "numSamples": args.samples, "numFeatures": args.features, "numClasses": 4},
        "model": {"name": "mlp"},
        "epochs": args.epochs,
        "batchSize": args.batch_size,
        "learningRate": 1e-3,
        **overrides,
    }
