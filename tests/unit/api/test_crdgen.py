"""The generated CRDs: committed, identical in the chart, structural for Kubernetes 1.20 and later.

Pins:
- crds/ and charts/trainsmart/crds/ hold exactly what the models generate (the drift test), byte for byte;
- `crdgen check` exits non-zero naming each drifted or missing file, and `write` repairs them;
- every schema node is structural: no $ref/$defs/title/const/oneOf/allOf/not/uniqueItems, anyOf only for
  int-or-string, a type (or an explicit preserve-unknown / int-or-string marker) on every node, boolean
  exclusive bounds, list-map keys that are required;
- every property has a description (the `kubectl explain` text); defaults are scalars and only in spec;
- an object defaulted by the apiserver from the schema still parses to the same model (defaults agree);
- printer columns point at fields that exist; names, short names, category and subresources are set;
- the converter refuses what it cannot express instead of writing a schema the apiserver would reject;
- the default flavour keeps unknown fields in every typed spec object (so the webhook or the operator can
  refuse a typo by name) and prunes them in status; the strict flavour (crds/strict/) is the same CRD
  without those markers; both carry the same CEL rules, each on an object node, with a message.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from support.paths import REPO
from trainsmart.api import HyperparamSweepSpec, TrainingJobSpec
from trainsmart.api.crdgen import (
    HEADER,
    OUTPUT_DIRS,
    STRICT_DIR,
    build_crds,
    check,
    main,
    render,
    rendered_files,
    write,
)
from trainsmart.api.schema import SchemaError, structural_schema

CRDS = build_crds()
FORBIDDEN = {"$ref", "$defs", "title", "const", "oneOf", "allOf", "not", "uniqueItems", "examples", "discriminator"}
TYPES = {"object", "array", "string", "integer", "number", "boolean"}
FORMATS = {"date-time", "date", "int32", "int64", "float", "double", "byte", "uuid"}


def schema_of(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[name]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path: properties as `.name`, items as `[]`, map values as `{}`."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crds_match_the_models() -> None:
    assert check(REPO) == [], "run `make crds` and commit the result"


def test_the_chart_holds_byte_identical_copies() -> None:
    first, second = OUTPUT_DIRS
    for name in CRDS:
        assert (REPO / first / name).read_bytes() == (REPO / second / name).read_bytes()


def test_check_names_drifted_and_missing_files_and_write_repairs_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert len(write(tmp_path)) == 6
    drifted = tmp_path / "charts/trainsmart/crds/trainingjobs.trainsmart.dev.yaml"
    drifted.write_text(drifted.read_text().replace("shortNames", "shortnames"))
    (tmp_path / "crds/hyperparamsweeps.trainsmart.dev.yaml").unlink()
    assert main(["check", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "charts/trainsmart/crds/trainingjobs.trainsmart.dev.yaml" in err
    assert "crds/hyperparamsweeps.trainsmart.dev.yaml" in err
    assert main(["write", "--root", str(tmp_path)]) == 0
    assert main(["check", "--root", str(tmp_path)]) == 0
    assert write(tmp_path) == []  # nothing left to change


PRESERVE = "x-kubernetes-preserve-unknown-fields"
STRICT = build_crds(keep_unknown_fields=False)


def typed_objects(node: dict[str, Any]) -> list[str]:
    """Paths of the object nodes that declare their fields (the ones a typo can hide in)."""
    return [path for path, child in walk(node) if child.get("type") == "object" and "properties" in child]


@pytest.mark.parametrize("crd", sorted(CRDS))
def test_spec_objects_keep_unknown_fields_and_status_prunes_them(crd: str) -> None:
    root = schema_of(crd)["properties"]
    spec_objects = typed_objects(root["spec"])
    assert len(spec_objects) > 10, spec_objects  # trainer, trainer.config, checkpoint, runPolicy, ...
    assert [path for path in spec_objects if not walk_to(root["spec"], path).get(PRESERVE)] == []
    assert [path for path in typed_objects(root["status"]) if walk_to(root["status"], path).get(PRESERVE)] == []


def walk_to(node: dict[str, Any], path: str) -> dict[str, Any]:
    return next(child for where, child in walk(node) if where == path)


# Kubernetes objects passed through as written (Volumes, VolumeMounts, Containers): they keep unknown
# fields in both flavours, since the apiserver checks them when the operator creates the pods.
PASS_THROUGH = [".volumes[]", ".volumeMounts[]", ".template.initContainers[]", ".template.extraContainers[]"]


@pytest.mark.parametrize("crd", sorted(CRDS))
def test_the_strict_flavour_differs_only_in_pruning_typed_objects(crd: str) -> None:
    def without_markers_on_typed_objects(node: Any) -> Any:
        if isinstance(node, dict):
            typed = node.get("type") == "object" and "properties" in node
            return {
                key: without_markers_on_typed_objects(value)
                for key, value in node.items()
                if not (typed and key == PRESERVE)
            }
        if isinstance(node, list):
            return [without_markers_on_typed_objects(item) for item in node]
        return node

    assert without_markers_on_typed_objects(STRICT[crd]) == without_markers_on_typed_objects(CRDS[crd])
    strict_spec = STRICT[crd]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    kept = [path for path in typed_objects(strict_spec) if walk_to(strict_spec, path).get(PRESERVE)]
    prefix = ".trialTemplate" if crd.startswith("hyperparamsweeps") else ""
    assert kept == [prefix + path for path in PASS_THROUGH]
    assert (REPO / STRICT_DIR / crd).read_text() == render(STRICT[crd])


@pytest.mark.parametrize("crd", sorted(CRDS))
def test_cel_rules_sit_on_objects_and_carry_a_message(crd: str) -> None:
    rules = [(path, item) for path, node in walk(schema_of(crd)) for item in node.get("x-kubernetes-validations", [])]
    assert len(rules) >= 8
    for path, item in rules:
        assert walk_to(schema_of(crd), path)["type"] == "object", path
        assert set(item) == {"rule", "message"} and item["rule"].strip() and item["message"].strip(), item
    # Only in spec: status is the operator's, and a rule there could make its own writes fail.
    assert all(path.startswith(".spec") for path, _ in rules)


def test_output_is_deterministic_and_says_it_is_generated() -> None:
    assert rendered_files() == rendered_files()
    for name, crd in CRDS.items():
        text = render(crd)
        assert text.startswith(HEADER)
        assert "make crds" in HEADER
        assert yaml.safe_load(text) == crd, name


def structural_problems(where: str, node: dict[str, Any]) -> list[str]:
    problems = [f"{where}: forbidden {key}" for key in sorted(FORBIDDEN & node.keys())]
    marked = node.get("x-kubernetes-preserve-unknown-fields") or node.get("x-kubernetes-int-or-string")
    if node.get("type") not in TYPES and not (marked and "type" not in node):
        problems.append(f"{where}: no type and no preserve-unknown-fields/int-or-string marker")
    if "anyOf" in node and (
        node.get("x-kubernetes-int-or-string") is not True or node["anyOf"] != [{"type": "integer"}, {"type": "string"}]
    ):
        problems.append(f"{where}: anyOf other than int-or-string")
    for key in ("exclusiveMinimum", "exclusiveMaximum", "nullable"):
        if node.get(key, True) is not True:
            problems.append(f"{where}: {key} must be the boolean true")
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{where}: properties beside additionalProperties")
    if not isinstance(node.get("additionalProperties", {}), dict):
        problems.append(f"{where}: boolean additionalProperties")
    if node.get("format", "date-time") not in FORMATS:
        problems.append(f"{where}: unknown format {node['format']}")
    keys = set(node.get("x-kubernetes-list-map-keys", []))
    if node.get("x-kubernetes-list-type") == "map" and not keys <= set(node["items"].get("required", [])):
        problems.append(f"{where}: list-map keys must be required in the items")
    return problems


@pytest.mark.parametrize("crd", sorted(CRDS))
def test_every_node_is_structural(crd: str) -> None:
    problems = [problem for path, node in walk(schema_of(crd)) for problem in structural_problems(path, node)]
    assert problems == []


@pytest.mark.parametrize("crd", sorted(CRDS))
def test_every_property_has_a_description(crd: str) -> None:
    missing = [
        f"{path}.{name}"
        for path, node in walk(schema_of(crd))
        for name, child in node.get("properties", {}).items()
        if name != "metadata" and not child.get("description", "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("crd", sorted(CRDS))
def test_defaults_are_scalars_and_only_in_spec(crd: str) -> None:
    defaults = {path: node["default"] for path, node in walk(schema_of(crd)) if "default" in node}
    assert defaults, "spec defaults are expected (backoffLimit, mountPath, ...)"
    assert [path for path in defaults if not path.startswith(".spec.")] == []
    assert [path for path, value in defaults.items() if not isinstance(value, bool | int | float | str)] == []


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the apiserver does on read and write: fill in defaults of absent fields of present objects."""
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
        if isinstance(schema.get("additionalProperties"), dict):
            for key in value:
                value[key] = apply_defaults(schema["additionalProperties"], value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


TRAININGJOB_SPECS: list[dict[str, Any]] = [
    {},
    {
        "checkpoint": {"claimName": "ckpt"},
        "runPolicy": {},
        "template": {},
        "resources": {},
        "trainer": {
            "env": [{"name": "A"}],
            "config": {
                "model": {"name": "cnn"},
                "dataset": {},
                "optimizer": {"name": "sgd"},
                "lrSchedule": {"name": "step"},
                "classWeights": {"mode": "balanced"},
                "earlyStopping": {},
            },
        },
    },
]
SWEEP_SPEC: dict[str, Any] = {
    "objective": {"metric": "val_loss", "goal": "minimize"},
    "algorithm": {"name": "tpe", "tpe": {}},
    "parameters": [{"name": "lr", "path": "trainer.config.learningRate", "type": "uniform", "min": 0.01, "max": 0.1}],
    # A size, not a claim: a shared claim is refused in sweeps (every trial would use one directory).
    "trialTemplate": {**TRAININGJOB_SPECS[1], "checkpoint": {"size": "1Gi"}},
    "maxTrials": 3,
    "budget": {},
    "earlyStopping": {"rule": "median"},
    "trialRetention": {},
}


@pytest.mark.parametrize(
    ("crd", "model", "spec"),
    [
        *[("trainingjobs.trainsmart.dev.yaml", TrainingJobSpec, spec) for spec in TRAININGJOB_SPECS],
        ("hyperparamsweeps.trainsmart.dev.yaml", HyperparamSweepSpec, SWEEP_SPEC),
    ],
)
def test_schema_defaults_agree_with_the_models(crd: str, model: type[BaseModel], spec: dict[str, Any]) -> None:
    defaulted = apply_defaults(schema_of(crd)["properties"]["spec"], copy.deepcopy(spec))
    assert defaulted != spec  # the schema did fill something in
    assert model.model_validate(defaulted) == model.model_validate(spec)


def test_printer_columns_point_at_fields_that_exist() -> None:
    for name, crd in CRDS.items():
        schema = schema_of(name)
        for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
            node = schema
            for part in column["jsonPath"].strip(".").split("."):
                if part == "metadata":
                    break
                node = node["properties"][part]
            else:
                assert node["type"] == column["type"], column


def test_names_short_names_category_and_subresources() -> None:
    job, sweep = (CRDS[f"{plural}.trainsmart.dev.yaml"]["spec"] for plural in ("trainingjobs", "hyperparamsweeps"))
    assert job["names"]["shortNames"] == ["tj"]
    assert sweep["names"]["shortNames"] == ["hps", "sweep"]
    for spec in (job, sweep):
        assert spec["group"] == "trainsmart.dev"
        assert spec["scope"] == "Namespaced"
        assert spec["names"]["categories"] == ["trainsmart"]
        (version,) = spec["versions"]
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"] == {"status": {}}
        assert version["schema"]["openAPIV3Schema"]["required"] == ["spec"]


def test_the_trainer_config_schema_is_embedded_in_the_trainingjob() -> None:
    config = schema_of("trainingjobs.trainsmart.dev.yaml")["properties"]["spec"]["properties"]["trainer"]
    learning_rate = config["properties"]["config"]["properties"]["learningRate"]
    assert learning_rate == {
        "default": 0.001,
        "description": "Base learning rate.",
        "exclusiveMinimum": True,
        "maximum": 10,
        "minimum": 0,
        "type": "number",
    }


class _Union(BaseModel):
    value: int | str = Field(description="A union.")


class _Undocumented(BaseModel):
    value: int


class _Nested(BaseModel):
    inner: _Undocumented = Field(description="Documented here, not inside.")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_Union, "union of 2 types is not structural"),
        (_Undocumented, "_Undocumented.value: no description"),
        (_Nested, "_Nested.inner.value: no description"),
    ],
)
def test_the_converter_refuses_what_is_not_structural(model: type[BaseModel], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        structural_schema(model)
