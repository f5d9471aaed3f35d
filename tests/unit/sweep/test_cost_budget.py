"""A sweep's estimated cost, its `maxCost` budget, and the strings `kubectl get hps` prints.

Pins:
- estimatedCost is the sum of the trials' (a trial deleted by retention still counts, from its row), in
  the operator's currency, with a headline in cents; none without a price and without trial costs;
- reaching maxCost ends the sweep like maxGpuHours: BudgetExhausted True (MaxCostReached, the amounts in
  the message), the running trials stopped with that reason, nothing new created;
- below it the sweep goes on and the condition says what was spent;
- maxCost without a configured price does not end the sweep: BudgetExhausted False (NoPriceConfigured) and
  one Warning Event, not repeated while that holds;
- maxCost must be > 0; bestTrial.headline is the objective to 4 significant digits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pydantic
import pytest

from support import models
from trainsmart.api import HyperparamSweep, HyperparamSweepStatus
from trainsmart.api.conditions import Reason
from trainsmart.settings import GpuPricing
from trainsmart.sweep.sweep_decision import decide_sweep
from trainsmart.sweep.sweep_derive import derive_sweep_status
from trainsmart.sweep.sweep_events import sweep_events

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=10)
PRICING = GpuPricing(price_per_gpu_hour=2.0, currency="EUR")


def make_sweep(**spec: Any) -> HyperparamSweep:
    body = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "random", "seed": 7},
        "parameters": [
            {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1}
        ],
        "trialTemplate": {
            "trainer": {"config": {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "epochs": 3}}
        },
        "maxTrials": 6,
        "parallelTrials": 2,
        **spec,
    }
    return models.make_sweep(body)


_trial = partial(models.trial_job, params={"lr": 0.01}, created=T0)


def trial(sweep: HyperparamSweep, number: int, phase: str, curve: list[float], cost: float | None) -> dict[str, Any]:
    job = _trial(sweep, number, phase, curve)
    if cost is not None:
        job["status"]["estimatedCost"] = cost
        job["status"]["costCurrency"] = PRICING.currency
    return job


def condition(status: HyperparamSweepStatus, type_: str) -> Any:
    return next(c for c in status.conditions if c.type == type_)


def test_the_sweep_cost_sums_its_trials_also_those_retention_deleted() -> None:
    sweep = make_sweep()
    jobs = [trial(sweep, 0, "Succeeded", [0.8, 0.9791666666666666], 1.25), trial(sweep, 1, "Running", [0.5], 0.5)]
    first = derive_sweep_status(sweep, jobs, None, NOW, pricing=PRICING)
    assert (first.estimated_cost, first.cost_currency, first.cost_headline) == (1.75, "EUR", "€1.75")
    assert first.trials[0].estimated_cost == 1.25
    assert first.best_trial is not None and first.best_trial.headline == "val_accuracy=0.9792"
    deleted = derive_sweep_status(sweep, jobs[1:], first, NOW, pricing=PRICING)  # trial 0 deleted by retention
    assert deleted.estimated_cost == 1.75


def test_without_a_price_or_trial_costs_the_sweep_shows_no_cost() -> None:
    sweep = make_sweep()
    status = derive_sweep_status(sweep, [trial(sweep, 0, "Running", [0.5], None)], None, NOW)
    assert (status.estimated_cost, status.cost_currency, status.cost_headline) == (None, None, None)


def test_reaching_max_cost_ends_the_sweep_like_max_gpu_hours() -> None:
    sweep = make_sweep(budget={"maxCost": 2})
    jobs = [trial(sweep, 0, "Succeeded", [0.9], 1.5), trial(sweep, 1, "Running", [0.6], 0.75)]
    decision = decide_sweep(sweep, jobs, None, NOW, PRICING)
    budget = condition(decision.status, "BudgetExhausted")
    assert (budget.status, budget.reason) == ("True", Reason.MAX_COST_REACHED)
    assert budget.message == "€2.25 estimated cost of maxCost €2.00"
    assert [(a.name, a.reason) for a in decision.plan.suspend] == [(jobs[1]["metadata"]["name"], "MaxCostReached")]
    assert decision.plan.create == () and decision.trials_to_create == ()


def test_below_max_cost_the_sweep_goes_on_and_says_what_was_spent() -> None:
    sweep = make_sweep(budget={"maxCost": 100})
    decision = decide_sweep(sweep, [trial(sweep, 0, "Running", [0.6], 0.75)], None, NOW, PRICING)
    budget = condition(decision.status, "BudgetExhausted")
    assert (budget.status, budget.reason) == ("False", Reason.WITHIN_BUDGET)
    assert "€0.75 estimated cost" in budget.message
    assert len(decision.plan.create) == 1


def test_max_cost_without_a_price_does_not_apply_and_warns_once() -> None:
    sweep = make_sweep(budget={"maxCost": 0.01})
    jobs = [trial(sweep, 0, "Running", [0.6], None)]
    first = decide_sweep(sweep, jobs, None, NOW, None)
    budget = condition(first.status, "BudgetExhausted")
    assert (budget.status, budget.reason) == ("False", Reason.NO_PRICE_CONFIGURED)
    assert "no GPU price" in budget.message and "cost.pricePerGpuHour" in budget.message
    assert len(first.plan.create) == 1 and first.plan.suspend == ()
    warnings = [e for e in sweep_events(None, first.status) if e.reason == Reason.NO_PRICE_CONFIGURED]
    assert [e.type for e in warnings] == ["Warning"]
    again = decide_sweep(sweep, jobs, first.status, NOW + timedelta(minutes=1), None)
    assert not [e for e in sweep_events(first.status, again.status) if e.reason == Reason.NO_PRICE_CONFIGURED]


@pytest.mark.parametrize("value", [0, -1])
def test_max_cost_must_be_positive(value: float) -> None:
    with pytest.raises(pydantic.ValidationError, match=r"maxCost|max_cost"):
        make_sweep(budget={"maxCost": value})
