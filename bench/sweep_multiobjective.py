"""Multi-objective sweep figures, printed: hypervolume of the front after k trials, per algorithm.

The objective is ZDT1 (Zitzler, Deb and Thiele's test problem) over `--dims` parameters in [0, 1], two
objectives minimized: f1 = x1, f2 = g (1 - sqrt(f1 / g)) with g = 1 + 9 mean(x2..xn). Its true front is
f2 = 1 - sqrt(f1) at x2..xn = 0, so a sampler must learn to push every parameter but the first to 0 while
spreading the first. Cheap to evaluate: the figures measure the samplers alone.

Every algorithm goes through the sweep's own `suggest` (a fresh, stateless rebuild per call, as in the
operator): random (hyperopt), tpe with objectives (Optuna's multi-objective TPE) and nsga2 (Optuna's
NSGA-II). Trials run `--parallel` at a time: each batch is suggested with the earlier ones finished. The
hypervolume is taken against the reference point (1.1, 11) (worse than any point of the space: f2 <= 10),
after k trials, as mean +- sd over `--seeds` seeds (the sweep seed differs, the problem does not); the true
front's hypervolume is printed for scale.

Usage: python bench/sweep_multiobjective.py [--trials 40] [--seeds 5] [--dims 4] [--parallel 1] [--checkpoints 10,20,40]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from typing import Any

from trainsmart.api import HyperparamSweepSpec
from trainsmart.sweep import TrialOutcome, TrialPoint, suggest
from trainsmart.sweep.multiobjective import hypervolume, pareto_front

REFERENCE = (1.1, 11.0)
ALGORITHMS = ("random", "tpe", "nsga2")


def zdt1(point: dict[str, Any], dims: int) -> tuple[float, float]:
    f1 = float(point["x0"])
    g = 1 + 9 * sum(float(point[f"x{i}"]) for i in range(1, dims)) / (dims - 1)
    return f1, g * (1 - math.sqrt(f1 / g))


def spec(algorithm: str, dims: int, trials: int) -> HyperparamSweepSpec:
    settings: dict[str, Any] = {
        "random": {},
        "tpe": {"tpe": {"startupTrials": 10}},
        "nsga2": {"nsga2": {"populationSize": 10}},
    }[algorithm]
    return HyperparamSweepSpec.model_validate(
        {
            "objectives": [{"metric": "f1", "goal": "minimize"}, {"metric": "f2", "goal": "minimize"}],
            "algorithm": {"name": algorithm, **settings},
            "parameters": [{"name": f"x{i}", "type": "uniform", "min": 0.0, "max": 1.0} for i in range(dims)],
            "trialTemplate": {"trainer": {"command": ["train", *(f"${{params.x{i}}}" for i in range(dims))]}},
            "maxTrials": trials,
        }
    )


def run(algorithm: str, dims: int, trials: int, seed: int, parallel: int, checkpoints: list[int]) -> list[float]:
    sweep = spec(algorithm, dims, trials)
    history: list[TrialPoint] = []
    values: list[tuple[float, float]] = []
    while len(history) < trials:
        for point in suggest(sweep, history, min(parallel, trials - len(history)), seed):
            f1, f2 = zdt1(point, dims)
            values.append((f1, f2))
            history.append(
                TrialPoint(len(history), point, TrialOutcome.SUCCEEDED, objective_values={"f1": f1, "f2": f2})
            )
    return [hypervolume([values[i] for i in pareto_front(values[:k])], REFERENCE) for k in checkpoints]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--dims", type=int, default=4)
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--checkpoints", default="10,20,40")
    args = parser.parse_args()
    checkpoints = [int(k) for k in args.checkpoints.split(",") if int(k) <= args.trials]
    true_front = [(i / 1000, 1 - math.sqrt(i / 1000)) for i in range(1001)]
    print(
        f"ZDT1, {args.dims} parameters, reference {REFERENCE}, {args.seeds} seeds, parallel {args.parallel}; "
        f"true front's hypervolume {hypervolume(true_front, REFERENCE):.3f}"
    )
    print(f"{'algorithm':<10}" + "".join(f"{'HV@' + str(k):>18}" for k in checkpoints) + f"{'s/trial':>10}")
    for algorithm in ALGORITHMS:
        started = time.perf_counter()
        runs = [run(algorithm, args.dims, args.trials, seed, args.parallel, checkpoints) for seed in range(args.seeds)]
        per_trial = (time.perf_counter() - started) / (args.seeds * args.trials)
        cells = []
        for index in range(len(checkpoints)):
            column = [result[index] for result in runs]
            sd = statistics.stdev(column) if len(column) > 1 else 0.0
            cells.append(f"{statistics.mean(column):>10.3f} +- {sd:<5.3f}")
        print(f"{algorithm:<10}" + "".join(f"{cell:>18}" for cell in cells) + f"{per_trial:>10.3f}")


if __name__ == "__main__":
    main()
