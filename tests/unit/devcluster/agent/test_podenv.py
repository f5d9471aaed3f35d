"""A container's env and argv, resolved as the kubelet does.

Pins: `$(VAR)` rules (`$$` escape, unknown and unclosed references verbatim, only earlier variables);
envFrom before env, prefixes, invalid names skipped, optional sources; every fieldRef the brief lists;
secret values decoded, not expanded; resourceFieldRef rounding, divisors, extended resources and node
allocatable defaults; missing required sources are `CreateContainerConfigError`s with kubelet wording;
service variables fill in; command/args expanded against the final env.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import pytest

from trainsmart.devcluster.agent.podenv import (
    ConfigMapData,
    EnvResolutionError,
    container_argv,
    expand,
    parse_quantity,
    resolve_env,
)


class FakeSource:
    def __init__(
        self, config_maps: Mapping[str, Mapping[str, str]] = {}, secrets: Mapping[str, Mapping[str, bytes]] = {}
    ) -> None:
        self.config_maps, self.secrets = config_maps, secrets
        self.reads: list[tuple[str, str]] = []

    def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        self.reads.append(("cm", f"{namespace}/{name}"))
        data = self.config_maps.get(name)
        return None if data is None else ConfigMapData(data=data)

    def secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        self.reads.append(("secret", f"{namespace}/{name}"))
        return self.secrets.get(name)


POD: dict[str, Any] = {
    "metadata": {
        "name": "job-0",
        "namespace": "team",
        "uid": "u-1",
        "labels": {"app": "train", "rank": "0"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "gpu-0", "serviceAccountName": "trainer", "containers": []},
}


def env_of(container: dict[str, Any], source: FakeSource | None = None, **kw: Any) -> dict[str, str]:
    return resolve_env(
        POD, {"name": "main", **container}, source=source or FakeSource(), pod_ip="10.1.0.5", host_ip="10.1.0.1", **kw
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)-$(B)", "a-b"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("x$", "x$"),
        ("$x$(A)", "$xa"),
        ("$()", "$()"),
        ("no refs", "no refs"),
    ],
)
def test_expand_follows_the_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "b"}.get) == expected


def test_literal_values_see_only_earlier_variables() -> None:
    env = env_of(
        {
            "env": [
                {"name": "LATER_REF", "value": "$(B)"},
                {"name": "A", "value": "one"},
                {"name": "B", "value": "$(A)-two"},
                {"name": "EMPTY", "value": ""},
            ]
        }
    )
    assert env == {"LATER_REF": "$(B)", "A": "one", "B": "one-two", "EMPTY": ""}


def test_env_from_comes_first_and_env_overrides_it() -> None:
    source = FakeSource(
        config_maps={"cfg": {"LR": "0.1", "bad name": "x", "1X": "y", "SHARED": "from-cm"}},
        secrets={"creds": {"TOKEN": b"s3cr3t"}},
    )
    env = env_of(
        {
            "envFrom": [
                {"configMapRef": {"name": "cfg"}, "prefix": "HP_"},
                {"configMapRef": {"name": "cfg"}},
                {"secretRef": {"name": "creds"}},
                {"configMapRef": {"name": "absent", "optional": True}},
            ],
            "env": [{"name": "SHARED", "value": "from-env $(HP_LR)"}],
        },
        source,
    )
    assert env["HP_LR"] == "0.1"
    assert env["HP_1X"] == "y"  # valid once prefixed
    assert "1X" not in env and "bad name" not in env and "HP_bad name" not in env
    assert env["TOKEN"] == "s3cr3t"
    assert env["SHARED"] == "from-env 0.1"
    assert source.reads.count(("cm", "team/cfg")) == 1  # cached per resolution


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("metadata.name", "job-0"),
        ("metadata.namespace", "team"),
        ("metadata.uid", "u-1"),
        ("metadata.labels['rank']", "0"),
        ("metadata.labels['absent']", ""),
        ("metadata.annotations['note']", "hi"),
        ("spec.nodeName", "gpu-0"),
        ("spec.serviceAccountName", "trainer"),
        ("status.podIP", "10.1.0.5"),
        ("status.hostIP", "10.1.0.1"),
    ],
)
def test_field_refs(path: str, expected: str) -> None:
    env = env_of({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}]})
    assert env["V"] == expected


def test_unsupported_field_ref_is_a_config_error() -> None:
    with pytest.raises(EnvResolutionError, match=r"unsupported fieldPath: spec\.nope") as info:
        env_of({"env": [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "spec.nope"}}}]})
    assert info.value.reason == "CreateContainerConfigError"


def test_key_refs_are_decoded_and_never_expanded() -> None:
    source = FakeSource(config_maps={"cfg": {"k": "$(A)"}}, secrets={"s": {"pw": "pä$$".encode()}})
    env = env_of(
        {
            "env": [
                {"name": "A", "value": "a"},
                {"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}},
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            ]
        },
        source,
    )
    assert env["C"] == "$(A)"
    assert env["S"] == "pä$$"


def test_optional_missing_refs_leave_the_variable_out() -> None:
    source = FakeSource(config_maps={"cfg": {}}, secrets={})
    env = env_of(
        {
            "env": [
                {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "nokey", "optional": True}}},
                {"name": "B", "valueFrom": {"secretKeyRef": {"name": "nosecret", "key": "k", "optional": True}}},
            ]
        },
        source,
    )
    assert env == {}


@pytest.mark.parametrize(
    ("var", "message"),
    [
        ({"configMapKeyRef": {"name": "cfg", "key": "nokey"}}, "couldn't find key nokey in ConfigMap team/cfg"),
        ({"configMapKeyRef": {"name": "nocm", "key": "k"}}, 'configmap "nocm" not found'),
        ({"secretKeyRef": {"name": "s", "key": "nokey"}}, "couldn't find key nokey in Secret team/s"),
        ({"secretKeyRef": {"name": "nos", "key": "k"}}, 'secret "nos" not found'),
    ],
)
def test_missing_required_refs_are_config_errors(var: dict[str, Any], message: str) -> None:
    source = FakeSource(config_maps={"cfg": {}}, secrets={"s": {}})
    with pytest.raises(EnvResolutionError, match=message):
        env_of({"env": [{"name": "X", "valueFrom": var}]}, source)


def test_missing_required_env_from_source_is_a_config_error() -> None:
    with pytest.raises(EnvResolutionError, match='secret "creds" not found'):
        env_of({"envFrom": [{"secretRef": {"name": "creds"}}]})


def test_env_from_names_the_missing_kind_and_skips_optional_or_empty_entries() -> None:
    with pytest.raises(EnvResolutionError, match='configmap "cfg" not found'):
        env_of({"envFrom": [{"configMapRef": {"name": "cfg"}}]})
    optional = [{"secretRef": {"name": "creds", "optional": True}}, {"prefix": "X_"}]
    assert env_of({"envFrom": optional, "env": [{"name": "A", "value": "1"}]}) == {"A": "1"}


def test_resource_field_refs_round_up_like_the_kubelet() -> None:
    resources = {"limits": {"cpu": "1500m", "memory": "1Gi", "nvidia.com/gpu": "2"}, "requests": {"cpu": "250m"}}

    def ref(resource: str, divisor: str | None = None) -> dict[str, Any]:
        spec: dict[str, Any] = {"resource": resource}
        if divisor:
            spec["divisor"] = divisor
        return {"resourceFieldRef": spec}

    env = env_of(
        {
            "resources": resources,
            "env": [
                {"name": "CPU", "valueFrom": ref("limits.cpu")},
                {"name": "CPU_M", "valueFrom": ref("limits.cpu", "1m")},
                {"name": "REQ_CPU", "valueFrom": ref("requests.cpu")},
                {"name": "MEM_MI", "valueFrom": ref("limits.memory", "1Mi")},
                {"name": "MEM", "valueFrom": ref("limits.memory")},
                {"name": "GPUS", "valueFrom": ref("limits.nvidia.com/gpu")},
                {"name": "EPH", "valueFrom": ref("limits.ephemeral-storage")},
            ],
        },
        node_allocatable={"ephemeral-storage": "10Gi"},
    )
    assert env["CPU"] == "2"
    assert env["CPU_M"] == "1500"
    assert env["REQ_CPU"] == "1"
    assert env["MEM_MI"] == "1024"
    assert env["MEM"] == str(2**30)
    assert env["GPUS"] == "2"
    assert env["EPH"] == str(10 * 2**30)  # unset limit: node allocatable


def test_service_env_fills_in_and_can_be_referenced() -> None:
    env = env_of(
        {
            "env": [
                {"name": "URL", "value": "https://$(KUBERNETES_SERVICE_HOST)"},
                {"name": "KUBERNETES_PORT", "value": "x"},
            ]
        },
        service_env={"KUBERNETES_SERVICE_HOST": "10.244.0.1", "KUBERNETES_PORT": "tcp://10.244.0.1:6443"},
    )
    assert env["URL"] == "https://10.244.0.1"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.244.0.1"
    assert env["KUBERNETES_PORT"] == "x"  # the container's own declaration wins


def test_argv_expands_against_the_final_env() -> None:
    container = {"name": "main", "command": ["python", "-c", "$(SCRIPT)"], "args": ["--lr=$(LR)", "$$(LR)", "$(NOPE)"]}
    assert container_argv(container, {"SCRIPT": "print(1)", "LR": "0.1"}) == [
        "python",
        "-c",
        "print(1)",
        "--lr=0.1",
        "$(LR)",
        "$(NOPE)",
    ]


def test_a_container_without_command_cannot_start_here() -> None:
    with pytest.raises(EnvResolutionError, match="no command"):
        container_argv({"name": "main", "args": ["x"]}, {})


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("1Gi", Fraction(2**30)),
        ("1e3", Fraction(1000)),
        ("1.5k", Fraction(1500)),
    ],
)
def test_parse_quantity(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_parse_quantity_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="invalid quantity"):
        parse_quantity("12 apples")
