"""The real kube-apiserver calling the real admission webhook (Kopf + our handlers) over TLS.

Pins:
- a valid TrainingJob and HyperparamSweep are admitted;
- what the schema cannot catch is refused with the field path and the reason in the API error: a reserved
  env name, a name too long for its pod hostnames, a model that cannot read the dataset, a sweep whose
  trials would be misnamed, and every problem of one object in a single response;
- every shared admission case (tests/support/admission_cases.py: misspelt fields at any depth, and the
  cross-field rules the CRDs also state in CEL) is refused at its field path, from a client that asks for
  no field validation;
- on a running job the DDP shape is frozen unless the job is suspended; metadata updates still pass;
- `kubectl apply` (and `--dry-run=server`, possible because sideEffects is None) shows the same refusal;
- the webhook this test registers is scoped by a namespace label: objects elsewhere are not sent to it,
  and the configuration is deleted at the end whatever happens (it is cluster-scoped, and the control
  plane is shared by the whole session);
- Kopf's managed configuration has the settings we rely on (CREATE/UPDATE, Fail, sideEffects None, v1,
  our CA), serves the same refusals, and is emptied when the operator stops.

The operator runs as a subprocess, `kopf run -m trainsmart.main` configured by `TRAINSMART_OPERATOR_*`
variables (admission only: `--no-controllers`), so nothing else acts on the objects; this is also the
real-cluster check that `kopf run -m trainsmart.main` serves the webhook `trainsmart operator` would.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.admission_cases import CROSS_FIELD, TYPOS, Case
from support.admission_webhook import (
    READY_TIMEOUT_S,
    RESERVED_ENV_JOB,
    AdmissionOperator,
    ScopedWebhook,
    admission_operator,
    create,
    job,
    refusal,
    scope_namespace,
    scoped_webhook,
    wait_enforced,
)
from support.manifests import sweep_body
from support.waiting import wait_for
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.controlplane import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("trainsmart_crds")]

RUNNING_STATUS = {"status": {"phase": "Running", "startTime": "2025-01-01T00:00:00Z"}}


def sweep(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "objective": {"metric": "val_accuracy", "goal": "maximize"},
        "parameters": [
            {"name": "lr", "path": "trainer.config.learningRate", "type": "loguniform", "min": 1e-4, "max": 0.1}
        ],
        "trialTemplate": {"trainer": {"config": {"epochs": 2}}},
        "maxTrials": 4,
    }
    return sweep_body(name, base | spec)


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScopedWebhook]:
    """The admission operator behind a webhook configuration scoped to this module's namespaces
    (support/admission_webhook.py)."""
    with scoped_webhook(control_plane, api_client, tmp_path_factory.mktemp("webhook")) as scoped:
        yield scoped


@pytest.fixture
def ns(namespace: str, webhook: ScopedWebhook, api_client: client.ApiClient) -> str:
    """The test's namespace, labelled into the webhook's scope, with the webhook proven active."""
    return scope_namespace(api_client, namespace, webhook)


# -- the scoped webhook ----------------------------------------------------------------------------------


def test_valid_objects_are_admitted(api_client: client.ApiClient, ns: str) -> None:
    assert create(api_client, ns, job("valid-job"))["metadata"]["uid"]
    assert create(api_client, ns, sweep("valid-sweep"))["metadata"]["uid"]


def test_reserved_env_name_is_refused(api_client: client.ApiClient, ns: str) -> None:
    message = refusal(lambda: create(api_client, ns, RESERVED_ENV_JOB))
    assert 'admission webhook "validate-trainingjob.trainsmart.dev" denied the request' in message
    assert "- spec.trainer.env[0].name: WORLD_SIZE is reserved" in message


def test_name_too_long_for_pod_hostnames_is_refused(api_client: client.ApiClient, ns: str) -> None:
    message = refusal(lambda: create(api_client, ns, job("j" * 62, replicas=2)))
    assert "- metadata.name: is too long" in message and "limit is 63" in message


def test_model_that_cannot_read_the_dataset_is_refused(api_client: client.ApiClient, ns: str) -> None:
    config = {"model": {"name": "cnn"}, "dataset": {"name": "synthetic"}}
    message = refusal(lambda: create(api_client, ns, job("wrong-model", trainer={"config": config})))
    assert "- spec.trainer.config: model cnn cannot train on dataset synthetic" in message


def test_every_problem_comes_back_at_once(api_client: client.ApiClient, ns: str) -> None:
    bad = job("k" * 62, trainer={"env": [{"name": "RANK", "value": "0"}], "config": {"model": {"name": "mf"}}})
    message = refusal(lambda: create(api_client, ns, bad))
    assert "(3 problems)" in message
    for path in ("metadata.name", "spec.trainer.config", "spec.trainer.env[0].name"):
        assert f"- {path}: " in message


def test_sweep_problems_are_refused(api_client: client.ApiClient, ns: str) -> None:
    template = {"replicas": 2, "trainer": {"env": [{"name": "MASTER_PORT", "value": "1"}]}}
    message = refusal(lambda: create(api_client, ns, sweep("s" * 60, trialTemplate=template)))
    assert 'admission webhook "validate-sweep.trainsmart.dev" denied the request' in message
    assert "- metadata.name: is too long: trial pod hostname" in message
    assert "- spec.trialTemplate.trainer.env[0].name: MASTER_PORT is reserved" in message


@pytest.mark.parametrize("case", CROSS_FIELD + TYPOS, ids=lambda case: case.id)
def test_shared_cases_are_refused_at_their_path_from_any_client(
    api_client: client.ApiClient, ns: str, case: Case
) -> None:
    """The client sends no field-validation parameter (as `kubectl apply --validate=false` and most API
    clients do): on 1.20 the webhook is what refuses misspelt fields (kept by the CRDs for it) and the
    cross-field rules the 1.36 apiserver also checks in CEL (tests/compat)."""
    message = refusal(lambda: create(api_client, ns, case.body, dry_run=True))
    assert f"- {case.path}: " in message or f"denied the request: {case.path}: " in message, message
    if case in TYPOS:
        assert "unknown field; did you mean" in message


def test_running_job_shape_is_frozen_unless_suspended(api_client: client.ApiClient, ns: str) -> None:
    objects = client.CustomObjectsApi(api_client)
    create(api_client, ns, job("frozen"))
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, ns, TRAININGJOB_PLURAL, "frozen", RUNNING_STATUS)

    def patch(body: dict[str, Any]) -> object:
        return objects.patch_namespaced_custom_object(GROUP, VERSION, ns, TRAININGJOB_PLURAL, "frozen", body)

    message = refusal(lambda: patch({"spec": {"replicas": 4}}))
    assert "- spec.replicas: cannot change after the job has started (spec.replicas 2 -> 4)" in message
    assert "suspend it first" in message
    patch({"metadata": {"labels": {"team": "a"}}})  # bookkeeping is never refused
    patch({"spec": {"suspend": True, "replicas": 4}})  # suspending and resizing together is fine
    stored = patch({"spec": {"suspend": False, "gpusPerReplica": 0}})
    assert stored["spec"]["replicas"] == 4  # type: ignore[index]
    message = refusal(lambda: patch({"spec": {"checkpoint": {"size": "1Gi"}}}))
    assert "- spec.checkpoint: cannot change once the job has started" in message


def test_started_sweep_keeps_its_search_space(api_client: client.ApiClient, ns: str) -> None:
    objects = client.CustomObjectsApi(api_client)
    create(api_client, ns, sweep("started"))
    status = {"status": {"counts": {"total": 1}}}
    objects.patch_namespaced_custom_object_status(GROUP, VERSION, ns, SWEEP_PLURAL, "started", status)
    changed = sweep("started")["spec"]["parameters"]
    changed[0]["max"] = 0.5
    message = refusal(
        lambda: objects.patch_namespaced_custom_object(
            GROUP, VERSION, ns, SWEEP_PLURAL, "started", {"spec": {"parameters": changed}}
        )
    )
    assert "- spec.parameters: cannot change once the sweep has trials (spec.parameters" in message
    objects.patch_namespaced_custom_object(GROUP, VERSION, ns, SWEEP_PLURAL, "started", {"spec": {"maxTrials": 8}})


def test_objects_outside_the_scope_are_not_sent(api_client: client.ApiClient, ns: str) -> None:
    core = client.CoreV1Api(api_client)
    outside = f"webhook-outside-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": outside}})
    try:
        assert create(api_client, outside, RESERVED_ENV_JOB, dry_run=True)["metadata"]["name"] == "reserved-env"
    finally:
        core.delete_namespace(outside)


def kubectl(control_plane: ControlPlane, *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    argv = ["kubectl", "--kubeconfig", str(control_plane.admin_kubeconfig), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_apply_shows_the_refusal(control_plane: ControlPlane, ns: str) -> None:
    manifest = yaml.safe_dump(RESERVED_ENV_JOB)
    for extra in ((), ("--dry-run=server",)):
        result = kubectl(control_plane, "apply", "-n", ns, *extra, "-f", "-", stdin=manifest)
        assert result.returncode != 0, result.stdout
        assert 'admission webhook "validate-trainingjob.trainsmart.dev" denied the request' in result.stderr
        assert "spec.trainer.env[0].name: WORLD_SIZE is reserved" in result.stderr
    good = kubectl(control_plane, "apply", "-n", ns, "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(job("ok")))
    assert good.returncode == 0 and "created (server dry run)" in good.stdout, good.stderr


# -- Kopf's managed configuration -------------------------------------------------------------------------


def test_kopf_managed_configuration(
    control_plane: ControlPlane, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """While this test runs, the managed webhook applies cluster-wide (Kopf sets no namespaceSelector);
    it is served correctly throughout and deleted in `finally`, and tests do not run concurrently."""
    admission = client.AdmissionregistrationV1Api(api_client)
    name = f"managed-{secrets.token_hex(4)}.{GROUP}"
    try:
        with admission_operator(control_plane, tmp_path, managed=name) as operator:
            webhooks = _wait_managed(api_client, name, operator)
            by_name = {hook["name"]: hook for hook in webhooks}
            assert set(by_name) == {f"validate-trainingjob.{name}", f"validate-sweep.{name}"}
            for hook in webhooks:
                assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
                assert "v1" in hook["admissionReviewVersions"]
                assert hook["rules"][0]["operations"] == ["CREATE", "UPDATE"]
                assert hook["clientConfig"]["caBundle"] == operator.ca_bundle()
            job_hook = by_name[f"validate-trainingjob.{name}"]
            assert job_hook["rules"][0]["resources"] == [TRAININGJOB_PLURAL]
            assert job_hook["clientConfig"]["url"] == f"https://127.0.0.1:{operator.port}/validate-trainingjob"
            wait_enforced(api_client, namespace)
            assert "WORLD_SIZE is reserved" in refusal(lambda: create(api_client, namespace, RESERVED_ENV_JOB))
            assert create(api_client, namespace, job("managed-ok"))["metadata"]["uid"]
        # A clean stop removes Kopf's (non-persistent) webhooks from the configuration.
        remaining = admission.read_validating_webhook_configuration(name).webhooks
        assert not remaining
    finally:
        with contextlib.suppress(ApiException):
            admission.delete_validating_webhook_configuration(name)


def _wait_managed(api_client: client.ApiClient, name: str, operator: AdmissionOperator) -> list[dict[str, Any]]:
    def filled() -> list[dict[str, Any]] | None:
        try:
            stored = client.AdmissionregistrationV1Api(api_client).read_validating_webhook_configuration(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return None
        raw: dict[str, Any] = api_client.sanitize_for_serialization(stored)
        webhooks: list[dict[str, Any]] = raw.get("webhooks") or []
        return webhooks if len(webhooks) == 2 else None

    return wait_for(filled, READY_TIMEOUT_S, f"Kopf to fill {name}", operator.log_tail)
