"""The admission rules on fuzzed objects, in-process (no cluster; the fast tier runs it).

Pins, for every object of support/fuzz_objects.py (valid, near-valid, hostile; both kinds):
- `validate_trainingjob` / `validate_sweep` never raise, and every problem starts with a field path;
- whatever they accept, the operator can also work with: the spec parses and serializes again
  (`to_api`, which every builder relies on). Nesting deeper than pydantic's serializer allows was accepted
  and then failed every reconcile (issue 13): it is now refused at `rules.MAX_SPEC_DEPTH`.
"""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings

from support.admission_cases import JOB_BASE, SWEEP_BASE
from support.fuzz_objects import Fuzzed, decode, encode, fuzzed_objects, nested
from support.manifests import sweep_body, trainingjob_body
from trainsmart.admission.rules import MAX_SPEC_DEPTH, validate_sweep, validate_trainingjob
from trainsmart.api import HyperparamSweepSpec, TrainingJobSpec

NAMES = (f"fz-{index}" for index in itertools.count())


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(fuzzed_objects(lambda: next(NAMES)))
def test_rules_refuse_with_a_path_or_accept_what_the_operator_can_use(fuzzed: Fuzzed) -> None:
    body = decode(encode(fuzzed.body))
    validate = validate_trainingjob if fuzzed.kind == "TrainingJob" else validate_sweep
    problems = validate(body)
    assert all(problem.path.startswith(("spec", "metadata")) for problem in problems), problems
    if not problems:
        model = TrainingJobSpec if fuzzed.kind == "TrainingJob" else HyperparamSweepSpec
        assert json.dumps(model.model_validate(body["spec"]).to_api())


@pytest.mark.parametrize("depth", [MAX_SPEC_DEPTH + 1, 300, 5000])
def test_nesting_deeper_than_the_limit_is_refused_at_its_field(depth: int) -> None:
    job = trainingjob_body("deep", JOB_BASE | {"affinity": {"nodeAffinity": nested(depth)}})
    assert [problem.path for problem in validate_trainingjob(job)] == ["spec.affinity.nodeAffinity"]
    template = SWEEP_BASE["trialTemplate"] | {"volumes": [{"name": "data", "emptyDir": nested(depth)}]}
    sweep = sweep_body("deep", SWEEP_BASE | {"trialTemplate": template})
    problems = validate_sweep(sweep)
    assert [problem.path for problem in problems] == ["spec.trialTemplate.volumes"]
    assert "nested too deeply" in problems[0].reason


def test_nesting_within_the_limit_is_accepted() -> None:
    job = trainingjob_body("deep", JOB_BASE | {"affinity": {"nodeAffinity": nested(MAX_SPEC_DEPTH - 2)}})
    assert validate_trainingjob(job) == []


@pytest.mark.parametrize(
    ("selector", "path"),
    [
        ({"gpu": "Q\u00a6"}, 'spec.nodeSelector["gpu"]'),
        ({"-gpu": "a"}, 'spec.nodeSelector["-gpu"]'),
        ({"x/y/z": "a"}, 'spec.nodeSelector["x/y/z"]'),
        ({"Example.com/gpu": "a"}, 'spec.nodeSelector["Example.com/gpu"]'),
    ],
)
def test_a_node_selector_the_pods_cannot_carry_is_refused(selector: dict[str, str], path: str) -> None:
    """Found by the fuzz run: the schema bounds only the length, the apiserver refused every pod."""
    job = trainingjob_body("sel", JOB_BASE | {"nodeSelector": selector})
    assert [problem.path for problem in validate_trainingjob(job)] == [path]
    sweep = sweep_body("sel", SWEEP_BASE | {"trialTemplate": SWEEP_BASE["trialTemplate"] | {"nodeSelector": selector}})
    assert [problem.path for problem in validate_sweep(sweep)] == [path.replace("spec.", "spec.trialTemplate.")]


def test_a_real_node_selector_is_accepted() -> None:
    selector = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "pool": "", "kubernetes.io/arch": "amd64"}
    assert validate_trainingjob(trainingjob_body("sel", JOB_BASE | {"nodeSelector": selector})) == []


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"template": {"labels": {"team": "\U0001f680"}}}, 'spec.template.labels["team"]'),
        ({"template": {"labels": {"team": "a" * 64}}}, 'spec.template.labels["team"]'),
        ({"template": {"annotations": {"bad key!": "any text"}}}, 'spec.template.annotations["bad key!"]'),
        ({"resources": {"requests": {"h": "1"}}}, 'spec.resources.requests["h"]'),
        ({"queueName": "q" + ".q" * 40}, "spec.queueName"),
    ],
)
def test_pod_fields_every_pod_create_would_refuse_are_refused(spec: dict[str, object], path: str) -> None:
    """Found by the fuzz run: admitted, then the apiserver refused every replica pod."""
    assert path in [problem.path for problem in validate_trainingjob(trainingjob_body("pod", JOB_BASE | spec))]


def test_pod_fields_kubernetes_takes_are_accepted() -> None:
    spec = {
        "queueName": "team-a.gpu",
        "template": {"labels": {"team": "vision", "app.kubernetes.io/part-of": "x"}, "annotations": {"a/b": "any !"}},
        "resources": {"requests": {"cpu": "1", "memory": "1Gi", "example.com/fpga": "1", "hugepages-2Mi": "1Gi"}},
    }
    assert validate_trainingjob(trainingjob_body("pod", JOB_BASE | spec)) == []
