"""suggest(): hyperopt's random, TPE and anneal as a pure function of (spec, trials so far, count, seed).

Pins:
- the same inputs give the same points, different seeds different ones;
- replay equals a fresh run: points suggested one at a time while trials finish are exactly what a fresh
  process (an operator restart) suggests from the same history, in any order; a batch equals one-at-a-time;
- each trial's draw depends on its number: a gap left by a lost trial shifts nothing, numbers are never reused;
- TPE learns from the history: on a 1-D quadratic its suggestions after startupTrials crowd around the
  optimum, for minimize and maximize alike, while random search's do not;
- trial N is a random draw exactly when N < startupTrials (running trials count), then TPE's;
- failed, metric-less and running trials are accepted; duplicate trial numbers are refused.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from typing import Any

import pytest

from trainsmart.api import HyperparamSweepSpec
from trainsmart.sweep import TrialOutcome, TrialPoint, next_trial_number, suggest, trial_seed

PARAMETERS: list[dict[str, Any]] = [
    {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 1e-1},
    {"name": "dropout", "path": "trainer.config.dropout", "type": "uniform", "min": 0.0, "max": 0.5},
    {"name": "bs", "path": "trainer.config.batchSize", "type": "quniform", "min": 16, "max": 128, "q": 16},
    {"name": "epochs", "path": "trainer.config.epochs", "type": "randint", "min": 1, "max": 5},
    {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd", "adamw"]},
]
X = [{"name": "x", "path": "trainer.config.learningRate", "type": "uniform", "min": 0.01, "max": 10.0}]


def sweep(
    algorithm: str, parameters: list[dict[str, Any]] = PARAMETERS, goal: str = "minimize", **tpe: Any
) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_loss", "goal": goal},
            "algorithm": {"name": algorithm, **({"tpe": tpe} if tpe else {})},
            "parameters": parameters,
            "trialTemplate": {"trainer": {"config": {"epochs": 3}}},
            "maxTrials": 100,
        }
    )


def objective(point: dict[str, Any]) -> float:
    """A made-up loss with a clear optimum, so TPE's model has something to find."""
    bs = point.get("bs", 64)
    return float((point["lr"] - 0.01) ** 2 * 1e3 + (point["dropout"] - 0.2) ** 2 + abs(bs - 64) / 640)


def run_sweep(spec: HyperparamSweepSpec, trials: int, seed: int, finish: bool = True) -> list[TrialPoint]:
    """Suggest one trial at a time, each finishing (or, with finish=False, staying active) before the next."""
    history: list[TrialPoint] = []
    for number in range(trials):
        (point,) = suggest(spec, history, 1, seed)
        if finish:
            history.append(TrialPoint(number, point, TrialOutcome.SUCCEEDED, objective(point)))
        else:
            history.append(TrialPoint(number, point, TrialOutcome.ACTIVE, None))
    return history


@pytest.mark.parametrize("algorithm", ["random", "tpe", "anneal"])
def test_the_same_seed_gives_the_same_sequence_and_another_seed_another(algorithm: str) -> None:
    spec = sweep(algorithm, startupTrials=4) if algorithm == "tpe" else sweep(algorithm)
    first = [point.parameters for point in run_sweep(spec, 12, seed=7)]
    assert first == [point.parameters for point in run_sweep(spec, 12, seed=7)]
    other = [point.parameters for point in run_sweep(spec, 12, seed=8)]
    assert all(a != b for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("algorithm", ["random", "tpe", "anneal"])
def test_a_batch_equals_asking_one_at_a_time_with_the_earlier_ones_running(algorithm: str) -> None:
    spec = sweep(algorithm, startupTrials=3) if algorithm == "tpe" else sweep(algorithm)
    history = run_sweep(spec, 6, seed=1)
    batch = suggest(spec, history, 4, seed=1)
    grown = list(history)
    for _ in range(4):
        (point,) = suggest(spec, grown, 1, seed=1)
        grown.append(TrialPoint(next_trial_number(grown), point, TrialOutcome.ACTIVE, None))
    assert batch == [point.parameters for point in grown[6:]]


@pytest.mark.parametrize("algorithm", ["tpe", "anneal"])
def test_a_restart_mid_sweep_rebuilds_the_same_next_points_from_the_history_in_any_order(algorithm: str) -> None:
    spec = sweep(algorithm, startupTrials=4) if algorithm == "tpe" else sweep(algorithm)
    uninterrupted = run_sweep(spec, 14, seed=3)
    # "Restart" after 9 trials: the operator reads the trials back from the API, in whatever order, through JSON.
    record = json.loads(json.dumps([[p.number, p.parameters, p.outcome.value, p.value] for p in uninterrupted[:9]]))
    random.Random(0).shuffle(record)
    history = [TrialPoint(number, params, TrialOutcome(outcome), value) for number, params, outcome, value in record]
    for number in range(9, 14):
        (point,) = suggest(spec, history, 1, seed=3)
        assert point == uninterrupted[number].parameters
        history.append(TrialPoint(number, point, TrialOutcome.SUCCEEDED, objective(point)))


FRESH_PROCESS = """
import json, sys
from trainsmart.api import HyperparamSweepSpec
from trainsmart.sweep import TrialOutcome, TrialPoint, suggest
spec, record = json.load(sys.stdin)
history = [TrialPoint(n, p, TrialOutcome(o), v) for n, p, o, v in record]
print(json.dumps(suggest(HyperparamSweepSpec.model_validate(spec), history, 3, 21)))
"""


def test_a_fresh_process_suggests_what_the_running_one_did() -> None:
    spec = sweep("tpe", startupTrials=5)
    history = run_sweep(spec, 10, seed=21)
    record = [[p.number, dict(p.parameters), p.outcome.value, p.value] for p in history]
    here = suggest(spec, history, 3, seed=21)
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS],
        input=json.dumps([spec.to_api(), record]),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert json.loads(result.stdout) == json.loads(json.dumps(here))


def test_a_lost_trial_leaves_a_gap_and_shifts_nothing() -> None:
    spec = sweep("random")
    full = run_sweep(spec, 6, seed=5)
    without_trial_2 = [point for point in full if point.number != 2]
    assert next_trial_number(without_trial_2) == 6  # never 5 again: its draw is already taken
    assert suggest(spec, without_trial_2, 2, seed=5) == suggest(spec, full, 2, seed=5)


def test_random_draws_depend_only_on_seed_and_trial_number() -> None:
    spec = sweep("random")
    alone = suggest(spec, [], 8, seed=9)
    with_history = suggest(spec, run_sweep(sweep("random"), 3, seed=1), 5, seed=9)
    assert with_history == alone[3:]
    assert trial_seed(0, 0) == 2919831455  # pinned: changing it would change every sweep's trials on upgrade
    assert len({trial_seed(seed, number) for seed in range(20) for number in range(50)}) == 1000


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_tpe_concentrates_near_the_optimum_of_a_quadratic(goal: str) -> None:
    sign = 1.0 if goal == "minimize" else -1.0

    def run(algorithm: str, seed: int) -> list[TrialPoint]:
        spec = sweep(algorithm, X, goal, startupTrials=8) if algorithm == "tpe" else sweep(algorithm, X, goal)
        history: list[TrialPoint] = []
        for number in range(40):
            (point,) = suggest(spec, history, 1, seed)
            value = sign * (float(point["x"]) - 3.0) ** 2
            history.append(TrialPoint(number, point, TrialOutcome.SUCCEEDED, value))
        return history

    tpe_distances, random_distances = [], []
    for seed in range(5):
        tpe, rand = run("tpe", seed), run("random", seed)
        assert [p.parameters for p in tpe[:8]] == [p.parameters for p in rand[:8]]  # startup is random
        tpe_distances += [abs(float(point.parameters["x"]) - 3.0) for point in tpe[20:]]
        random_distances += [abs(float(point.parameters["x"]) - 3.0) for point in rand[20:]]
    # Uniform draws on [0.01, 10] lie a median 2.5 from x=3. TPE keeps exploring (hyperopt's own fmin lands
    # about 1.6 away here too), but it must clearly beat random search.
    assert statistics.median(random_distances) > 2.0
    assert statistics.median(tpe_distances) < 0.75 * statistics.median(random_distances)


def test_trial_n_is_random_exactly_while_n_is_below_startup_trials_running_ones_included() -> None:
    tpe, rand = sweep("tpe", startupTrials=5), sweep("random")
    running = run_sweep(rand, 5, seed=2, finish=False)
    assert suggest(tpe, running[:4], 1, seed=2) == suggest(rand, running[:4], 1, seed=2)
    assert suggest(tpe, running, 1, seed=2) != suggest(rand, running, 1, seed=2)


def test_failed_metricless_early_stopped_and_running_trials_all_feed_tpe() -> None:
    spec = sweep("tpe", startupTrials=4)
    finished = run_sweep(spec, 8, seed=4)
    outcomes = [
        TrialOutcome.FAILED,
        TrialOutcome.NO_METRIC,
        TrialOutcome.EARLY_STOPPED,
        TrialOutcome.ACTIVE,
        TrialOutcome.SUCCEEDED,
    ]
    mixed = [
        TrialPoint(p.number, p.parameters, outcomes[p.number % 5], p.value if p.number % 5 in (2, 4) else None)
        for p in finished
    ]
    mixed.append(TrialPoint(8, finished[0].parameters, TrialOutcome.SUCCEEDED, float("nan")))  # treated as failed
    points = suggest(spec, mixed, 3, seed=4)
    assert len(points) == 3
    assert points != suggest(spec, finished, 3, seed=4)  # the outcomes changed what TPE saw


def test_duplicate_trial_numbers_are_refused_and_count_zero_is_empty() -> None:
    spec = sweep("random")
    history = run_sweep(spec, 2, seed=0)
    with pytest.raises(ValueError, match="more than once"):
        suggest(spec, [*history, history[0]], 1, seed=0)
    assert suggest(spec, history, 0, seed=0) == []
