"""bestTrial points at the model its value came from: the best trial's best checkpoint (issue 15).

Pins:
- bestTrial.checkpoint is the best trial's `status.checkpoint.best`, as the claim to mount (the operator's
  per-trial claim) and the path inside it, with the epoch and value, which are bestTrial's own;
- a best checkpoint of another metric than the sweep's objective, one outside the checkpoint volume, or a
  trial without a checkpoint volume gives no bestTrial.checkpoint (its model is not the one of the value).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from support import models
from trainsmart.api.sweep_status import BestTrialCheckpoint
from trainsmart.names import checkpoint_claim_name
from trainsmart.sweep.best_checkpoint import trial_best_checkpoint
from trainsmart.sweep.sweep_derive import derive_sweep_status

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {
    "trainer": {"config": {"dataset": {"name": "digits"}, "model": {"name": "mlp"}, "epochs": 5}},
    "checkpoint": {"size": "1Gi"},
}
SWEEP = models.make_sweep(
    {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "algorithm": {"name": "random", "seed": 7},
        "parameters": [{"name": "lr", "path": "trainer.config.learningRate", "type": "choice", "values": [0.01]}],
        "trialTemplate": TEMPLATE,
        "maxTrials": 2,
    }
)


def with_best(job: dict[str, Any], **best: Any) -> dict[str, Any]:
    fields = {"path": "/checkpoints/best/checkpoint.pt", "epoch": 4, "metric": "val_accuracy", "value": 0.969}
    job["status"]["checkpoint"] = {"latestEpoch": 5, "best": fields | best}
    return job


def trial(number: int, curve: list[float]) -> dict[str, Any]:
    return models.trial_job(SWEEP, number, "Succeeded", curve, params={"lr": 0.01}, created=T0)


def test_best_trial_carries_its_best_checkpoint_as_claim_and_path() -> None:
    jobs = [with_best(trial(0, [0.9, 0.95, 0.96, 0.969, 0.944])), with_best(trial(1, [0.5]), epoch=1, value=0.5)]
    status = derive_sweep_status(SWEEP, jobs, None, T0)
    assert status.best_trial is not None and status.best_trial.name == "tune-0"
    assert (status.best_trial.metric_value, status.best_trial.epoch) == (0.969, 4)
    assert status.best_trial.checkpoint == BestTrialCheckpoint(
        claim_name=checkpoint_claim_name("tune-0"), path="best/checkpoint.pt", epoch=4, value=0.969
    )


@pytest.mark.parametrize(
    "best",
    [{"metric": "val_loss"}, {"path": "/elsewhere/best.pt"}, {"path": "/checkpoints"}],
    ids=["another-metric", "outside-the-volume", "the-volume-itself"],
)
def test_a_best_checkpoint_that_is_not_the_values_model_is_not_shown(best: dict[str, Any]) -> None:
    assert trial_best_checkpoint(with_best(trial(0, [0.969]), **best), "val_accuracy") is None


def test_a_trial_without_a_checkpoint_volume_has_no_best_checkpoint() -> None:
    job = with_best(trial(0, [0.969]))
    del job["spec"]["checkpoint"]
    assert trial_best_checkpoint(job, "val_accuracy") is None
    status = derive_sweep_status(SWEEP, [trial(0, [0.969])], None, T0)
    assert status.best_trial is not None and status.best_trial.checkpoint is None
