"""`spec.trainer.metrics`: where a custom command's metrics appear, and what admission refuses.

Pins:
- json, keyValue, regex (with a pattern of named groups) and tensorboardDir are accepted, alone or with
  an output format, and round-trip to the same camelCase body;
- refused with the field path `spec.trainer.metrics`: regex without pattern, a pattern that does not
  compile, a pattern without named groups, an epochKey that is no named group, a pattern with another
  format, a block that names neither a format nor tensorboardDir, an unknown format;
- refused at `spec.trainer`: metrics with the packaged trainer (no command), which reports by itself;
- the CRD schema documents every field (so `kubectl explain` helps).
"""

from __future__ import annotations

from typing import Any

import pytest

from trainsmart.admission.rules import validate_trainingjob
from trainsmart.api import TrainingJob
from trainsmart.api.crdgen import build_crds

COMMAND = ["python3", "train.py"]


def body(metrics: dict[str, Any], command: list[str] | None = COMMAND) -> dict[str, Any]:
    trainer: dict[str, Any] = {"metrics": metrics}
    if command is not None:
        trainer["command"] = command
    return {
        "apiVersion": "trainsmart.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "custom"},
        "spec": {"trainer": trainer},
    }


@pytest.mark.parametrize(
    "metrics",
    [
        {"format": "json"},
        {"format": "keyValue", "epochKey": "ep"},
        {"format": "regex", "pattern": r"epoch=(?P<epoch>\d+) loss=(?P<loss>\S+)", "epochKey": "epoch"},
        {"tensorboardDir": "/tmp/tb"},
        {"format": "json", "tensorboardDir": "runs/exp1"},
    ],
)
def test_valid_metrics_blocks_are_accepted_and_round_trip(metrics: dict[str, Any]) -> None:
    assert validate_trainingjob(body(metrics)) == []
    job = TrainingJob.model_validate(body(metrics))
    assert job.spec.trainer.metrics is not None
    assert job.spec.trainer.metrics.to_api() == metrics


@pytest.mark.parametrize(
    ("metrics", "words"),
    [
        ({"format": "regex"}, "needs pattern"),
        ({"format": "regex", "pattern": "(?P<loss>[0-9."}, "does not compile"),
        ({"format": "regex", "pattern": r"loss=(\S+)"}, "no named groups"),
        ({"format": "regex", "pattern": r"loss=(?P<loss>\S+)", "epochKey": "epoch"}, "not a named group"),
        ({"format": "json", "pattern": r"(?P<loss>\S+)"}, "only with format: regex"),
        ({"epochKey": "epoch"}, "set format"),
        ({}, "set format"),
    ],
)
def test_unusable_metrics_blocks_are_refused_with_the_field_path(metrics: dict[str, Any], words: str) -> None:
    (problem,) = validate_trainingjob(body(metrics))
    assert problem.path == "spec.trainer.metrics"
    assert words in problem.reason


def test_an_unknown_format_is_refused() -> None:
    problems = validate_trainingjob(body({"format": "yaml"}))
    assert [problem.path for problem in problems] == ["spec.trainer.metrics.format"]


def test_metrics_with_the_packaged_trainer_are_refused() -> None:
    (problem,) = validate_trainingjob(body({"format": "json"}, command=None))
    assert problem.path == "spec.trainer"
    assert "packaged trainer" in problem.reason and "set command" in problem.reason


def test_every_metrics_field_is_documented_in_the_crd() -> None:
    crd = build_crds()["trainingjobs.trainsmart.dev.yaml"]
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    trainer = schema["properties"]["spec"]["properties"]["trainer"]["properties"]
    metrics = trainer["metrics"]
    assert metrics["description"]
    assert set(metrics["properties"]) == {"format", "pattern", "epochKey", "tensorboardDir"}
    for name, field in metrics["properties"].items():
        assert field.get("description"), name
    assert metrics["properties"]["format"]["enum"] == ["json", "keyValue", "regex"]
