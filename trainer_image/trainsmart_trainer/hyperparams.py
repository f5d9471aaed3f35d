"""The run's hyperparameters as every tracker records them: flat name -> scalar.

The effective trainer config (defaults included, as the run used them) flattened to dotted camelCase
names (`optimizer.name`, `learningRate`, `model.hiddenSizes`; lists as JSON text), plus a sweep trial's
parameters as `params.<name>`. Flat and scalar because that is what TensorBoard's HParams view and W&B's
run table compare runs by.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from trainsmart_client.params import read_params
from trainsmart_trainer.config import TrainerConfig

HyperparameterValue = str | int | float | bool
Hyperparameters = dict[str, HyperparameterValue]

_NOT_HYPERPARAMETERS = {"tensorboard"}  # a tracking switch, nothing that shapes the run


def _flatten(prefix: str, value: Any, out: Hyperparameters) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, str | int | float | bool):
        out[prefix] = value
    else:  # lists (hiddenSizes, class weights): one comparable text value
        out[prefix] = json.dumps(value)


def hyperparameters(config: TrainerConfig, env: Mapping[str, str]) -> Hyperparameters:
    """`config` and the trial's parameters (from TRAINSMART_PARAMS_FILE or the TRAINSMART_PARAM_* variables
    in `env`; none outside a sweep) as flat name -> scalar."""
    out: Hyperparameters = {}
    _flatten("", config.model_dump(mode="json", by_alias=True, exclude=_NOT_HYPERPARAMETERS), out)
    _flatten("params", read_params(env), out)
    return out
