"""Large objects through the real kube-apiserver and the real admission webhook (issue 13).

Pins:
- a TrainingJob of about 0.9 MiB (legitimate data: many env variables) is created and then updated with a
  merge patch; the UPDATE review carries the object twice, which a webhook with a web server's default
  1 MiB body limit refused with an unexplained 413;
- a TrainingJob near the largest object the apiserver stores (etcd's 1.5 MiB request limit) is created,
  updated and suspended;
- an object over the apiserver's own limits gets the apiserver's message for that limit (etcd's "request
  is too large", or the 3 MiB request-body limit), on create and on an update that grows the object,
  never a failure to call the webhook.

The webhook is scoped to this module's namespaces (support/admission_webhook.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.admission_webhook import ScopedWebhook, create, job, scope_namespace, scoped_webhook
from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.devcluster.controlplane import ControlPlane

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("trainsmart_crds")]

KIB = 1024
MIB = 1024 * KIB
ENV_VALUE_CHARS = 8 * KIB
"""A realistic large variable (a small JSON document or PEM bundle), far below the schema's bound; so
large that 1.3 MiB of them stays within the schema's 256 variables."""


@pytest.fixture(scope="module")
def webhook(
    control_plane: ControlPlane, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScopedWebhook]:
    with scoped_webhook(control_plane, api_client, tmp_path_factory.mktemp("webhook-large")) as scoped:
        yield scoped


@pytest.fixture
def ns(namespace: str, webhook: ScopedWebhook, api_client: client.ApiClient) -> str:
    return scope_namespace(api_client, namespace, webhook)


def large_env(size: int, value_chars: int = ENV_VALUE_CHARS) -> list[dict[str, Any]]:
    """About `size` bytes of JSON of env variables with values of `value_chars`."""
    count = size // (value_chars + 32)
    return [{"name": f"BLOB_{i:04d}", "value": "x" * value_chars} for i in range(count)]


def large_job(name: str, size: int) -> dict[str, Any]:
    """A valid TrainingJob of about `size` bytes of JSON, most of it env values."""
    body = job(name)
    body["spec"]["trainer"]["env"] = large_env(size, max(ENV_VALUE_CHARS, size // 200))  # <= 200 entries
    return body


def patch(api_client: client.ApiClient, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    objects = client.CustomObjectsApi(api_client)
    patched: dict[str, Any] = objects.patch_namespaced_custom_object(GROUP, VERSION, ns, TRAININGJOB_PLURAL, name, body)
    return patched


def api_error(call: Any) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        call()
    try:
        message = str(json.loads(info.value.body)["message"])
    except (TypeError, ValueError, KeyError):
        message = str(info.value.body)
    return info.value.status, message


def assert_storage_limit(message: str) -> None:
    """The apiserver's own message for an object etcd cannot store, not a failed call to our webhook: etcd's
    "etcdserver: request is too large", or, over the 2 MiB its client sends, "trying to send message
    larger than max (... vs. 2097152)"."""
    assert "request is too large" in message or "larger than max" in message, message
    assert "webhook" not in message, message


@pytest.mark.parametrize("size", [900 * KIB, 1300 * KIB], ids=["0.9MiB", "1.3MiB"])
def test_large_job_is_created_and_updated(api_client: client.ApiClient, ns: str, size: int) -> None:
    body = large_job("large", size)
    assert len(json.dumps(body)) > size - 8 * KIB
    created = create(api_client, ns, body)
    assert len(created["spec"]["trainer"]["env"]) == len(body["spec"]["trainer"]["env"])
    assert patch(api_client, ns, "large", {"spec": {"suspend": True}})["spec"]["suspend"] is True
    assert patch(api_client, ns, "large", {"spec": {"suspend": False}})["spec"]["suspend"] is False
    labelled = patch(api_client, ns, "large", {"metadata": {"labels": {"team": "a"}}})
    assert labelled["metadata"]["labels"] == {"team": "a"}


def test_object_over_the_storage_limit_gets_the_apiservers_error(api_client: client.ApiClient, ns: str) -> None:
    for name, size in (("too-large", 1700 * KIB), ("much-too-large", 2500 * KIB)):
        assert_storage_limit(api_error(lambda: create(api_client, ns, large_job(name, size)))[1])  # noqa: B023


def test_request_over_the_body_limit_gets_the_apiservers_error(api_client: client.ApiClient, ns: str) -> None:
    status, message = api_error(lambda: create(api_client, ns, large_job("far-too-large", 4 * MIB)))
    assert status == 413 and "limit is 3145728" in message, (status, message)
    assert "webhook" not in message, message


def test_update_that_outgrows_the_storage_limit_gets_the_apiservers_error(
    api_client: client.ApiClient, ns: str
) -> None:
    """About the largest review there is: a 1.3 MiB stored object (oldObject) whose env values a 2.7 MiB
    merge patch doubles (object)."""
    create(api_client, ns, large_job("grows", 1300 * KIB))
    env = large_env(2700 * KIB, 2 * ENV_VALUE_CHARS)
    assert_storage_limit(api_error(lambda: patch(api_client, ns, "grows", {"spec": {"trainer": {"env": env}}}))[1])
