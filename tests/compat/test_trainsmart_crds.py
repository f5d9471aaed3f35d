"""trainsmart's generated CRDs on Kubernetes 1.36 (the apiextensions-apiserver 0.36.4 CRD server), judged
against the session's Kubernetes 1.20.2 control plane.

No admission webhook runs on the 1.36 server: what it refuses, the apiserver refuses alone.

Pins:
- both flavours install and become Established: crds/ (unknown spec fields kept for the webhook) on the
  session's 1.36 server, crds/strict/ (pruning) on a second 1.36 server of this module;
- every TrainingJob and HyperparamSweep in examples/ is accepted by both versions and stored identically
  (the same defaults filled in, nothing pruned);
- every schema mistake of the admission tests is refused by both versions with the same field path;
- every cross-field case is refused by the CEL rules at the path the webhook reports on 1.20, with no
  webhook installed (on 1.20 the apiserver stores them: tests/cluster/test_crd_admission.py);
- status: the subresource takes what the status model writes, prunes unknown status fields, and printer
  columns are served (`kubectl get tj`); `kubectl explain` shows spec field descriptions (OpenAPI v3);
- misspelt fields: with crds/ they are stored as written, as on 1.20, for the webhook or the operator to
  refuse by name; with crds/strict/ the server's strict field validation refuses them through
  `kubectl apply`, `kubectl apply --server-side` and any client that asks for strict validation, and a
  client that asks for none loses the field (the documented limit of that flavour, docs/validation.md).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from support.admission_cases import CROSS_FIELD, SCHEMA, TYPOS, Case, without_indices
from support.crds import install_crds
from support.paths import REPO
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION, TrainingJobStatus
from trainsmart.devcluster.apiext_server import CrdServer, find_apiext_binaries

pytestmark = pytest.mark.compat

NAMESPACE = "compat"
PLURALS = {"TrainingJob": TRAININGJOB_PLURAL, "HyperparamSweep": SWEEP_PLURAL}
EXAMPLE_FILES = sorted(REPO.glob("examples/*.yaml")) + sorted(REPO.glob("examples/*/*.yaml"))
EXAMPLES = [
    (f"{path.relative_to(REPO / 'examples')}#{index}", doc)
    for path in EXAMPLE_FILES
    for index, doc in enumerate(yaml.safe_load_all(path.read_text()))
    if doc and doc.get("kind") in PLURALS
]


@pytest.fixture(scope="module")
def api_136(crd_api: client.ApiClient) -> client.ApiClient:
    """The session's 1.36 server with crds/ installed."""
    install_crds(crd_api)
    return crd_api


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[client.ApiClient, CrdServer]]:
    """A second 1.36 server (one starts in about a second) with crds/strict/: both flavours have the same
    CRD names, so they cannot share a server."""
    binaries = find_apiext_binaries()
    assert binaries is not None, "run `make apiext`"
    server = CrdServer(workdir=tmp_path_factory.mktemp("apiext-strict"), binaries=binaries, log=print)
    server.start()
    api = config.new_client_from_config(config_file=str(server.admin_kubeconfig))
    try:
        install_crds(api, REPO / "crds" / "strict")
        yield api, server
    finally:
        api.close()
        server.stop()


def create(api: client.ApiClient, namespace: str, body: dict[str, Any], **options: Any) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api)
    plural = PLURALS[body["kind"]]
    created: dict[str, Any] = objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, body, **options
    )
    return created


def refusal(api: client.ApiClient, namespace: str, body: dict[str, Any], status: int = 422, **options: Any) -> str:
    """The message of a refused (dry-run) create: 422 for invalid values, 400 for a strict decoding error."""
    with pytest.raises(ApiException) as info:
        create(api, namespace, body, dry_run="All", **options)
    assert info.value.status == status, info.value.body
    return str(json.loads(info.value.body)["message"])


def kubectl(prefix: tuple[str, ...], *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *args], input=stdin, capture_output=True, text=True, check=False, timeout=60)


def test_both_flavours_install_on_1_36(
    api_136: client.ApiClient, strict_server: tuple[client.ApiClient, CrdServer], crd_server: CrdServer
) -> None:
    assert (crd_server.version["major"], crd_server.version["minor"]) == ("1", "36")
    for api in (api_136, strict_server[0]):
        extensions = client.ApiextensionsV1Api(api)
        for plural in PLURALS.values():
            crd = extensions.read_custom_resource_definition(f"{plural}.{GROUP}")
            established = [c for c in crd.status.conditions if c.type == "Established"]
            assert established and established[0].status == "True"
            # The rules survive on 1.36 (1.20 drops them: tests/cluster/test_crd_admission.py).
            assert "x-kubernetes-validations" in json.dumps(api.sanitize_for_serialization(crd))


@pytest.mark.parametrize(("name", "doc"), EXAMPLES, ids=[name for name, _ in EXAMPLES])
def test_examples_are_stored_alike_on_1_20_and_1_36(
    name: str,
    doc: dict[str, Any],
    api_136: client.ApiClient,
    api_client: client.ApiClient,
    trainsmart_crds: object,
    namespace: str,
) -> None:
    """Non-trainsmart documents of the examples (ConfigMaps) are left out: the 1.36 server serves CRDs only."""
    on_120 = create(api_client, namespace, doc, dry_run="All")
    on_136 = create(api_136, NAMESPACE, doc, dry_run="All")
    assert on_136["spec"] == on_120["spec"], name


@pytest.mark.parametrize("case", SCHEMA, ids=lambda case: case.id)
def test_schema_mistakes_get_the_1_20_verdict(
    case: Case, api_136: client.ApiClient, api_client: client.ApiClient, trainsmart_crds: object, namespace: str
) -> None:
    for message in (refusal(api_client, namespace, case.body), refusal(api_136, NAMESPACE, case.body)):
        assert case.path in without_indices(message) and case.reason in message, message


@pytest.mark.parametrize("case", CROSS_FIELD, ids=lambda case: case.id)
def test_cross_field_mistakes_are_refused_by_cel_at_the_webhooks_path(case: Case, api_136: client.ApiClient) -> None:
    message = refusal(api_136, NAMESPACE, case.body)
    assert f"{case.path}: Invalid value" in message, message


def test_status_subresource_pruning_and_printer_columns(
    api_136: client.ApiClient, kubectl_136: tuple[str, ...]
) -> None:
    job = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": "columns"},
        "spec": {"replicas": 3, "gpusPerReplica": 2},
    }
    create(api_136, NAMESPACE, job)
    status = TrainingJobStatus.model_validate(
        {"phase": "Running", "progress": {"epoch": 2, "totalEpochs": 4, "percent": 50.0, "headline": "2/4 (50%)"}}
    ).model_dump(mode="json", by_alias=True, exclude_none=True)
    objects = client.CustomObjectsApi(api_136)
    patched = objects.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, TRAININGJOB_PLURAL, "columns", {"status": {**status, "phaze": "typo"}}
    )
    assert patched["status"]["phase"] == "Running" and "phaze" not in patched["status"]
    shown = kubectl(kubectl_136, "get", "tj", "columns", "-n", NAMESPACE, stdin="")
    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split()[:6] == ["NAME", "PHASE", "REPLICAS", "GPUS", "PROGRESS", "METRIC"], header
    assert row.split()[:6] == ["columns", "Running", "3", "2", "2/4", "(50%)"], row


def test_kubectl_explain_shows_spec_fields(api_136: client.ApiClient, kubectl_136: tuple[str, ...]) -> None:
    """crds/ keeps unknown spec fields, which hides the spec's properties from OpenAPI v2; kubectl reads
    v3 from servers that publish it (1.27+), where they are all there."""
    shown = kubectl(kubectl_136, "explain", "trainingjob.spec.checkpoint.intervalEpochs", stdin="")
    assert shown.returncode == 0, shown.stderr
    assert "Save a checkpoint every N epochs." in shown.stdout


# A typo that leaves a required setting unset also breaks a CEL rule, which refuses it on 1.36 by itself.
REFUSED_BY_CEL = {"parameter-min": "spec.parameters[0]: Invalid value: type uniform needs min and max"}


@pytest.mark.parametrize("case", TYPOS, ids=lambda case: case.id)
def test_with_crds_misspelt_fields_are_kept_for_the_webhook(case: Case, api_136: client.ApiClient) -> None:
    if case.id in REFUSED_BY_CEL:
        assert REFUSED_BY_CEL[case.id] in refusal(api_136, NAMESPACE, case.body)
        return
    node: Any = create(api_136, NAMESPACE, case.body, dry_run="All")
    for part in case.path.split("."):
        node = node[part]
    assert node is not None


@pytest.mark.parametrize("case", TYPOS, ids=lambda case: case.id)
def test_with_crds_strict_kubectl_refuses_misspelt_fields(
    case: Case, strict_server: tuple[client.ApiClient, CrdServer], kubectl_136: tuple[str, ...], tmp_path: Path
) -> None:
    server = strict_server[1]
    prefix = (kubectl_136[0], f"--kubeconfig={server.admin_kubeconfig}", f"--cache-dir={tmp_path}")
    manifest = yaml.safe_dump({**case.body, "metadata": {**case.body["metadata"], "namespace": NAMESPACE}})
    applied = kubectl(prefix, "apply", "--dry-run=server", "-f", "-", stdin=manifest)
    assert applied.returncode != 0, applied.stdout
    assert f'unknown field "{case.path}"' in applied.stderr, applied.stderr
    server_side = kubectl(prefix, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=manifest)
    assert server_side.returncode != 0, server_side.stdout
    assert "field not declared in schema" in server_side.stderr, server_side.stderr


def test_with_crds_strict_clients_asking_for_strict_are_refused_others_lose_the_field(
    strict_server: tuple[client.ApiClient, CrdServer],
) -> None:
    api = strict_server[0]
    case = TYPOS[0]
    message = refusal(api, NAMESPACE, case.body, 400, field_validation="Strict")
    assert f'unknown field "{case.path}"' in message, message
    stored = create(api, NAMESPACE, case.body, dry_run="All")
    assert "learningRatez" not in stored["spec"]["trainer"].get("config", {})
