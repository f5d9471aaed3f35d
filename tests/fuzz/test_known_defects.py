"""Defects the fuzz suite found outside the files it first could change (issue 13), each fixed since and
pinned here as an ordinary test: a spec nested beyond what Python's JSON decoder reads is refused with a
path (no 500 from the webhook); a pod the API refuses becomes a Warning Event and a status, no traceback.

The fuzz run generates these shapes too (support/fuzz_objects.py, `KNOWN_DEFECTS`: free-form pass-through
values of any shape, which the operator cannot turn into pods, refused at pod creation).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from support.admission_cases import JOB_BASE
from support.fuzz_objects import RawApi, encode, nested
from support.kubeapi import warning_events
from support.manifests import trainingjob_body
from support.waiting import wait_for
from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION

pytestmark = [pytest.mark.cluster]


def _log_since(operator: Any, offset: int) -> str:
    """What the operator logged after `offset` bytes: the module shares one operator with other tests."""
    with operator.log_path.open("rb") as log:
        log.seek(offset)
        return log.read().decode(errors="replace")


def _create(api_client: client.ApiClient, namespace: str, body: dict[str, Any]) -> tuple[int, Any]:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{TRAININGJOB_PLURAL}"
    return RawApi(api_client).request("POST", path, encode(body))


def test_a_spec_nested_1000_levels_is_refused_with_a_path(fuzz_cluster: Any, api_client: client.ApiClient) -> None:
    """Too deep for Python's JSON decoder, where Kopf answered 500: refused by `admission/review_depth.py`."""
    body = trainingjob_body("deep-1000", JOB_BASE | {"affinity": {"nodeAffinity": nested(1000)}})
    status, answer = _create(api_client, fuzz_cluster.namespace, body)
    assert status == 422 and "spec.affinity" in answer["message"], (status, answer)


def test_an_affinity_that_is_no_kubernetes_object_is_refused_or_reconciled(
    fuzz_cluster: Any, api_client: client.ApiClient
) -> None:
    body = trainingjob_body("bad-affinity", JOB_BASE | {"affinity": {"nodeAffinity": [{"a": "x"}]}})
    offset = fuzz_cluster.operator.log_path.stat().st_size
    status, answer = _create(api_client, fuzz_cluster.namespace, body)
    if status == 422:
        assert "spec.affinity" in answer["message"]
        return
    assert status == 201, answer
    api = RawApi(api_client)
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{fuzz_cluster.namespace}/{TRAININGJOB_PLURAL}/bad-affinity"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        _, job = api.request("GET", path)
        status_ = job.get("status") or {}
        if status_.get("phase") or any(c.get("type") == "InvalidSpec" for c in status_.get("conditions") or []):
            break
        time.sleep(0.5)
    else:
        pytest.fail("never reconciled")
    assert "Traceback" not in _log_since(fuzz_cluster.operator, offset)


def test_a_missing_priority_class_is_reported_not_a_traceback(fuzz_cluster: Any, api_client: client.ApiClient) -> None:
    body = trainingjob_body("no-such-class", JOB_BASE | {"priorityClassName": "no-such-class"})
    offset = fuzz_cluster.operator.log_path.stat().st_size
    status, answer = _create(api_client, fuzz_cluster.namespace, body)
    assert status == 201, answer
    api = RawApi(api_client)
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{fuzz_cluster.namespace}/{TRAININGJOB_PLURAL}/no-such-class"
    deadline = time.monotonic() + 20
    phase = None
    while time.monotonic() < deadline and not phase:
        phase = (api.request("GET", path)[1].get("status") or {}).get("phase")
        time.sleep(0.5)
    assert phase, "never reconciled"
    assert "Traceback" not in _log_since(fuzz_cluster.operator, offset)

    def refused() -> list[Any]:
        events = warning_events(api_client, fuzz_cluster.namespace)
        return [e for e in events if e.reason == "FailedCreatePod" and e.involved_object.name == "no-such-class"]

    (event, *_) = wait_for(refused, 30, "a FailedCreatePod Warning Event")
    assert "no-such-class" in event.message and "PriorityClass" in event.message, event.message
