"""DDP on the CPU: 1 process vs 2 gloo processes (the trainer's own launcher), time per epoch and accuracy.

Each configuration is a real `python -m trainsmart_trainer` run: one process (with 1 and with 2 torch
threads, so that "two processes" is compared with "one process using both cores"), and two workers started
with `--nproc-per-node 2` (1 thread each, as the trainer sets for several CPU workers). Same data, model,
per-process batch size and epochs; with two processes the effective batch doubles and each epoch has half
the steps. Epoch time is the training pass (median over epochs after the first); accuracy is on the test split.

Usage: python bench/trainer_ddp.py [--samples 20000] [--epochs 4] [--batch-size 128]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from trainer_workload import add_workload_arguments, workload_config
from trainsmart_trainer import contract

_EPOCH_LINE = re.compile(r"epoch (\d+)/\d+: .*\(([\d.]+) samples/s, ([\d.]+) s\)")


def run(config: dict[str, object], nproc: int, threads: int, workdir: Path) -> dict[str, float]:
    result = workdir / f"result-{nproc}-{threads}.json"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TRAINSMART_", "PET_")) and key not in {"RANK", "WORLD_SIZE", "LOCAL_RANK"}
    }
    env |= {
        contract.CONFIG_JSON: json.dumps(config),
        contract.RESULT_PATH: str(result),
        "OMP_NUM_THREADS": str(threads),
    }
    argv = [sys.executable, "-m", "trainsmart_trainer", *(["--nproc-per-node", str(nproc)] if nproc > 1 else [])]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"{nproc} process(es) failed with {done.returncode}:\n{done.stderr[-4000:]}")
    epochs = [(float(rate), float(seconds)) for _, rate, seconds in _EPOCH_LINE.findall(done.stderr)]
    final = json.loads(result.read_text())["final"]
    later = epochs[1:] or epochs
    return {
        "epoch_seconds": statistics.median(seconds for _, seconds in later),
        "samples_per_second": statistics.median(rate for rate, _ in later),
        "test_accuracy": final["metrics"]["test_accuracy"],
        "val_accuracy": final["metrics"]["val_accuracy"],
        "duration": final["durationSeconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_workload_arguments(parser)
    args = parser.parse_args()
    config = workload_config(args, seed=1)
    print(
        f"synthetic {args.samples} x {args.features}, 4 classes, mlp, batch {args.batch_size} per process, "
        f"{args.epochs} epochs, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("1 process, 1 thread", run(config, 1, 1, Path(tmp))),
            ("1 process, 2 threads", run(config, 1, 2, Path(tmp))),
            ("2 gloo processes, 1 thread each", run(config, 2, 1, Path(tmp))),
        ]
    base = rows[0][1]["epoch_seconds"]
    for name, row in rows:
        print(
            f"{name:32} {row['epoch_seconds']:.3f} s/epoch (x{base / row['epoch_seconds']:.2f} vs 1x1), "
            f"{row['samples_per_second']:.0f} samples/s, test accuracy {row['test_accuracy']:.3f}, "
            f"val accuracy {row['val_accuracy']:.3f}, whole run {row['duration']:.1f} s"
        )


if __name__ == "__main__":
    main()
