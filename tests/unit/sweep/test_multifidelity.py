"""Algorithm bohb: multi-fidelity TPE on the values trials reached at ASHA's rungs, on synthetic curves.

Pins:
- the budgets are ASHA's rungs plus the template's epochs; a trial is observed at every budget its curve
  reached (a paused trial's rung values count, so do a running trial's), with its best value by then; a
  succeeded trial without a curve counts at the full budget; failed trials are observed nowhere;
- the modelled budget is the largest with at least minPointsInModel (default parameters + 1) observations;
  below that, trial n's draw is random search's draw for trial n;
- the rung values feed TPE: the documents at the modelled budget carry them as losses (failed trials as
  failures, pending ones as running, finished trials that never reached it left out), and proposals fitted
  on low-rung values only crowd around those values' optimum while random draws do not;
- randomFraction: 1 is random search exactly, the coin is per (seed, trial number);
- deterministic: same inputs give the same points, a batch equals one at a time, a fresh process (an
  operator restart) replays the same points from the same history;
- admission: bohb needs earlyStopping.rule asha and bohb settings need name bohb.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import HyperparamSweepSpec
from trainsmart.sweep import TrialOutcome, TrialPoint, suggest
from trainsmart.sweep.multifidelity import budget_docs, budget_epochs, budgets, modelled_budget, random_coin

X = [{"name": "x", "path": "trainer.config.learningRate", "type": "uniform", "min": 0.01, "max": 10.0}]
XY = [*X, {"name": "y", "path": "trainer.config.dropout", "type": "uniform", "min": 0.0, "max": 0.5}]


def spec_(parameters: list[dict[str, Any]] = X, epochs: int = 9, **bohb: Any) -> HyperparamSweepSpec:
    return HyperparamSweepSpec.model_validate(
        {
            "objective": {"metric": "val_loss", "goal": "minimize"},
            "algorithm": {"name": "bohb", **({"bohb": bohb} if bohb else {})},
            "parameters": parameters,
            "trialTemplate": {"trainer": {"config": {"epochs": epochs}}},
            "earlyStopping": {"rule": "asha", "minEpochs": 1, "reductionFactor": 3},
            "maxTrials": 100,
        }
    )


def paused(number: int, x: float, rung_values: list[float]) -> TrialPoint:
    return TrialPoint(number, {"x": x}, TrialOutcome.EARLY_STOPPED, min(rung_values), curve=rung_values)


def bowl(x: float) -> float:
    """A synthetic first-epoch val_loss with its optimum at x = 2."""
    return (x - 2.0) ** 2 + 1.0


def test_budgets_are_the_rungs_and_the_full_epochs() -> None:
    assert budget_epochs(spec_(epochs=9)) == [1, 3, 9]
    assert budget_epochs(spec_(epochs=12)) == [1, 3, 9, 12]
    assert budget_epochs(spec_(epochs=1)) == [1]


def test_each_trial_is_observed_at_every_budget_its_curve_reached() -> None:
    history = [
        paused(0, 1.0, [0.9]),  # paused at rung 1
        TrialPoint(1, {"x": 2.0}, TrialOutcome.ACTIVE, 0.5, curve=[0.8, 0.5, 0.6, 0.55]),  # running past rung 3
        TrialPoint(2, {"x": 3.0}, TrialOutcome.SUCCEEDED, 0.3, curve=[0.7, 0.6, 0.5, 0.4, 0.4, 0.4, 0.4, 0.35, 0.3]),
        TrialPoint(3, {"x": 4.0}, TrialOutcome.SUCCEEDED, 0.45),  # a deleted trial's row: no curve left
        TrialPoint(4, {"x": 5.0}, TrialOutcome.FAILED, None, curve=[0.7, float("nan")]),
        TrialPoint(5, {"x": 6.0}, TrialOutcome.ACTIVE),
    ]
    observed = {budget.epochs: budget.observed for budget in budgets(spec_(), history)}
    assert observed == {
        1: {0: 0.9, 1: 0.8, 2: 0.7},
        3: {1: 0.5, 2: 0.5},  # the best by epoch 3, not the value at epoch 3
        9: {2: 0.3, 3: 0.45},
    }


def test_the_largest_budget_with_enough_observations_is_modelled() -> None:
    spec = spec_(XY)  # two parameters: 3 observations needed
    history = [
        TrialPoint(n, {"x": 1.0 + n, "y": 0.1}, TrialOutcome.EARLY_STOPPED, 0.5, curve=[0.5] * length)
        for n, length in enumerate([1, 1, 3, 3, 3, 9])
    ]
    assert modelled_budget(spec, history[:2]) is None
    assert modelled_budget(spec, history[:3]).epochs == 1  # type: ignore[union-attr]
    assert modelled_budget(spec, history[:5]).epochs == 3  # type: ignore[union-attr]
    assert modelled_budget(spec, history).epochs == 3  # type: ignore[union-attr]  # only one at 9 epochs
    assert modelled_budget(spec_(XY, minPointsInModel=1), history).epochs == 9  # type: ignore[union-attr]


def test_below_the_model_trial_n_gets_random_searchs_draw_for_n() -> None:
    spec = spec_(XY)
    random_spec = HyperparamSweepSpec.model_validate({**spec.to_api(), "algorithm": {"name": "random"}})
    history = [paused(0, 1.0, [0.9]), paused(1, 2.0, [0.8])]  # 2 < 3 observations
    assert suggest(spec, history, 3, seed=5) == suggest(random_spec, history, 3, seed=5)
    assert suggest(spec, [], 4, seed=5) == suggest(random_spec, [], 4, seed=5)


def test_the_rung_values_are_what_tpe_sees_at_the_modelled_budget() -> None:
    spec = spec_(minPointsInModel=2)
    history = [
        paused(0, 1.0, [0.9]),
        TrialPoint(1, {"x": 2.0}, TrialOutcome.ACTIVE, 0.4, curve=[0.4, 0.3]),
        TrialPoint(2, {"x": 3.0}, TrialOutcome.FAILED, None, curve=[0.2]),
        TrialPoint(3, {"x": 4.0}, TrialOutcome.ACTIVE),
        TrialPoint(4, {"x": 5.0}, TrialOutcome.EARLY_STOPPED, 0.5),  # stopped for the budget before epoch 1
    ]
    budget = modelled_budget(spec, history)
    assert budget is not None and budget.epochs == 1
    docs = {doc["tid"]: doc for doc in budget_docs(spec, history, budget)}
    assert sorted(docs) == [0, 1, 2, 3]
    assert [docs[tid]["result"].get("loss") for tid in (0, 1)] == [0.9, 0.4]
    assert docs[2]["result"]["status"] == "fail"
    assert docs[3]["result"]["status"] == "running"
    assert docs[0]["misc"]["vals"]["x"] == [1.0]


def test_proposals_fitted_on_low_rung_values_crowd_around_their_optimum() -> None:
    """Every trial is paused at rung 1: only the low-fidelity values can guide the search."""

    def distances(spec: HyperparamSweepSpec, seed: int) -> list[float]:
        history: list[TrialPoint] = []
        for number in range(30):
            (point,) = suggest(spec, history, 1, seed)
            x = point["x"]
            assert isinstance(x, float)
            history.append(paused(number, x, [bowl(x)]))
        return [abs(point.parameters["x"] - 2.0) for point in history[10:]]  # type: ignore[operator]

    modelled = [statistics.median(distances(spec_(randomFraction=0), seed)) for seed in range(3)]
    unguided = [statistics.median(distances(spec_(randomFraction=1), seed)) for seed in range(3)]
    assert statistics.fmean(modelled) < 0.5 * statistics.fmean(unguided)


def test_random_fraction_one_is_random_search_and_the_coin_is_per_trial() -> None:
    spec = spec_(randomFraction=1)
    random_spec = HyperparamSweepSpec.model_validate({**spec.to_api(), "algorithm": {"name": "random"}})
    history = [paused(n, 0.5 + n, [bowl(0.5 + n)]) for n in range(6)]
    assert suggest(spec, history, 3, seed=1) == suggest(random_spec, history, 3, seed=1)
    coins = [random_coin(1, n) for n in range(200)]
    assert coins == [random_coin(1, n) for n in range(200)]
    assert 0.25 < sum(coin < 1 / 3 for coin in coins) / len(coins) < 0.42
    assert coins != [random_coin(2, n) for n in range(200)]


def _mixed_history() -> list[TrialPoint]:
    history = []
    for number in range(9):
        x = 0.3 + 1.1 * number
        curve = [bowl(x) - 0.1 * epoch for epoch in range(1 + 2 * (number % 3) ** 2)]
        outcome = TrialOutcome.EARLY_STOPPED if len(curve) < 9 else TrialOutcome.SUCCEEDED
        history.append(TrialPoint(number, {"x": x}, outcome, min(curve), curve=curve))
    return history


def test_same_inputs_same_points_and_a_batch_equals_one_at_a_time() -> None:
    spec = spec_(randomFraction=0.3)
    history = _mixed_history()
    batch = suggest(spec, history, 4, seed=9)
    assert batch == suggest(spec, list(reversed(history)), 4, seed=9)
    one_at_a_time: list[dict[str, Any]] = []
    grown = list(history)
    for number in range(9, 13):
        (point,) = suggest(spec, grown, 1, seed=9)
        one_at_a_time.append(point)
        grown.append(TrialPoint(number, point, TrialOutcome.ACTIVE))
    assert batch == one_at_a_time
    assert batch != suggest(spec, history, 4, seed=10)


REPLAY = """
import json, sys
from trainsmart.api import HyperparamSweepSpec
from trainsmart.sweep import TrialOutcome, TrialPoint, suggest
spec = HyperparamSweepSpec.model_validate(json.loads(sys.argv[1]))
history = [TrialPoint(h["n"], h["p"], TrialOutcome(h["o"]), h["v"], curve=h["c"]) for h in json.loads(sys.argv[2])]
print(json.dumps(suggest(spec, history, 4, seed=9)))
"""


def test_a_fresh_process_replays_the_same_points() -> None:
    spec = spec_(randomFraction=0.3)
    history = _mixed_history()
    encoded = [
        {"n": h.number, "p": dict(h.parameters), "o": h.outcome.value, "v": h.value, "c": list(h.curve)}
        for h in history
    ]
    replayed = subprocess.run(
        [sys.executable, "-c", REPLAY, json.dumps(spec.to_api()), json.dumps(encoded)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(replayed.stdout) == suggest(spec, history, 4, seed=9)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"earlyStopping": {"rule": "median"}}, "algorithm.name bohb needs earlyStopping.rule asha"),
        ({"earlyStopping": {"rule": "none"}}, "algorithm.name bohb needs earlyStopping.rule asha"),
        ({"algorithm": {"name": "tpe", "bohb": {}}}, "bohb settings apply only to name bohb"),
        ({"algorithm": {"name": "bohb", "bohb": {"randomFraction": 1.5}}}, "randomFraction"),
    ],
)
def test_admission_refuses_bohb_without_its_requirements(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HyperparamSweepSpec.model_validate({**spec_().to_api(), **changes})
