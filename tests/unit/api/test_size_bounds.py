"""Size bounds on values that cannot work beyond a size (issue 13), in the models and the generated CRDs.

Pins:
- an env value, a command item and an argument stop at Linux's MAX_ARG_STRLEN (128 KiB per exec string,
  its NUL and an env entry's `N=` counted): one character more is refused, the longest is accepted;
- pod label and nodeSelector values at Kubernetes' 63 characters, annotation values at its 256 KiB total,
  mount and dataset paths at PATH_MAX (4096), the image at 1024, the scheduler name at 253;
- each bound is the CRD's maxLength at the same field (also in a sweep's trialTemplate), and the field's
  description states it, so `kubectl explain` tells a user before the apiserver does;
- values an ordinary job uses (a 10 KiB env value, a long argument, a 63-character label) still pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from trainsmart.api import TrainingJobSpec
from trainsmart.api.crdgen import build_crds
from trainsmart.api.podtemplate import MAX_ANNOTATIONS_BYTES, MAX_LABEL_VALUE_CHARS, MAX_PATH_CHARS
from trainsmart.api.trainingjob_spec import (
    MAX_ARG_CHARS,
    MAX_ARG_STRLEN,
    MAX_ENV_VALUE_CHARS,
    MAX_IMAGE_CHARS,
    MAX_SCHEDULER_NAME_CHARS,
)
from trainsmart_trainer.config import MAX_PATH_CHARS as MAX_DATASET_PATH_CHARS

Spec = dict[str, Any]


def _env(value: str) -> Spec:
    return {"trainer": {"env": [{"name": "BLOB", "value": value}]}}


def _volume_mount(path: str) -> Spec:
    return {"volumes": [{"name": "data", "emptyDir": {}}], "volumeMounts": [{"name": "data", "mountPath": path}]}


def _dataset_path(path: str) -> Spec:
    return {"trainer": {"config": {"dataset": {"name": "tabular-csv", "path": path}, "model": {"name": "mlp"}}}}


DATASET_PATH = ("trainer", "config", "dataset", "path")
# (id, limit, spec with a value of n characters, the field's path in the CRD's spec schema)
BOUNDS: list[tuple[str, int, Callable[[int], Spec], tuple[str, ...]]] = [
    ("env value", MAX_ENV_VALUE_CHARS, lambda n: _env("v" * n), ("trainer", "env", "[]", "value")),
    ("command item", MAX_ARG_CHARS, lambda n: {"trainer": {"command": ["c" * n]}}, ("trainer", "command", "[]")),
    ("argument", MAX_ARG_CHARS, lambda n: {"trainer": {"args": ["a" * n]}}, ("trainer", "args", "[]")),
    ("image", MAX_IMAGE_CHARS, lambda n: {"trainer": {"image": "i" * n}}, ("trainer", "image")),
    (
        "label value",
        MAX_LABEL_VALUE_CHARS,
        lambda n: {"template": {"labels": {"team": "l" * n}}},
        ("template", "labels", "{}"),
    ),
    (
        "annotation value",
        MAX_ANNOTATIONS_BYTES,
        lambda n: {"template": {"annotations": {"note": "n" * n}}},
        ("template", "annotations", "{}"),
    ),
    (
        "nodeSelector value",
        MAX_LABEL_VALUE_CHARS,
        lambda n: {"nodeSelector": {"pool": "p" * n}},
        ("nodeSelector", "{}"),
    ),
    (
        "volume mount path",
        MAX_PATH_CHARS,
        lambda n: _volume_mount("/" + "m" * (n - 1)),
        ("volumeMounts", "[]", "mountPath"),
    ),
    (
        "checkpoint mount path",
        MAX_PATH_CHARS,
        lambda n: {"checkpoint": {"size": "1Gi", "mountPath": "/" + "c" * (n - 1)}},
        ("checkpoint", "mountPath"),
    ),
    (
        "dataset path",
        MAX_DATASET_PATH_CHARS,
        lambda n: _dataset_path("d" * n),
        ("trainer", "config", "dataset", "path"),
    ),
    ("scheduler name", MAX_SCHEDULER_NAME_CHARS, lambda n: {"schedulerName": "s" * n}, ("schedulerName",)),
]
IDS = [bound[0] for bound in BOUNDS]


def _node(schema: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    for step in path:
        if step == "[]":
            schema = schema["items"]
        elif step == "{}":
            schema = schema["additionalProperties"]
        else:
            schema = schema["properties"][step]
    return schema


def _spec_schemas() -> dict[str, dict[str, Any]]:
    crds = build_crds()
    job = crds["trainingjobs.trainsmart.dev.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    sweep = crds["hyperparamsweeps.trainsmart.dev.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return {
        "TrainingJob": job["properties"]["spec"],
        "HyperparamSweep trialTemplate": sweep["properties"]["spec"]["properties"]["trialTemplate"],
    }


def test_exec_string_bounds_leave_room_for_the_nul_and_the_name() -> None:
    assert MAX_ARG_STRLEN == 128 * 1024  # Linux: 32 pages of 4 KiB
    assert MAX_ARG_CHARS + 1 == MAX_ARG_STRLEN
    assert len("N=") + MAX_ENV_VALUE_CHARS + 1 == MAX_ARG_STRLEN


@pytest.mark.parametrize(("what", "limit", "spec", "path"), BOUNDS, ids=IDS)
def test_the_longest_value_is_accepted_and_one_more_is_refused(
    what: str, limit: int, spec: Callable[[int], Spec], path: tuple[str, ...]
) -> None:
    TrainingJobSpec.model_validate(spec(limit))
    with pytest.raises(ValidationError, match=f"at most {limit} characters"):
        TrainingJobSpec.model_validate(spec(limit + 1))


@pytest.mark.parametrize(("what", "limit", "spec", "path"), BOUNDS, ids=IDS)
def test_the_crd_states_each_bound_where_the_model_does(
    what: str, limit: int, spec: Callable[[int], Spec], path: tuple[str, ...]
) -> None:
    for kind, schema in _spec_schemas().items():
        node = _node(schema, path)
        assert node["maxLength"] == limit, (kind, what)
        field = path
        while field[-1] in ("[]", "{}"):  # a list's or map's items: the description is on the field
            field = field[:-1]
        described = _node(schema, field)["description"]
        assert str(limit) in described, (kind, what, described)


def test_ordinary_values_still_pass() -> None:
    TrainingJobSpec.model_validate(
        {
            "trainer": {
                "command": ["python", "-c", "print(1)" * 1000],
                "args": ["--config=" + "{}" * 5000],
                "env": [{"name": "CONFIG", "value": "x" * 10 * 1024}],
            },
            "template": {"labels": {"team": "l" * 63}, "annotations": {"note": "n" * 64 * 1024}},
            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        }
    )
