"""The webhook's HTTP server reads every AdmissionReview the apiserver can send (issue 13).

Pins:
- `MAX_REVIEW_BYTES` covers the largest review: an UPDATE whose oldObject is the largest stored object
  (etcd's 1.5 MiB) and whose object is that plus the largest request body (3 MiB), with room for the
  envelope;
- a review of several MiB (over aiohttp's 1 MiB default, which Kopf's own server keeps) reaches the
  handler through a real `AdmissionWebhookServer` and its answer comes back, on the URL and the Service
  variants; one over `MAX_REVIEW_BYTES` is still refused (the bound is real);
- `configure_admission` serves with that server, with or without a Service.
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

import aiohttp
import kopf
import pytest

from trainsmart.admission.webhook import (
    APISERVER_MAX_REQUEST_BYTES,
    ETCD_MAX_OBJECT_BYTES,
    MAX_REVIEW_BYTES,
    AdmissionWebhookServer,
    ServiceRef,
    ServiceWebhookServer,
    configure_admission,
    ensure_webhook_certificates,
)

MIB = 1024 * 1024


def review(size: int) -> dict[str, Any]:
    """An UPDATE AdmissionReview of about `size` bytes, half of it in each of object and oldObject."""
    env = [{"name": "BLOB", "value": "x" * (size // 2)}]
    obj = {"apiVersion": "trainsmart.dev/v1alpha1", "kind": "TrainingJob", "spec": {"trainer": {"env": env}}}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {"uid": "u-1", "operation": "UPDATE", "object": obj, "oldObject": obj},
    }


async def post_review(server: kopf.WebhookServer, size: int) -> tuple[int, Any, list[int]]:
    """POST a review of about `size` bytes to `server`; the status, the answer and what the handler saw."""
    seen: list[int] = []

    async def handler(data: Any, **_: Any) -> Any:
        seen.append(len(json.dumps(data)))
        return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"allowed": True}}

    configs = cast("AsyncGenerator[kopf.WebhookClientConfig, None]", server(handler))
    await anext(configs)
    try:
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{server.port}/validate-trainingjob"
            async with session.post(url, data=io.BytesIO(json.dumps(review(size)).encode())) as response:
                body = await response.json() if response.status == 200 else await response.text()
                return response.status, body, seen
    finally:
        await configs.aclose()


def test_the_limit_covers_the_largest_update_review() -> None:
    largest_update = ETCD_MAX_OBJECT_BYTES + (ETCD_MAX_OBJECT_BYTES + APISERVER_MAX_REQUEST_BYTES)
    assert largest_update == 6 * MIB
    assert largest_update + MIB <= MAX_REVIEW_BYTES  # the envelope is a few KiB


@pytest.mark.asyncio
@pytest.mark.parametrize("service", [None, ServiceRef("ops", "trainsmart-webhook")], ids=["url", "service"])
async def test_a_review_of_several_mib_reaches_the_handler(service: ServiceRef | None) -> None:
    options: dict[str, Any] = {"addr": "127.0.0.1", "port": _free_port(), "insecure": True}
    server = ServiceWebhookServer(service=service, **options) if service else AdmissionWebhookServer(**options)
    status, body, seen = await post_review(server, 6 * MIB)
    assert status == 200, body
    assert body["response"]["allowed"] is True and seen and seen[0] > 6 * MIB


@pytest.mark.asyncio
async def test_a_review_over_the_limit_is_refused() -> None:
    server = AdmissionWebhookServer(addr="127.0.0.1", port=_free_port(), insecure=True)
    status, _, seen = await post_review(server, MAX_REVIEW_BYTES + MIB)
    assert status == 413 and not seen


@pytest.mark.parametrize("service", [None, ServiceRef("ops", "trainsmart-webhook")], ids=["url", "service"])
def test_configure_admission_serves_with_the_large_review_server(tmp_path: Path, service: ServiceRef | None) -> None:
    certs = ensure_webhook_certificates(tmp_path, ["127.0.0.1"])
    settings = kopf.OperatorSettings()
    server = configure_admission(
        settings, port=9443, certfile=certs.cert_file, pkeyfile=certs.key_file, cafile=certs.ca_file, service=service
    )
    assert isinstance(server, AdmissionWebhookServer) and settings.admission.server is server


def _free_port() -> int:
    return AdmissionWebhookServer._allocate_free_port()
