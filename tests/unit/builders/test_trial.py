"""A sweep's trial TrainingJob, and how the TrainingJob status honours the sweep's objective.

Pins:
- the trial is the template with each parameter at its path (types kept), named `<sweep>-<number>`,
  labelled with the sweep and the number, annotated with its parameters (JSON, read back equal) and the
  sweep's objective metric and goal, and owned by the sweep (controller reference with its uid);
- it passes the TrainingJob admission rules; the template is not modified;
- the suspend/resume patches set spec.suspend and the `stopped` annotation together (resume removes it);
- a trial's status history tracks the sweep's objective (and its direction), not the trainer's own
  early-stopping metric.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from support import models
from trainsmart.admission.rules import validate_trainingjob
from trainsmart.api import HyperparamSweep, TrainingJob
from trainsmart.builders.trial import build_trial, decode_parameters, resume_patch, suspend_patch
from trainsmart.names import (
    OBJECTIVE_METRIC_ANNOTATION,
    PARAMETERS_ANNOTATION,
    STOPPED_ANNOTATION,
    SWEEP_NAME_LABEL,
    TRIAL_NUMBER_LABEL,
    trial_selector,
)
from trainsmart.status import derive_trainingjob_status
from trainsmart_trainer.contract import TrainerReport

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {
    "trainer": {
        "config": {
            "dataset": {"name": "digits"},
            "epochs": 3,
            "earlyStopping": {"metric": "val_loss", "mode": "min"},
        }
    },
    "checkpoint": {"size": "1Gi"},
}


def make_sweep() -> HyperparamSweep:
    spec = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "maxTrials": 3,
        "parameters": [
            {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1},
            {"name": "width", "path": "trainer.config.batchSize", "type": "randint", "min": 8, "max": 64},
            {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]},
        ],
        "trialTemplate": TEMPLATE,
    }
    return models.make_sweep(spec, generation=None)


PARAMS: dict[str, Any] = {"lr": 0.003, "width": 17, "opt": "sgd"}


def test_trial_is_the_template_with_the_parameters_at_their_paths() -> None:
    sweep = make_sweep()
    before = sweep.spec.trial_template.to_api()
    manifest = build_trial(sweep, 2, PARAMS)
    config = manifest["spec"]["trainer"]["config"]
    assert (config["learningRate"], config["batchSize"], config["optimizer"]["name"]) == (0.003, 17, "sgd")
    assert isinstance(config["batchSize"], int)
    assert manifest["spec"]["checkpoint"]["size"] == "1Gi" and config["epochs"] == 3
    assert sweep.spec.trial_template.to_api() == before


def test_trial_name_labels_annotations_and_owner() -> None:
    manifest = build_trial(make_sweep(), 2, PARAMS)
    meta = manifest["metadata"]
    assert (manifest["kind"], meta["name"], meta["namespace"]) == ("TrainingJob", "tune-2", "ml")
    assert meta["labels"][SWEEP_NAME_LABEL] == "tune" and meta["labels"][TRIAL_NUMBER_LABEL] == "2"
    assert trial_selector("tune") == f"{SWEEP_NAME_LABEL}=tune"
    assert decode_parameters(meta["annotations"][PARAMETERS_ANNOTATION]) == PARAMS
    assert meta["annotations"][OBJECTIVE_METRIC_ANNOTATION] == "val_accuracy"
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "HyperparamSweep",
        "tune",
        "sweep-uid",
        True,
    )
    assert validate_trainingjob(manifest) == []


def test_unreadable_parameter_annotations_read_as_none() -> None:
    assert decode_parameters(None) is None
    assert decode_parameters("not json") is None
    assert decode_parameters('["a list"]') is None
    assert decode_parameters('{"a": null}') is None


def test_suspend_and_resume_patches_carry_the_reason_with_the_suspension() -> None:
    stop = suspend_patch("EarlyStopped", "worse than the median")
    assert stop["spec"] == {"suspend": True}
    assert stop["metadata"]["annotations"][STOPPED_ANNOTATION] == "EarlyStopped"
    assert suspend_patch(None)["metadata"]["annotations"][STOPPED_ANNOTATION] is None
    resume = resume_patch()
    assert resume["spec"] == {"suspend": False} and resume["metadata"]["annotations"][STOPPED_ANNOTATION] is None


def test_a_trial_status_history_tracks_the_sweep_objective_not_the_trainer_metric() -> None:
    manifest = build_trial(make_sweep(), 0, PARAMS)
    job = TrainingJob.model_validate({**manifest, "metadata": {**manifest["metadata"], "uid": "job-uid"}})
    reports = [
        TrainerReport.model_validate(
            {
                "job": {"namespace": "ml", "name": "tune-0"},
                "kind": "epoch",
                "time": NOW.isoformat(),
                "epoch": epoch,
                "totalEpochs": 3,
                "objectiveMetric": "val_loss",  # what the trainer watches for its own early stopping
                "metrics": {"val_loss": loss, "val_accuracy": accuracy},
                "device": {"type": "cpu"},
            }
        )
        for epoch, loss, accuracy in ((1, 0.9, 0.7), (2, 0.5, 0.9), (3, 0.6, 0.8))
    ]
    status = derive_trainingjob_status(job, [], None, reports, NOW)
    assert status.metrics is not None
    assert status.metrics.objective == "val_accuracy"
    assert [(p.epoch, p.value) for p in status.metrics.history] == [(1, 0.7), (2, 0.9), (3, 0.8)]
    assert status.metrics.best["val_accuracy"] == 0.9
