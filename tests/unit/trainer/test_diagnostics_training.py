"""Each diagnostic provoked by real training (tiny data, 1-5 epochs), end to end through the loop.

Pins:
- a huge learning rate: ExplodingGradients first, then NonFiniteLoss naming the step, a permanent exit code
  and the fix in the final result's reason;
- a deep net with large weights (clipped, so it keeps going): ExplodingGradients, training completes;
- a deep sigmoid net: VanishingGradients naming the first layer;
- a big model on tiny noisy data: Overfitting after val loss rose for 3 epochs while train loss fell;
- a learning rate of 1e-7: Underfitting after 2 epochs;
- imbalanced synthetic labels: ClassImbalance Warning without class weights, Info with `balanced` ones.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from torch import nn

from trainsmart_trainer.components import Components, RunOutcome, default_components
from trainsmart_trainer.config import TrainerConfig
from trainsmart_trainer.contract import DiagnosticType, ExitCode, FinalStatus, Severity
from trainsmart_trainer.data import DataBundle
from trainsmart_trainer.ddp import DistInfo
from trainsmart_trainer.device import CudaProbe, resolve_device
from trainsmart_trainer.loop import TrainingRun
from trainsmart_trainer.settings import RuntimeSettings

CPU = resolve_device(simulated=False, visible_devices=None, cuda=CudaProbe(available=False))


def synthetic(**dataset: Any) -> dict[str, Any]:
    return {"name": "synthetic", "numSamples": 300, "numFeatures": 8, **dataset}


def train(config: dict[str, Any], components: Components | None = None) -> RunOutcome:
    run = TrainingRun(TrainerConfig.model_validate(config), RuntimeSettings(), DistInfo(), CPU, components=components)
    return run.execute()


def types(outcome: RunOutcome) -> list[DiagnosticType]:
    return [item.type for item in outcome.diagnostics]


def with_model(build: Any) -> Components:
    return dataclasses.replace(default_components(), build_model=build)


def test_a_huge_learning_rate_explodes_then_fails_fast_on_a_non_finite_loss() -> None:
    config = {
        "dataset": synthetic(task="regression"),
        "model": {"hiddenSizes": [32]},
        "optimizer": {"name": "sgd"},
        "learningRate": 10,
        "validationSplit": 0,
        "epochs": 5,
    }
    outcome = train(config)
    assert outcome.exit_code == ExitCode.PERMANENT_FAILURE and outcome.final.status == FinalStatus.FAILED
    assert types(outcome) == [DiagnosticType.EXPLODING_GRADIENTS, DiagnosticType.NON_FINITE_LOSS]
    exploding, fatal = outcome.diagnostics
    assert fatal.severity == Severity.ERROR and fatal.step is not None and exploding.step is not None
    assert exploding.step < fatal.step
    assert f"at step {fatal.step}" in fatal.message and "lower learningRate (now 10)" in fatal.suggestion
    assert outcome.final.epochs_completed < 5  # failed fast, did not train on NaNs
    assert f"step {fatal.step}" in outcome.final.reason and "gradClipNorm" in outcome.final.reason


class DeepLinear(nn.Module):
    """Eight linear layers without activations, initialised with gain 3: every layer multiplies gradients."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        dims = [inputs, *([64] * 8)]
        layers: list[nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(dims):
            layer = nn.Linear(fan_in, fan_out)
            nn.init.normal_(layer.weight, std=3.0 / fan_in**0.5)
            layers.append(layer)
        self.net = nn.Sequential(*layers, nn.Linear(64, outputs))

    def forward(self, x: Any) -> Any:
        return self.net(x)


def test_large_weights_make_exploding_gradients_while_clipping_keeps_training_going() -> None:
    def build(config: TrainerConfig, data: DataBundle) -> nn.Module:
        return DeepLinear(data.input_shape[0], data.num_classes or 1)

    config = {"dataset": synthetic(), "learningRate": 1e-3, "gradClipNorm": 1.0, "epochs": 1}
    outcome = train(config, with_model(build))
    assert outcome.exit_code == ExitCode.SUCCESS
    assert DiagnosticType.EXPLODING_GRADIENTS in types(outcome)
    found = next(d for d in outcome.diagnostics if d.type == DiagnosticType.EXPLODING_GRADIENTS)
    assert found.step == 1 and "clipped to 1" in found.message


class DeepSigmoid(nn.Module):
    """Twelve sigmoid layers: each scales the backward signal by at most 1/4."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Linear(inputs, 32), nn.Sigmoid()]
        for _ in range(12):
            layers += [nn.Linear(32, 32), nn.Sigmoid()]
        self.net = nn.Sequential(*layers, nn.Linear(32, outputs))

    def forward(self, x: Any) -> Any:
        return self.net(x)


def test_a_deep_sigmoid_net_has_vanishing_gradients() -> None:
    def build(config: TrainerConfig, data: DataBundle) -> nn.Module:
        return DeepSigmoid(data.input_shape[0], data.num_classes or 1)

    outcome = train({"dataset": synthetic(), "epochs": 1}, with_model(build))
    assert outcome.exit_code == ExitCode.SUCCESS
    found = [d for d in outcome.diagnostics if d.type == DiagnosticType.VANISHING_GRADIENTS]
    assert len(found) == 1 and "net.0.weight" in found[0].message and found[0].epoch == 1


def test_a_big_model_on_tiny_noisy_data_overfits() -> None:
    config = {
        "dataset": synthetic(numSamples=80, numFeatures=20, noise=0.3),
        "validationSplit": 0.5,
        "model": {"hiddenSizes": [256, 256]},
        "learningRate": 0.01,
        "batchSize": 8,
        "epochs": 6,
    }
    outcome = train(config)
    assert outcome.exit_code == ExitCode.SUCCESS
    found = [d for d in outcome.diagnostics if d.type == DiagnosticType.OVERFITTING]
    assert len(found) == 1 and found[0].severity == Severity.WARNING and found[0].epoch is not None
    history = outcome.history[: found[0].epoch]
    val = [h["val_loss"] for h in history[-4:]]
    assert val == sorted(val) and history[-1]["train_loss"] < history[-4]["train_loss"]


def test_a_tiny_learning_rate_underfits() -> None:
    config = {"model": {"hiddenSizes": [32]}, "optimizer": {"name": "sgd"}, "learningRate": 1e-7, "epochs": 2}
    outcome = train(config)
    assert outcome.exit_code == ExitCode.SUCCESS
    assert types(outcome) == [DiagnosticType.UNDERFITTING]
    assert outcome.diagnostics[0].epoch == 2 and "learningRate (now 1e-07" in outcome.diagnostics[0].suggestion


def test_imbalanced_labels_are_flagged_or_compensated() -> None:
    base = {"dataset": synthetic(numSamples=400, imbalance=20), "model": {"hiddenSizes": [16]}, "epochs": 1}
    plain = train(base)
    assert types(plain) == [DiagnosticType.CLASS_IMBALANCE]
    assert plain.diagnostics[0].severity == Severity.WARNING
    assert "classWeights.mode: balanced" in plain.diagnostics[0].suggestion
    weighted = train({**base, "classWeights": {"mode": "balanced"}})
    assert types(weighted) == [DiagnosticType.CLASS_IMBALANCE]
    assert weighted.diagnostics[0].severity == Severity.INFO
