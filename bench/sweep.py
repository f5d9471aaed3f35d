"""Sweep algorithm figures on a fixed benchmark, printed: search quality and early-stopping savings.

The benchmark objective trains the packaged trainer's digits MLP in this process (`TrainingRun`, one CPU
thread) and scores a configuration by its best val_loss over `--epochs` epochs (lower is better). The space is
learning rate (loguniform 1e-4..1e-1), width of the hidden layer (quniform 16..256 by 16), dropout (uniform
0..0.5) and weight decay (loguniform 1e-6..1e-2). Repetition r trains with seed r and draws with seed r, so
each repetition is its own objective and every algorithm in it sees the same one: per-epoch curves are
cached per (parameters, seed) and shared by every algorithm and stopping rule.

1. Best objective after k trials (mean +- sd over repetitions), one trial at a time, for grid (a 4x2x2x2 grid
   of the same space, as large as the budget), random, TPE (ours: `trainsmart.sweep.suggest` through
   hyperopt, default settings) and Optuna's TPESampler (defaults) as a peer.
2. Epochs of compute with and without early stopping, over the same configurations (the repetition's random
   search trials, in order), so the stopping rule is the only difference: the sweep's best value (the best
   any trial reported), the epochs spent in all, and the epochs spent until that best was first seen. Ours
   (`early_stopping_decisions`, minEpochs 1, reductionFactor 3) is simulated epoch by epoch with
   `--parallel` trials at a time; a trial it pauses keeps its epochs and a promoted one continues from where
   it stopped, as from its checkpoint. Optuna's MedianPruner (2 startup trials, as our median needs 2 others)
   and SuccessiveHalvingPruner (min resource 1, reduction factor 3) run the same configurations
   sequentially (enqueued trials); a pruned trial never resumes.
3. Multi-fidelity search at equal epoch budgets: ours (`algorithm: bohb`, TPE on the values trials reach at
   ASHA's rungs, ASHA minEpochs 1, reductionFactor 3, one trial at a time, a paused trial resumed from where
   it stopped when promoted) against Optuna's TPESampler with its HyperbandPruner (min resource 1, reduction
   factor 3), each given `--trials` x `--epochs` epochs in all (what `--trials` full trainings cost); the
   budget is cut at exactly that many epochs. The score is the best val_loss any trial reported; mean +- sd
   over repetitions, and per repetition which one found the lower value.

The MLP's width is set here from the point directly: a sweep cannot reach it through a path yet, since the
trainer takes widths only as the list `model.hiddenSizes`.

Usage: python bench/sweep.py [--trials 32] [--seeds 3] [--epochs 12] [--parallel 1,4] [--threads 1]
                             [--figures 1,2,3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
import torch

from trainsmart.api.search_space import Parameter
from trainsmart.api.sweep_spec import (
    Algorithm,
    AlgorithmName,
    EarlyStoppingRule,
    Goal,
    HyperparamSweepSpec,
    Objective,
    SweepEarlyStopping,
)
from trainsmart.api.trainingjob_spec import TrainingJobSpec
from trainsmart.sweep import Scalar, TrialCurve, TrialOutcome, TrialPoint, early_stopping_decisions, suggest
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.settings import RuntimeSettings

METRIC = "val_loss"
SPACE: list[dict[str, Any]] = [
    {"name": "lr", "type": "loguniform", "min": 1e-4, "max": 1e-1},
    {"name": "width", "type": "quniform", "min": 16, "max": 256, "q": 16},
    {"name": "dropout", "type": "uniform", "min": 0.0, "max": 0.5},
    {"name": "wd", "type": "loguniform", "min": 1e-6, "max": 1e-2},
]
GRID: list[dict[str, Any]] = [
    {"name": "lr", "type": "loguniform", "min": 1e-4, "max": 1e-1, "step": 10},
    {"name": "width", "type": "choice", "values": [32, 256]},
    {"name": "dropout", "type": "uniform", "min": 0.0, "max": 0.4, "step": 0.4},
    {"name": "wd", "type": "loguniform", "min": 1e-5, "max": 1e-3, "step": 100},
]
PATHS = {"lr": "trainer.config.learningRate", "dropout": "trainer.config.dropout", "wd": "trainer.config.weightDecay"}
ASHA_SETTINGS = SweepEarlyStopping(rule=EarlyStoppingRule.ASHA, min_epochs=1, reduction_factor=3)


def sweep_spec(algorithm: AlgorithmName, space: list[dict[str, Any]], epochs: int = 1) -> HyperparamSweepSpec:
    """The parts of a sweep spec `suggest` reads. Built without the template checks, because width has no path
    (see the module doc); each Parameter is still validated. bohb also reads the epochs and the ASHA rule."""
    parameters = [Parameter.model_validate({"path": PATHS.get(p["name"], "n/a"), **p}) for p in space]
    template = {"trainer": {"config": {"model": {"name": "mlp"}, "epochs": epochs}}}
    return HyperparamSweepSpec.model_construct(
        objective=Objective(metric=METRIC, goal=Goal.MINIMIZE),
        algorithm=Algorithm(name=algorithm),
        parameters=parameters,
        trial_template=TrainingJobSpec.model_validate(template),
        early_stopping=ASHA_SETTINGS,
    )


@dataclass
class Curve:
    values: list[float]  # val_loss per epoch; shorter than --epochs when training diverged
    failed: bool


@dataclass
class Benchmark:
    """The objective: train the digits MLP for a point and seed, once per process, and hand out the curve."""

    epochs: int
    cache: dict[str, Curve] = field(default_factory=dict)
    seconds: float = 0.0

    def curve(self, point: dict[str, Scalar], seed: int) -> Curve:
        key = json.dumps([seed, {name: round(float(value), 12) for name, value in sorted(point.items())}])
        if key not in self.cache:
            started = time.perf_counter()
            self.cache[key] = self._train(point, seed)
            self.seconds += time.perf_counter() - started
        return self.cache[key]

    def _train(self, point: dict[str, Scalar], seed: int) -> Curve:
        config = TrainerConfig.model_validate(
            {
                "model": {"name": "mlp", "hiddenSizes": [int(point["width"])]},
                "epochs": self.epochs,
                "batchSize": 64,
                "learningRate": float(point["lr"]),
                "dropout": float(point["dropout"]),
                "weightDecay": float(point["wd"]),
                "seed": seed,
            }
        )
        values: list[float] = []
        plan = resolve_device(simulated=False, visible_devices=None, cuda=CudaProbe(available=False))
        run = TrainingRun(
            config, RuntimeSettings(), DistInfo(), plan, on_epoch_end=lambda r: values.append(r.last_metrics[METRIC])
        )
        outcome = run.execute()
        return Curve(values, failed=outcome.exit_code != 0)


def score(curve: Curve) -> float:
    finite = [value for value in curve.values if math.isfinite(value)]
    return min(finite) if finite and not curve.failed else math.inf


# ---- figure 1: best objective vs trials ------------------------------------------------------------------------


def ours_search(bench: Benchmark, algorithm: AlgorithmName, seed: int, trials: int) -> list[float]:
    """Per-trial scores of a sequential sweep driven by our suggest()."""
    spec = sweep_spec(algorithm, GRID if algorithm == AlgorithmName.GRID else SPACE)
    history: list[TrialPoint] = []
    scores: list[float] = []
    for number in range(trials):
        batch = suggest(spec, history, 1, seed)
        if not batch:
            break  # grid exhausted
        curve = bench.curve(batch[0], seed)
        value = score(curve)
        outcome = TrialOutcome.FAILED if curve.failed else TrialOutcome.SUCCEEDED
        history.append(TrialPoint(number, batch[0], outcome, None if math.isinf(value) else value))
        scores.append(value)
    return scores


def optuna_point(trial: optuna.Trial) -> dict[str, Scalar]:
    return {
        "lr": trial.suggest_float("lr", 1e-4, 1e-1, log=True),
        "width": trial.suggest_int("width", 16, 256, step=16),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "wd": trial.suggest_float("wd", 1e-6, 1e-2, log=True),
    }


def optuna_search(bench: Benchmark, seed: int, trials: int) -> list[float]:
    scores: list[float] = []

    def objective(trial: optuna.Trial) -> float:
        value = score(bench.curve(optuna_point(trial), seed))
        scores.append(value)
        return value if math.isfinite(value) else math.nan  # NaN: Optuna records a failed trial

    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    return scores


def best_after(scores: Sequence[float], k: int) -> float:
    return min(scores[:k]) if scores else math.inf


# ---- figure 2: epochs with and without early stopping --------------------------------------------------------


@dataclass
class StopResult:
    best: float
    epochs: int  # epochs trained in all
    epochs_to_best: int  # epochs trained until the final best value was first reported


class Tally:
    """Epochs spent and the best value seen, in the order training happens."""

    def __init__(self) -> None:
        self.epochs = 0
        self.best = math.inf
        self.epochs_to_best = 0

    def epoch(self, value: float) -> None:
        self.epochs += 1
        if value < self.best:
            self.best, self.epochs_to_best = value, self.epochs

    def result(self) -> StopResult:
        return StopResult(self.best, self.epochs, self.epochs_to_best)


def train_one_epoch(trial: int, curves: Sequence[Curve], done: list[int], state: dict[int, str], tally: Tally) -> None:
    """One more epoch of `trial` from its cached curve (counted in `tally`); finished at its last."""
    values = curves[trial].values
    if done[trial] < len(values):
        tally.epoch(values[done[trial]])
        done[trial] += 1
    if done[trial] >= len(values):
        state[trial] = "finished"


def curve_views(curves: Sequence[Curve], done: list[int], state: dict[int, str]) -> list[TrialCurve]:
    """What the stopping rule sees: each trial's curve so far and its state."""
    return [
        TrialCurve(f"t{t}", t, curves[t].values[: done[t]], s)  # type: ignore[arg-type]
        for t, s in state.items()
    ]


def ours_stopping(curves: Sequence[Curve], rule: EarlyStoppingRule, parallel: int, epochs: int) -> StopResult:
    """A sweep over `curves` in order, `parallel` trials at a time, epoch by epoch, stopped by our rule."""
    settings = SweepEarlyStopping(rule=rule, min_epochs=1, reduction_factor=3)
    done = [0] * len(curves)
    state: dict[int, str] = {}  # trial -> running / paused / finished; absent: not created yet
    tally = Tally()
    created = 0
    promote: list[int] = []
    while True:
        running = [t for t, s in state.items() if s == "running"]
        for trial in promote:  # promoted trials first, as the controller does
            if len(running) < parallel:
                state[trial] = "running"
                running.append(trial)
        while len(running) < parallel and created < len(curves):
            state[created] = "running"
            running.append(created)
            created += 1
        if not running:
            return tally.result()
        for trial in sorted(running):
            train_one_epoch(trial, curves, done, state, tally)
        views = curve_views(curves, done, state)
        decision = early_stopping_decisions(
            settings, Goal.MINIMIZE, epochs, views, metric=METRIC, draining=created == len(curves)
        )
        for name in decision.stop:
            state[int(name[1:])] = "paused"
        promote = sorted(int(name[1:]) for name in decision.promote)


def optuna_stopping(curves: Sequence[Curve], points: Sequence[dict[str, Scalar]], pruner: Any) -> StopResult:
    tally = Tally()
    by_point = {json.dumps(point, sort_keys=True): curve for point, curve in zip(points, curves, strict=True)}

    def objective(trial: optuna.Trial) -> float:
        curve = by_point[json.dumps(optuna_point(trial), sort_keys=True)]
        for epoch, value in enumerate(curve.values, start=1):
            tally.epoch(value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score(curve) if not curve.failed else math.nan

    study = optuna.create_study(direction="minimize", pruner=pruner, sampler=optuna.samplers.RandomSampler(seed=0))
    for point in points:
        study.enqueue_trial(dict(point))
    study.optimize(objective, n_trials=len(points))
    return tally.result()


# ---- figure 3: multi-fidelity search at equal epoch budgets ----------------------------------------------------


@dataclass
class BudgetResult:
    best: float
    configurations: int  # distinct trials started within the budget


def ours_multifidelity(bench: Benchmark, seed: int, budget: int) -> BudgetResult:
    """A sequential bohb sweep under ASHA, cut at exactly `budget` epochs. The history the suggester sees is
    what the operator would rebuild from the trials: each one's curve so far and where it stands."""
    spec = sweep_spec(AlgorithmName.BOHB, SPACE, bench.epochs)
    points: list[dict[str, Scalar]] = []
    curves: list[Curve] = []
    done: list[int] = []
    state: dict[int, str] = {}
    tally = Tally()
    promote: list[int] = []
    while tally.epochs < budget:
        running = [t for t, s in state.items() if s == "running"]
        if not running and promote:
            state[promote[0]] = "running"  # promoted trials first, as the controller does
            running = [promote[0]]
        if not running:
            history = [bohb_point(t, points[t], curves[t], done[t], state[t]) for t in range(len(points))]
            point: dict[str, Any] = suggest(spec, history, 1, seed)[0]
            points.append(point)
            curves.append(bench.curve(point, seed))
            done.append(0)
            state[len(points) - 1] = "running"
            running = [len(points) - 1]
        (trial,) = running
        train_one_epoch(trial, curves, done, state, tally)
        views = curve_views(curves, done, state)
        decision = early_stopping_decisions(ASHA_SETTINGS, Goal.MINIMIZE, bench.epochs, views, metric=METRIC)
        for name in decision.stop:
            state[int(name[1:])] = "paused"
        promote = sorted(int(name[1:]) for name in decision.promote)
    return BudgetResult(tally.best, len(points))


def bohb_point(number: int, point: dict[str, Scalar], curve: Curve, done: int, state: str) -> TrialPoint:
    values = curve.values[:done]
    finite = [value for value in values if math.isfinite(value)]
    value = min(finite) if finite else None
    if state == "paused":
        return TrialPoint(number, point, TrialOutcome.EARLY_STOPPED, value, curve=values)
    if state == "finished":
        outcome = TrialOutcome.FAILED if curve.failed else TrialOutcome.SUCCEEDED
        return TrialPoint(number, point, outcome, value, curve=values)
    return TrialPoint(number, point, TrialOutcome.ACTIVE, value, curve=values)


def optuna_hyperband(bench: Benchmark, seed: int, budget: int) -> BudgetResult:
    """Optuna's TPESampler with its HyperbandPruner, trial after trial, cut at exactly `budget` epochs."""
    tally = Tally()
    started = 0
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=bench.epochs, reduction_factor=3),
    )

    def objective(trial: optuna.Trial) -> float:
        nonlocal started
        started += 1
        curve = bench.curve(optuna_point(trial), seed)
        for epoch, value in enumerate(curve.values, start=1):
            if tally.epochs >= budget:
                study.stop()
                raise optuna.TrialPruned()
            tally.epoch(value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        if tally.epochs >= budget:
            study.stop()
        return score(curve) if not curve.failed else math.nan

    study.optimize(objective, n_trials=budget)
    return BudgetResult(tally.best, started)


def multifidelity_rows(bench: Benchmark, seed: int, budget: int) -> dict[str, BudgetResult]:
    rows = {}
    for label, run in (("bohb (ours)", ours_multifidelity), ("optuna tpe + hyperband", optuna_hyperband)):
        started, trained = time.perf_counter(), len(bench.cache)
        rows[label] = run(bench, seed, budget)
        progress(label, started, len(bench.cache) - trained)
    return rows


def print_multifidelity(results: dict[str, list[BudgetResult]], budget: int) -> None:
    print(f"3. Multi-fidelity search at equal budgets: {budget} epochs per sweep (ASHA/Hyperband, eta 3)")
    print(f"{'algorithm':<26}{'best ' + METRIC:>20}{'configurations':>16}{'wins':>6}")
    labels = list(results)
    seeds = len(results[labels[0]])
    for label in labels:
        wins = sum(
            all(results[label][seed].best < results[other][seed].best for other in labels if other != label)
            for seed in range(seeds)
        )
        configurations = statistics.fmean(r.configurations for r in results[label])
        print(f"{label:<26}{mean_sd([r.best for r in results[label]]):>20}{configurations:>16.1f}{wins:>6}")
    ties = seeds - sum(
        all(results[label][seed].best < results[other][seed].best for other in labels if other != label)
        for label in labels
        for seed in range(seeds)
    )
    print(f"wins: repetitions where it found the strictly lower best ({ties} ties of {seeds});")
    print("configurations: distinct trials started within the budget (mean).\n")


# ---- printing ------------------------------------------------------------------------------------------------


def mean_sd(values: Sequence[float]) -> str:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return "n/a"
    sd = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{statistics.fmean(finite):.4f} +- {sd:.4f}"


def checkpoints(trials: int) -> list[int]:
    marks = sorted({k for k in (1, 4, 8, 16, 24, trials) if k <= trials})
    return marks


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # the trainer's diagnostics (underfitting at lr 1e-4) are expected
    try:
        yield
    finally:
        logging.disable(previous)


def stopping_rows(
    curves: Sequence[Curve], points: Sequence[dict[str, Scalar]], parallels: Sequence[int], epochs: int
) -> dict[str, StopResult]:
    rows = {"none": ours_stopping(curves, EarlyStoppingRule.NONE, 1, epochs)}
    for parallel in parallels:
        for rule in (EarlyStoppingRule.MEDIAN, EarlyStoppingRule.ASHA):
            rows[f"{rule.value} (ours, {parallel} at a time)"] = ours_stopping(curves, rule, parallel, epochs)
    rows["optuna MedianPruner"] = optuna_stopping(curves, points, median_pruner())
    rows["optuna SuccessiveHalvingPruner"] = optuna_stopping(curves, points, sha_pruner())
    return rows


def repetition(
    bench: Benchmark, seed: int, trials: int, parallels: Sequence[int]
) -> tuple[dict[str, list[float]], dict[str, StopResult]]:
    """One repetition: the four searches, then the stopping rules over its random-search configurations."""
    searches: dict[str, list[float]] = {}
    for name, algorithm in (
        ("grid", AlgorithmName.GRID),
        ("random", AlgorithmName.RANDOM),
        ("tpe (ours)", AlgorithmName.TPE),
    ):
        started, trained = time.perf_counter(), len(bench.cache)
        searches[name] = ours_search(bench, algorithm, seed, trials)
        progress(name, started, len(bench.cache) - trained)
    started, trained = time.perf_counter(), len(bench.cache)
    searches["optuna tpe"] = optuna_search(bench, seed, trials)
    progress("optuna tpe", started, len(bench.cache) - trained)
    points = suggest(sweep_spec(AlgorithmName.RANDOM, SPACE), [], trials, seed)
    curves = [bench.curve(point, seed) for point in points]
    return searches, stopping_rows(curves, points, parallels, bench.epochs)


def progress(label: str, started: float, trained: int) -> None:
    print(f"  {label}: {time.perf_counter() - started:.1f} s, {trained} new trainings", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32, help="trial budget per sweep")
    parser.add_argument("--seeds", type=int, default=3, help="repetitions (training and sampling seed 0..n-1)")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per trial (ASHA rungs at 1, 3, 9 below 12)")
    parser.add_argument("--parallel", default="1,4", help="parallel trials in our early-stopping simulation")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--figures", default="1,2,3", help="which figures to compute (3 alone: multi-fidelity)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parallels = [int(part) for part in args.parallel.split(",")]
    figures = {int(part) for part in args.figures.split(",")}
    bench = Benchmark(epochs=args.epochs)
    budget = args.trials * args.epochs
    started = time.perf_counter()
    searches: dict[str, list[list[float]]] = {}
    stopping: dict[str, list[StopResult]] = {}
    multifidelity: dict[str, list[BudgetResult]] = {}
    noise = 0.0
    with quiet():
        for seed in range(args.seeds):
            print(f"repetition {seed}", file=sys.stderr, flush=True)
            if figures & {1, 2}:
                found, stopped = repetition(bench, seed, args.trials, parallels)
                for name, scores in found.items():
                    searches.setdefault(name, []).append(scores)
                for label, result in stopped.items():
                    stopping.setdefault(label, []).append(result)
            if 3 in figures:
                for label, outcome in multifidelity_rows(bench, seed, budget).items():
                    multifidelity.setdefault(label, []).append(outcome)
        if figures & {1, 2}:
            noise = grid_noise(bench, args.seeds)
    print(f"\nSweep benchmark: digits MLP, {args.epochs} epochs per trial, objective best {METRIC} (lower is better)")
    print(f"{args.trials} trials per sweep, {args.seeds} repetitions (seeds 0..{args.seeds - 1}); "
          f"{len(bench.cache)} distinct trainings, {bench.seconds:.0f} s of training, "
          f"{time.perf_counter() - started:.0f} s in all")  # fmt: skip
    if figures & {1, 2}:
        print(f"noise: median sd of one configuration's best {METRIC} across training seeds = {noise:.4f}\n")
    if 1 in figures:
        print_searches(searches, args.trials)
    if 2 in figures:
        print_stopping(stopping, noise)
    if 3 in figures:
        print_multifidelity(multifidelity, budget)


def print_searches(searches: dict[str, list[list[float]]], trials: int) -> None:
    marks = checkpoints(trials)
    print(f"1. Best {METRIC} after k trials (mean +- sd over repetitions)")
    print(f"{'algorithm':<12}" + "".join(f"{'k=' + str(k):>20}" for k in marks))
    for name, runs in searches.items():
        cells = "".join(f"{mean_sd([best_after(run, k) for run in runs]):>20}" for k in marks)
        print(f"{name:<12}{cells}")
    grid_size = len(searches["grid"][0]) if searches.get("grid") else 0
    print(f"(grid: {grid_size} points, enumerated learning rate first; a k past its size repeats its final best)\n")


def print_stopping(stopping: dict[str, list[StopResult]], noise: float) -> None:
    print("2. Early stopping over the same configurations (each repetition's random-search trials)")
    print(f"{'rule':<34}{'best ' + METRIC:>20}{'epochs':>9}{'vs none':>9}{'to best':>9}{'vs none':>9}{'d best':>9}")
    base = stopping["none"]
    verdicts = []
    for label, results in stopping.items():
        pairs = list(zip(results, base, strict=True))
        epochs = statistics.fmean(r.epochs for r in results)
        to_best = statistics.fmean(r.epochs_to_best for r in results)
        ratio = statistics.fmean(r.epochs / b.epochs for r, b in pairs)
        ratio_best = statistics.fmean(r.epochs_to_best / b.epochs_to_best for r, b in pairs)
        delta = statistics.fmean(r.best - b.best for r, b in pairs)
        print(f"{label:<34}{mean_sd([r.best for r in results]):>20}{epochs:>9.0f}{ratio:>9.2f}"
              f"{to_best:>9.0f}{ratio_best:>9.2f}{delta:>+9.4f}")  # fmt: skip
        if label != "none":
            verdict = "met" if ratio <= 0.5 and delta <= noise else "missed"
            verdicts.append(f"  {label}: {ratio:.2f}x the epochs, best {delta:+.4f} -> {verdict}")
    print("epochs: all epochs trained; to best: epochs trained until the final best was first reported;")
    print("vs none: mean per-repetition ratio to no stopping; d best: mean best minus no stopping's (+ = worse).")
    print(f"target: at most 0.5x the epochs of no stopping, best within noise ({noise:.4f}):")
    print("\n".join(verdicts))


def median_pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)


def sha_pruner() -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)


def grid_noise(bench: Benchmark, seeds: int) -> float:
    """How much one configuration's score moves with the training seed: the scale for 'same best'."""
    spreads = []
    for point in suggest(sweep_spec(AlgorithmName.GRID, GRID), [], 10_000, 0):
        values = [score(bench.curve(point, seed)) for seed in range(seeds)]
        if seeds > 1 and all(math.isfinite(value) for value in values):
            spreads.append(statistics.stdev(values))
    return statistics.median(spreads) if spreads else 0.0


if __name__ == "__main__":
    main()
