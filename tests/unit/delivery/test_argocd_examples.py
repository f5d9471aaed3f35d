"""The Argo CD Applications in examples/argocd/, checked without an Argo CD.

The local cluster has no Application CRD (and Argo CD's is not vendored here), so these are checked
against what Argo CD documents for the fields they use, and against this repository:

Pins:
- each Application uses only documented fields, with the right types (a hand-written JSON Schema of the
  Application fields these examples use, closed at every level, so a typo such as `selfheal` fails);
- it lives in the `argocd` namespace, targets the in-cluster API server, and its `source.path` exists here;
- the chart Application's inline values pass the chart's values.schema.json and `helm template` renders
  with them (the operator Deployment gets the image tag they set);
- the jobs Application's folder holds only trainsmart objects without a namespace (the destination's
  namespace applies), which tests/unit/admission/test_examples.py and tests/cluster/test_examples_accepted.py check
  like every other example.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator  # type: ignore[import-untyped]

from support.paths import REPO

APPLICATIONS = sorted((REPO / "examples" / "argocd").glob("*.yaml"))
HELM_VERSION = "v3.18.0"


def closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


STRING = {"type": "string", "minLength": 1}
BOOLEAN = {"type": "boolean"}
# The Application fields these examples use, as Argo CD documents them (operator-manual/application.yaml).
APPLICATION_SCHEMA = closed(
    {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "Application"},
        "metadata": closed(
            {"name": STRING, "namespace": STRING, "finalizers": {"type": "array", "items": STRING}},
            ("name", "namespace"),
        ),
        "spec": closed(
            {
                "project": STRING,
                "source": closed(
                    {
                        "repoURL": STRING,
                        "targetRevision": STRING,
                        "path": STRING,
                        "helm": closed(
                            {"releaseName": STRING, "valuesObject": {"type": "object"}, "skipCrds": BOOLEAN}
                        ),
                        "directory": closed({"recurse": BOOLEAN, "include": STRING, "exclude": STRING}),
                    },
                    ("repoURL", "targetRevision", "path"),
                ),
                "destination": closed({"server": STRING, "namespace": STRING}, ("server", "namespace")),
                "syncPolicy": closed(
                    {
                        "automated": closed({"prune": BOOLEAN, "selfHeal": BOOLEAN}),
                        "syncOptions": {
                            "type": "array",
                            "items": {"enum": ["CreateNamespace=true", "ServerSideApply=true", "PruneLast=true"]},
                        },
                    }
                ),
            },
            ("project", "source", "destination"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)


def load(path: Path) -> dict[str, Any]:
    (doc,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return dict(doc)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's merge of user values over the chart's defaults (maps merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def by_path(suffix: str) -> dict[str, Any]:
    return next(app for app in map(load, APPLICATIONS) if app["spec"]["source"]["path"].endswith(suffix))


def test_there_is_one_for_the_chart_and_one_for_a_folder_of_jobs() -> None:
    assert sorted(load(path)["spec"]["source"]["path"] for path in APPLICATIONS) == [
        "charts/trainsmart",
        "examples/argocd/jobs",
    ]


@pytest.mark.parametrize("path", APPLICATIONS, ids=[path.name for path in APPLICATIONS])
def test_application_uses_documented_fields_and_existing_paths(path: Path) -> None:
    app = load(path)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in Draft7Validator(APPLICATION_SCHEMA).iter_errors(app)
    ]
    assert errors == []
    assert app["metadata"]["namespace"] == "argocd"
    assert app["spec"]["destination"]["server"] == "https://kubernetes.default.svc"
    assert (REPO / app["spec"]["source"]["path"]).is_dir()


def test_the_chart_application_values_fit_the_chart() -> None:
    app = by_path("charts/trainsmart")
    values = app["spec"]["source"]["helm"]["valuesObject"]
    schema = yaml.safe_load((REPO / "charts" / "trainsmart" / "values.schema.json").read_text())
    merged = merge(yaml.safe_load((REPO / "charts" / "trainsmart" / "values.yaml").read_text()), values)
    assert [e.message for e in Draft7Validator(schema).iter_errors(merged)] == []
    cached = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / f"trainsmart/helm-{HELM_VERSION}/helm"
    helm = str(cached) if os.access(cached, os.X_OK) else shutil.which("helm")
    if helm is None:
        pytest.skip("helm is not installed: run `make helm` (scripts/install-helm.sh); `make test` does")
    argv = [helm, "template", app["spec"]["source"]["helm"]["releaseName"], str(REPO / "charts" / "trainsmart")]
    argv += ["--namespace", app["spec"]["destination"]["namespace"], "--values", "-"]
    result = subprocess.run(
        argv, input=yaml.safe_dump(values), capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    deployments = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment"]
    (container,) = deployments[0]["spec"]["template"]["spec"]["containers"]
    assert container["image"].endswith(f":{values['image']['tag']}")


def test_the_jobs_folder_holds_only_namespace_free_trainsmart_objects() -> None:
    app = by_path("examples/argocd/jobs")
    include = app["spec"]["source"]["directory"]["include"]
    files = [path for path in (REPO / app["spec"]["source"]["path"]).iterdir() if fnmatch(path.name, include)]
    assert files
    for path in files:
        for doc in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
            assert doc["apiVersion"].startswith("trainsmart.dev/"), path
            assert "namespace" not in doc["metadata"], path
