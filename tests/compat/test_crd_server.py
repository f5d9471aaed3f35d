"""The Kubernetes 1.36 CRD server itself, with a tiny CRD of the test's own (not the project's).

Pins what the compatibility tests build on:
- it reports Kubernetes v1.36.4 on /version (to the Python client and to kubectl);
- a CRD installs and becomes Established; its group is in both discovery forms (the legacy /apis list is
  our wrapper's addition) and /api answers with an empty core version list;
- kubectl works against it: api-resources, apply, get (printer columns, defaults filled in), explain
  (needs the CRD schema in OpenAPI, the wrapper's other addition);
- a custom resource with an unknown nested field is refused by `kubectl apply` (strict field validation)
  and the message names the field's path; `--validate=false` drops the field instead;
- CEL validation rules (`x-kubernetes-validations`, absent from the 1.20 control plane) are enforced.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from trainsmart.devcluster.apiext_server import CrdServer

pytestmark = pytest.mark.compat

GROUP = "compat.trainsmart.dev"
PLURAL = "widgets"
CRD_NAME = f"{PLURAL}.{GROUP}"
NAMESPACE = "default"


def widget_crd() -> dict[str, Any]:
    spec_schema = {
        "type": "object",
        "required": ["size"],
        "x-kubernetes-validations": [
            {
                "rule": "!has(self.nested) || !has(self.nested.depth) || self.nested.depth <= self.size",
                "message": "depth must not exceed size",
            }
        ],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "description": "How big the widget is."},
            "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
            "nested": {"type": "object", "properties": {"depth": {"type": "integer"}}},
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": spec_schema,
                                "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
                            },
                        }
                    },
                }
            ],
        },
    }


def widget(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def widgets(crd_api: client.ApiClient, crd_server: CrdServer) -> str:
    """The Widget CRD, installed and Established, and its group listed in the legacy /apis list."""
    ext = client.ApiextensionsV1Api(crd_api)
    ext.create_custom_resource_definition(widget_crd())
    deadline = time.monotonic() + 30
    while True:
        crd = ext.read_custom_resource_definition(CRD_NAME)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        groups = crd_server.get("/apis")
        listed = isinstance(groups, dict) and GROUP in {g["name"] for g in groups["groups"]}
        if conditions.get("Established") == "True" and listed:
            return CRD_NAME
        assert time.monotonic() < deadline, f"CRD not Established/listed: {conditions}, /apis: {groups}"
        time.sleep(0.2)


def kubectl(prefix: tuple[str, ...], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *args], input=stdin, capture_output=True, text=True, check=False, timeout=60)


def test_reports_kubernetes_1_36(crd_server: CrdServer, kubectl_136: tuple[str, ...]) -> None:
    assert crd_server.version["gitVersion"] == "v1.36.4"
    assert (crd_server.version["major"], crd_server.version["minor"]) == ("1", "36")
    done = kubectl(kubectl_136, "version", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["serverVersion"]["gitVersion"] == "v1.36.4"


def test_crd_is_established_and_discoverable(widgets: str, crd_server: CrdServer) -> None:
    core = crd_server.get("/api")
    assert core == {"kind": "APIVersions", "versions": [], "serverAddressByClientCIDRs": None} or (
        isinstance(core, dict) and core.get("kind") == "APIVersions" and not core.get("versions")
    )
    group = crd_server.get(f"/apis/{GROUP}")
    assert isinstance(group, dict) and group["preferredVersion"]["version"] == "v1"
    resources = crd_server.get(f"/apis/{GROUP}/v1")
    assert isinstance(resources, dict)
    assert {r["name"] for r in resources["resources"]} == {PLURAL, f"{PLURAL}/status"}


def test_kubectl_api_resources_lists_the_crd(widgets: str, kubectl_136: tuple[str, ...]) -> None:
    done = kubectl(kubectl_136, "api-resources", f"--api-group={GROUP}", "-o", "name")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [CRD_NAME]


def test_kubectl_apply_get_fills_defaults_and_prints_columns(
    widgets: str, kubectl_136: tuple[str, ...], tmp_path: Path
) -> None:
    manifest = tmp_path / "w.json"
    manifest.write_text(json.dumps(widget("applied", {"size": 3})))
    done = kubectl(kubectl_136, "apply", "-n", NAMESPACE, "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    assert "widget.compat.trainsmart.dev/applied created" in done.stdout

    done = kubectl(kubectl_136, "get", "wdg", "applied", "-n", NAMESPACE, "-o", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["spec"] == {"size": 3, "color": "red"}

    done = kubectl(kubectl_136, "get", "widgets", "-n", NAMESPACE)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["NAME", "SIZE"]  # custom columns replace the default AGE one
    assert any(row.split()[:2] == ["applied", "3"] for row in rows)


def test_kubectl_explain_shows_the_schema(widgets: str, kubectl_136: tuple[str, ...]) -> None:
    done = kubectl(kubectl_136, "explain", "widgets.spec.size")
    assert done.returncode == 0, done.stderr
    assert "How big the widget is." in done.stdout


def test_kubectl_apply_refuses_an_unknown_nested_field(
    widgets: str, kubectl_136: tuple[str, ...], tmp_path: Path
) -> None:
    manifest = tmp_path / "typo.json"
    manifest.write_text(json.dumps(widget("typo", {"size": 2, "nested": {"depthz": 1}})))
    done = kubectl(kubectl_136, "apply", "-n", NAMESPACE, "-f", str(manifest))
    assert done.returncode != 0
    assert 'unknown field "spec.nested.depthz"' in done.stderr

    # Without validation kubectl asks for none, and the server prunes the unknown field.
    done = kubectl(kubectl_136, "apply", "-n", NAMESPACE, "--validate=false", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    done = kubectl(kubectl_136, "get", "widget", "typo", "-n", NAMESPACE, "-o", "jsonpath={.spec.nested}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {}


def test_cel_rules_are_enforced(widgets: str, crd_api: client.ApiClient) -> None:
    objects = client.CustomObjectsApi(crd_api)
    with pytest.raises(ApiException) as refused:
        objects.create_namespaced_custom_object(
            GROUP, "v1", NAMESPACE, PLURAL, widget("too-deep", {"size": 1, "nested": {"depth": 2}})
        )
    assert refused.value.status == 422
    assert "depth must not exceed size" in str(refused.value.body)
    created = objects.create_namespaced_custom_object(
        GROUP, "v1", NAMESPACE, PLURAL, widget("deep-enough", {"size": 2, "nested": {"depth": 2}})
    )
    assert created["spec"]["color"] == "red"


def test_a_deleted_crd_leaves_the_legacy_discovery_list(crd_api: client.ApiClient, crd_server: CrdServer) -> None:
    """The wrapper keeps GET /apis (the classic APIGroupList) in step with CRDs both ways."""
    ext = client.ApiextensionsV1Api(crd_api)
    crd = widget_crd()
    group = "gone.compat.trainsmart.dev"
    crd["metadata"]["name"] = f"{PLURAL}.{group}"
    crd["spec"]["group"] = group

    def listed() -> bool:
        groups = crd_server.get("/apis")
        return isinstance(groups, dict) and group in {g["name"] for g in groups["groups"]}

    def wait_for(want: bool) -> None:
        deadline = time.monotonic() + 30
        while listed() != want:
            assert time.monotonic() < deadline, f"{group} listed in /apis: expected {want}"
            time.sleep(0.2)

    ext.create_custom_resource_definition(crd)
    wait_for(True)
    ext.delete_custom_resource_definition(crd["metadata"]["name"])
    wait_for(False)
