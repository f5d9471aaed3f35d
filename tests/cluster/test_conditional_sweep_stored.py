"""Conditional parameters and warmStart (issue 15) on a real kube-apiserver with the generated CRDs.

Pins:
- a sweep with `when` conditions (on string and boolean options, over list values) and a warmStart is stored
  as written (`in` kept, not pruned), passes the webhook's rules as stored and counts only valid grid points.
(The CRD's CEL rule against warmStart with grid is not exercised: the test apiserver predates CEL; the
webhook's model check says the same.)
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from trainsmart.admission.rules import validate_sweep
from trainsmart.api import GROUP, SWEEP_PLURAL, VERSION, HyperparamSweep

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("trainsmart_crds")]

SPEC: dict[str, Any] = {
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "algorithm": {"name": "tpe"},
    "parameters": [
        {"name": "opt", "path": "trainer.config.optimizer.name", "type": "choice", "values": ["adam", "sgd"]},
        {
            "name": "nesterov",
            "path": "trainer.config.optimizer.nesterov",
            "type": "choice",
            "values": [False, True],
            "when": {"parameter": "opt", "in": ["sgd"]},
        },
        {
            "name": "momentum",
            "path": "trainer.config.optimizer.momentum",
            "type": "choice",
            "values": [0.5, 0.9],
            "when": {"parameter": "nesterov", "in": [True]},
        },
        {"name": "arch", "path": "trainer.config.model.name", "type": "choice", "values": ["mlp", "cnn"]},
        {
            "name": "hidden",
            "path": "trainer.config.model.hiddenSizes",
            "type": "choice",
            "values": [[64], [128, 64]],
            "when": {"parameter": "arch", "in": ["mlp"]},
        },
    ],
    "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
    "maxTrials": 4,
    "warmStart": {"sweep": "earlier"},
}


def create(api_client: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    obj = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "HyperparamSweep", "metadata": {"name": name}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, SWEEP_PLURAL, obj
    )
    return created


def test_a_conditional_warm_started_sweep_is_stored_as_written(api_client: client.ApiClient, namespace: str) -> None:
    stored = create(api_client, namespace, "conditional", SPEC)
    assert stored["spec"]["parameters"][1]["when"] == {"parameter": "opt", "in": ["sgd"]}
    assert stored["spec"]["parameters"][2]["when"] == {"parameter": "nesterov", "in": [True]}
    assert stored["spec"]["warmStart"] == {"sweep": "earlier"}
    assert validate_sweep(stored) == []
    grid = {**stored["spec"], "algorithm": {"name": "grid"}}
    del grid["warmStart"]
    # opt: adam | sgd+nesterov false | sgd+nesterov true x 2 momenta  (4), times arch: cnn | mlp x 2 lists (3)
    assert HyperparamSweep.model_validate({**stored, "spec": grid}).spec.grid_size() == 4 * 3
