"""The HyperparamSweep spec model: search spaces validated per type, and trials checked against the template.

Pins:
- each parameter type needs exactly its settings (min/max, q, mu/sigma, values, step) and sane bounds;
- grid search needs a finite set per parameter, caps the grid, and is the only user of `step`;
- maxTrials is required except for grid, whose size is the natural end;
- parallelTrials is a cap: above maxTrials or the grid's size it is accepted (the plan never runs more than
  remain), below 1 it is refused;
- a parameter's path must name a settable scalar in the trial template, of a compatible type, and its edge
  values must make a valid trial (so a dropout range up to 1.5 is refused at admission);
- paths set nested fields and map keys with dots; `apply_parameters` validates the result;
- budget durations, retention, TPE settings and early stopping are checked with the fix in the message.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import (
    AlgorithmName,
    HyperparamSweepSpec,
    Parameter,
    TrainingJobSpec,
    apply_parameters,
    format_validation_error,
    resolve_path,
)
from trainsmart.api.sweep_spec import parse_duration

LR = {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 1e-1}
SWEEP: dict[str, Any] = {
    "objective": {"metric": "val_accuracy", "goal": "maximize", "target": 0.98},
    "algorithm": {"name": "tpe", "seed": 7, "tpe": {"startupTrials": 5}},
    "parameters": [
        LR,
        {"name": "batch", "path": "trainer.config.batchSize", "type": "choice", "values": [32, 64, 128]},
        {"name": "dropout", "path": "trainer.config.dropout", "type": "uniform", "min": 0.0, "max": 0.5},
        {"name": "width", "path": "trainer.config.epochs", "type": "quniform", "min": 2, "max": 10, "q": 2},
        {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "adamw"]},
    ],
    "trialTemplate": {"trainer": {"config": {"epochs": 5}}, "checkpoint": {"size": "1Gi"}},
    "maxTrials": 20,
    "parallelTrials": 4,
    "maxFailedTrials": 3,
    "budget": {"maxDuration": "2h30m", "maxGpuHours": 10},
    "earlyStopping": {"rule": "asha", "minEpochs": 1, "reductionFactor": 3},
    "trialRetention": {"policy": "keepBest", "count": 3},
}


def with_changes(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(SWEEP)
    spec.update(changes)
    return spec


def errors_of(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        HyperparamSweepSpec.model_validate(spec)
    return format_validation_error(info.value)


def test_a_typical_sweep_parses() -> None:
    sweep = HyperparamSweepSpec.model_validate(SWEEP)
    assert sweep.algorithm.tpe is not None
    assert (sweep.algorithm.tpe.startup_trials, sweep.algorithm.tpe.gamma) == (5, 0.25)
    assert sweep.budget is not None
    assert sweep.budget.max_duration_seconds == 9000
    assert sweep.resumes_promoted()  # the template has a checkpoint
    assert sweep.planned_trials() == 20
    assert HyperparamSweepSpec.model_validate(sweep.to_api()) == sweep


def test_a_grid_sweep_needs_no_max_trials_and_plans_the_whole_grid() -> None:
    spec = with_changes(
        algorithm={"name": "grid"},
        maxTrials=None,
        parameters=[
            {
                "name": "lr",
                "path": "trainer.config.learningRate",
                "type": "loguniform",
                "min": 1e-4,
                "max": 1e-1,
                "step": 10,
            },
            {"name": "bs", "path": "trainer.config.batchSize", "type": "randint", "min": 16, "max": 20},
            {"name": "wd", "path": "trainer.config.weightDecay", "type": "uniform", "min": 0, "max": 0.3, "step": 0.1},
            {"name": "ep", "path": "trainer.config.epochs", "type": "quniform", "min": 1, "max": 10, "q": 3},
            {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]},
        ],
        parallelTrials=1,
    )
    sweep = HyperparamSweepSpec.model_validate(spec)
    assert [p.grid_size() for p in sweep.parameters] == [4, 5, 4, 3, 2]
    assert sweep.grid_size() == 4 * 5 * 4 * 3 * 2
    assert sweep.planned_trials() == 480
    capped = HyperparamSweepSpec.model_validate({**spec, "maxTrials": 100})
    assert capped.planned_trials() == 100


@pytest.mark.parametrize(
    ("parameter", "expected"),
    [
        ({"type": "uniform", "min": 1}, "type uniform needs min and max; set max"),
        ({"type": "quniform", "min": 1, "max": 5}, "type quniform needs min and max and q; set q"),
        ({"type": "normal", "mu": 0}, "type normal needs mu and sigma; set sigma"),
        ({"type": "choice"}, "type choice needs values; set values"),
        ({"type": "uniform", "min": 0, "max": 1, "sigma": 1}, "sigma does not apply to type uniform"),
        ({"type": "randint", "min": 0, "max": 5, "step": 1}, "step does not apply to type randint"),
        ({"type": "uniform", "min": 1, "max": 1}, "max (1) must be greater than min (1)"),
        ({"type": "loguniform", "min": 0, "max": 1}, "min (0) must be > 0 for loguniform"),
        ({"type": "randint", "min": 0.5, "max": 4}, "randint bounds must be integers"),
        ({"type": "quniform", "min": 0, "max": 1, "q": 2}, "q (2) is larger than max - min (1)"),
        ({"type": "loguniform", "min": 1e-4, "max": 1e-1, "step": 0.5}, "step (0.5) of a loguniform grid is a factor"),
        ({"type": "normal", "mu": 0, "sigma": 0}, "Input should be greater than 0"),
        ({"type": "choice", "values": []}, "List should have at least 1 item"),
        ({"type": "choice", "values": [1, 1]}, "values contains duplicates"),
        ({"type": "beta", "min": 0, "max": 1}, "Input should be 'uniform'"),
    ],
)
def test_parameters_need_exactly_the_settings_of_their_type(parameter: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        Parameter.model_validate({"name": "p", "path": "trainer.config.learningRate", **parameter})
    assert any(expected in message for message in format_validation_error(info.value, prefix="p")), info.value


def test_choice_keeps_the_json_type_of_each_value() -> None:
    parameter = Parameter.model_validate({"name": "p", "path": "x", "type": "choice", "values": [1, 1.0, "1", True]})
    assert [type(value) for value in parameter.values or ()] == [int, float, str, bool]


BAD_SWEEPS: list[tuple[dict[str, Any], str]] = [
    ({"maxTrials": None}, "spec: maxTrials is required for algorithm tpe"),
    ({"maxTrials": 0}, "spec.maxTrials: Input should be greater than or equal to 1"),
    ({"parallelTrials": 0}, "spec.parallelTrials: Input should be greater than or equal to 1"),
    ({"parameters": []}, "spec.parameters: List should have at least 1 item"),
    ({"parameters": [LR, {**LR, "path": "trainer.config.weightDecay"}]}, "spec: parameters[1].name 'lr' is used"),
    ({"parameters": [LR, {**LR, "name": "lr2"}]}, "spec: parameters[1].path 'trainer.config.learningRate' is used"),
    (
        {"parameters": [{**LR, "path": "trainer.config.learningrate"}]},
        "spec: parameters[0] (lr): TrainerConfig has no field 'learningrate'",
    ),
    (
        {"parameters": [{**LR, "path": "trainer.config.learning_rate"}]},
        "spec: parameters[0] (lr): TrainerConfig has no field 'learning_rate'; known fields: batchSize,",
    ),
    ({"parameters": [{**LR, "path": "trainer.config"}]}, "spec: parameters[0] (lr): path 'trainer.config' names an"),
    ({"parameters": [{**LR, "path": "trainer.env.x"}]}, "spec: parameters[0] (lr): path 'trainer.env.x' goes into a"),
    ({"parameters": [{**LR, "path": "affinity.x"}]}, "spec: parameters[0] (lr): path 'affinity.x' goes into a free"),
    ({"parameters": [{**LR, "path": "suspend"}]}, "spec: parameters[0] (lr): path 'suspend' is controlled by"),
    ({"parameters": [{**LR, "path": "trainer..config"}]}, "spec: parameters[0] (lr): path 'trainer..config' has an"),
    (
        {"parameters": [{**LR, "path": "replicas"}]},
        "spec: parameters[0] (lr): replicas is an integer; use randint, choice of integers, or an integer q",
    ),
    (
        {"parameters": [{"name": "o", "path": "trainer.config.optimizer.name", "type": "uniform", "min": 0, "max": 1}]},
        "spec: parameters[0] (o): trainer.config.optimizer.name takes a str; use type choice",
    ),
    (
        {"parameters": [{"name": "d", "path": "trainer.config.dropout", "type": "uniform", "min": 0.1, "max": 1.5}]},
        "spec: parameters[0] (d): the value 1.5 makes an invalid trial: trialTemplate.trainer.config.dropout: Input "
        "should be less than 1",
    ),
    (
        {"parameters": [{"name": "o", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adamx"]}]},
        "spec: parameters[0] (o): the value 'adamx' makes an invalid trial: trialTemplate.trainer.config.optimizer",
    ),
    (
        {"parameters": [{**LR, "step": 10}]},
        "spec: parameters[0].step is used by grid search only; remove it or set algorithm.name: grid",
    ),
    (
        {"algorithm": {"name": "grid"}},
        "spec: parameters[0] (lr): has no finite grid",
    ),
    (
        {
            "algorithm": {"name": "grid"},
            "parameters": [
                {"name": f"p{i}", "path": f"trainer.config.{path}", "type": "randint", "min": 1, "max": 101}
                for i, path in enumerate(["epochs", "batchSize", "seed"])
            ],
        },
        "spec: the grid has 1030301 points (more than 1000000)",
    ),
    ({"algorithm": {"name": "random", "tpe": {}}}, "spec.algorithm: tpe settings apply only to name tpe"),
    ({"algorithm": {"name": "tpe", "tpe": {"gamma": 1}}}, "spec.algorithm.tpe.gamma: Input should be less than 1"),
    ({"objective": {"metric": "val acc", "goal": "maximize"}}, "spec.objective.metric: String should match"),
    ({"objective": {"metric": "val_acc", "goal": "up"}}, "spec.objective.goal: Input should be 'maximize'"),
    ({"budget": {"maxDuration": "3600"}}, "spec.budget.maxDuration: String should match pattern"),
    ({"budget": {"maxDuration": "0h"}}, "spec.budget: maxDuration must be > 0"),
    ({"budget": {"maxGpuHours": 0}}, "spec.budget.maxGpuHours: Input should be greater than 0"),
    ({"trialRetention": {"policy": "keepBest"}}, "spec.trialRetention: count is required with policy keepBest"),
    ({"trialRetention": {"policy": "keepAll", "count": 2}}, "spec.trialRetention: count is required with policy"),
    ({"earlyStopping": {"rule": "asha", "reductionFactor": 1}}, "spec.earlyStopping.reductionFactor: Input should"),
    (
        {"earlyStopping": {"rule": "asha", "resumePromoted": True}, "trialTemplate": {}},
        "spec: earlyStopping.resumePromoted needs trialTemplate.checkpoint",
    ),
    ({"trialTemplate": {"suspend": True}}, "spec: trialTemplate.suspend must be false"),
    ({"trialTemplate": {"replicas": 0}}, "spec.trialTemplate.replicas: Input should be greater than or equal to 1"),
    ({"trialTemplate": None}, "spec.trialTemplate: Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("changes", "expected"), BAD_SWEEPS)
def test_bad_sweeps_are_rejected_naming_the_field_and_the_fix(changes: dict[str, Any], expected: str) -> None:
    messages = errors_of(with_changes(**changes))
    assert any(message.startswith(expected) for message in messages), messages


def test_resume_promoted_defaults_to_whether_the_template_checkpoints() -> None:
    without = HyperparamSweepSpec.model_validate(with_changes(trialTemplate={}))
    assert not without.resumes_promoted()
    explicit = HyperparamSweepSpec.model_validate(with_changes(earlyStopping={"rule": "asha", "resumePromoted": False}))
    assert not explicit.resumes_promoted()


def test_apply_parameters_sets_nested_fields_map_keys_and_creates_missing_objects() -> None:
    template = TrainingJobSpec.model_validate({"resources": {"requests": {"memory": "1Gi"}}})
    trial = apply_parameters(
        template,
        {
            "trainer.config.learningRate": 0.01,
            "trainer.config.optimizer.name": "sgd",
            "resources.requests.cpu": 2,
            "nodeSelector.nvidia.com/gpu.product": "NVIDIA-A100",
            "replicas": 3.0,
        },
    )
    assert trial.trainer.config is not None
    assert (trial.trainer.config.learning_rate, trial.trainer.config.optimizer.name) == (0.01, "sgd")
    assert trial.resources.requests == {"memory": "1Gi", "cpu": 2}
    assert trial.node_selector == {"nvidia.com/gpu.product": "NVIDIA-A100"}
    assert trial.replicas == 3
    assert template.trainer.config is None  # the template is not modified


def test_apply_parameters_leaves_a_dumped_template_untouched() -> None:
    template = TrainingJobSpec.model_validate({"trainer": {"config": {"epochs": 3}}}).to_api()
    before = copy.deepcopy(template)
    trial = apply_parameters(template, {"trainer.config.epochs": 5, "trainer.config.optimizer.name": "sgd"})
    assert trial.trainer.config is not None
    assert (trial.trainer.config.epochs, trial.trainer.config.optimizer.name) == (5, "sgd")
    assert template == before


def test_apply_parameters_validates_the_trial() -> None:
    with pytest.raises(ValidationError, match="dropout"):
        apply_parameters(TrainingJobSpec(), {"trainer.config.dropout": 2.0})


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("replicas", "int"),
        ("trainer.config.learningRate", "float"),
        ("trainer.config.optimizer.nesterov", "bool"),
        ("trainer.config.optimizer.name", "str"),
        ("trainer.image", "str"),
        ("resources.limits.memory", "any"),
        ("nodeSelector.kubernetes.io/arch", "str"),
        ("trainer.config.model.hiddenSizes", "list"),
        ("trainer.config.model.hiddenSizes.0", "int"),
        ("trainer.config.optimizer", "object"),
        ("trainer.config.model.hiddenSizes.first", None),
    ],
)
def test_resolve_path_reports_the_kind_of_value(path: str, kind: str | None) -> None:
    if kind is None:
        with pytest.raises(ValueError, match="index it with a number"):
            resolve_path(path)
    else:
        assert resolve_path(path) == kind


@pytest.mark.parametrize(("text", "seconds"), [("45s", 45), ("90m", 5400), ("1h30m", 5400), ("1.5h", 5400)])
def test_durations_use_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1d", "1 h", "h1", "3600"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_algorithm_defaults_to_tpe_with_a_seed_from_the_object() -> None:
    sweep = HyperparamSweepSpec.model_validate(with_changes(algorithm={}))
    assert sweep.algorithm.name == AlgorithmName.TPE
    assert sweep.algorithm.seed is None


def test_trial_template_may_not_delete_trials_by_ttl() -> None:
    changes = with_changes(trialTemplate={"runPolicy": {"ttlSecondsAfterFinished": 0}})
    with pytest.raises(ValidationError, match=r"ttlSecondsAfterFinished is not allowed.*trialRetention"):
        HyperparamSweepSpec.model_validate(changes)


def test_trials_may_not_share_one_checkpoint_claim() -> None:
    changes = with_changes(trialTemplate={"checkpoint": {"claimName": "shared"}})
    with pytest.raises(ValidationError, match=r"checkpoint.claimName would give every trial the same"):
        HyperparamSweepSpec.model_validate(changes)


@pytest.mark.parametrize(
    "changes",
    [
        {"parallelTrials": 50},  # above maxTrials (20)
        {
            "algorithm": {"name": "grid"},
            "maxTrials": None,
            "earlyStopping": {},
            "parameters": [{"name": "b", "path": "trainer.config.batchSize", "type": "choice", "values": [32, 64]}],
            "parallelTrials": 5,
        },  # above a 2-point grid
    ],
    ids=["above-max-trials", "above-grid-size"],
)
def test_parallel_trials_above_what_remains_is_accepted_as_a_cap(changes: dict[str, Any]) -> None:
    spec = HyperparamSweepSpec.model_validate(
        {key: value for key, value in with_changes(**changes).items() if value is not None}
    )
    assert spec.parallel_trials == changes["parallelTrials"]
