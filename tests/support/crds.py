"""Installing the generated CRDs on a test control plane, and waiting until their resources are served.

Applied create-or-replace from the files in crds/ (what users apply), never deleted: a session's tests
share one cluster and may have objects of these kinds. Established can precede the REST endpoint by a
moment, so readiness is proven by a list call, not by the condition alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from support.paths import REPO
from trainsmart.api import GROUP, SWEEP_PLURAL, TRAININGJOB_PLURAL, VERSION

CRD_DIR = REPO / "crds"
READY_TIMEOUT_S = 30.0


def apply_crd(api: client.ApiextensionsV1Api, manifest: dict[str, Any]) -> None:
    """Create, or replace in place (keeping the resourceVersion), retrying a concurrent update."""
    name = manifest["metadata"]["name"]
    for _ in range(5):
        try:
            existing = api.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            try:
                api.create_custom_resource_definition(manifest)
                return
            except ApiException as create_exc:
                if create_exc.status != 409:
                    raise
                continue
        body = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": existing.metadata.resource_version}}
        try:
            api.replace_custom_resource_definition(name, body)
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
    raise RuntimeError(f"could not apply CRD {name}: kept conflicting")


def _wait_established(api: client.ApiextensionsV1Api, name: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        conditions = api.read_custom_resource_definition(name).status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conditions):
            return
        time.sleep(0.1)
    raise TimeoutError(f"CRD {name} not Established after {READY_TIMEOUT_S}s")


def _wait_served(objects: client.CustomObjectsApi, plural: str, deadline: float) -> None:
    while True:
        try:
            objects.list_cluster_custom_object(GROUP, VERSION, plural, limit=1)
            return
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def install_crds(api_client: client.ApiClient, directory: Path = CRD_DIR) -> dict[str, dict[str, Any]]:
    """Apply every CRD in `directory` (crds/, or crds/strict/) and wait until both kinds are served; the
    manifests by CRD name."""
    extensions = client.ApiextensionsV1Api(api_client)
    manifests = {}
    for path in sorted(directory.glob("*.yaml")):
        manifest = yaml.safe_load(path.read_text())
        manifests[manifest["metadata"]["name"]] = manifest
        apply_crd(extensions, manifest)
    deadline = time.monotonic() + READY_TIMEOUT_S
    for name in manifests:
        _wait_established(extensions, name, deadline)
    objects = client.CustomObjectsApi(api_client)
    for plural in (TRAININGJOB_PLURAL, SWEEP_PLURAL):
        _wait_served(objects, plural, deadline)
    return manifests
