"""The other children of a TrainingJob: headless Service, report-token Secret, checkpoint PVC, and names.

Pins:
- Service `<job>`: headless, publishes not-ready addresses, selects exactly the job's pods, owned by the job;
- Secret `<job>-report-token`: the given token base64-encoded under `token`, immutable, never generated;
- PVC `<job>-checkpoints` only with checkpoint.size: size, storage class, RWO for one replica, RWX for more;
- name checks: job names must make valid Service names and pod hostnames (<= 63 characters).
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from support.models import make_job
from trainsmart.builders import (
    build_checkpoint_pvc,
    build_headless_service,
    build_report_token_secret,
    build_worker_pod,
    owner_reference,
)
from trainsmart.names import name_problems
from trainsmart.settings import OperatorSettings

SETTINGS = OperatorSettings()


def test_headless_service() -> None:
    job = make_job({"replicas": 2})
    service = build_headless_service(job, SETTINGS)
    assert service["metadata"]["name"] == "mnist"
    assert service["metadata"]["namespace"] == "ml"
    assert service["metadata"]["ownerReferences"] == [owner_reference(job)]
    spec = service["spec"]
    assert spec["clusterIP"] == "None"
    assert spec["publishNotReadyAddresses"] is True
    assert spec["selector"] == {"app.kubernetes.io/managed-by": "trainsmart", "trainsmart.dev/job-name": "mnist"}
    assert spec["ports"] == [{"name": "rendezvous", "port": 29500, "targetPort": 29500, "protocol": "TCP"}]
    pod = build_worker_pod(job, 1, 0, SETTINGS)
    assert spec["selector"].items() <= pod["metadata"]["labels"].items()
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]


def test_report_token_secret() -> None:
    secret = build_report_token_secret(make_job(), "s3cr3t-token")
    assert secret["kind"] == "Secret" and secret["type"] == "Opaque"
    assert secret["metadata"]["name"] == "mnist-report-token"
    assert secret["immutable"] is True
    assert base64.b64decode(secret["data"]["token"]) == b"s3cr3t-token"
    assert secret == build_report_token_secret(make_job(), "s3cr3t-token")
    with pytest.raises(ValueError, match="empty"):
        build_report_token_secret(make_job(), "")


@pytest.mark.parametrize(
    ("checkpoint", "replicas", "expected"),
    [
        (None, 1, None),
        ({"claimName": "mine"}, 2, None),
        ({"size": "20Gi"}, 1, {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}),
        (
            {"size": "20Gi", "storageClassName": "fast-nfs"},
            4,
            {
                "accessModes": ["ReadWriteMany"],
                "resources": {"requests": {"storage": "20Gi"}},
                "storageClassName": "fast-nfs",
            },
        ),
    ],
)
def test_checkpoint_pvc(checkpoint: dict[str, Any] | None, replicas: int, expected: dict[str, Any] | None) -> None:
    pvc = build_checkpoint_pvc(make_job({"checkpoint": checkpoint, "replicas": replicas}))
    if expected is None:
        assert pvc is None
        return
    assert pvc is not None
    assert pvc["metadata"]["name"] == "mnist-checkpoints"
    assert pvc["metadata"]["labels"]["trainsmart.dev/job-name"] == "mnist"
    assert pvc["spec"] == expected


@pytest.mark.parametrize(
    ("name", "replicas", "problem"),
    [
        ("mnist", 8, None),
        ("a" * 61, 1, None),
        ("a" * 61, 11, "too long"),
        ("a" * 62, 1, "too long"),
        ("9lives", 1, "starting with a letter"),
        ("my.job", 1, "starting with a letter"),
    ],
)
def test_name_problems(name: str, replicas: int, problem: str | None) -> None:
    problems = name_problems(name, replicas)
    if problem is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problem in problems[0]
