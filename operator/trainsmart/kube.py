"""The only module that writes to the Kubernetes API (and the few reads the controller needs).

Why the synchronous `kubernetes` client run in worker threads (a pool of `API_CONCURRENCY`) rather than aiohttp
against the API: the client already handles every way of logging in that a kubeconfig or a pod can
describe (client certificates, tokens, exec plugins, in-cluster service accounts) and its API paths are
generated from the OpenAPI spec, while the controller makes a handful of short calls per reconcile, so a
thread per call costs nothing that matters. `kubernetes_asyncio` would be the async twin, but it is not a
dependency; hand-written aiohttp calls would re-implement authentication for no gain. The pool is the
operator's own, not asyncio's default executor, and the client's connection pool has the same size: as
many connections as calls can be in flight, so none is opened only to be discarded ("Connection pool is
full") and a burst of reconciles cannot open more than that many connections. Responses the controller
reads as plain dicts are fetched raw (`_preload_content=False`): building the client's typed models costs
more CPU than the call itself.

Every write carries one field manager name (`FIELD_MANAGER`), so `managedFields` shows the operator as
one actor. Writes are written to be repeated: creations tolerate AlreadyExists, deletions tolerate
NotFound and carry a uid precondition (never delete a newer object that reuses the name), and the status
patch carries the resourceVersion it was derived from (a conflict means "derive again", never "overwrite").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from trainsmart.api import GROUP, TRAININGJOB_PLURAL, VERSION
from trainsmart.names import JOB_NAME_LABEL, REPORT_TOKEN_KEY, report_secret_name, selector_labels
from trainsmart.options import OwnPod, PeeringRef

log = logging.getLogger(__name__)

FIELD_MANAGER: Final = "trainsmart-operator"
"""The one field manager name on every write the operator makes."""
EVENT_SOURCE: Final = "trainsmart-operator"
EVENT_MESSAGE_MAX_CHARS: Final = 1024
MERGE_PATCH: Final = "application/merge-patch+json"
PEERING_GROUP: Final = "kopf.dev"
API_CONCURRENCY: Final = 16
"""API calls in flight at once (worker threads), and the size of the client's connection pool."""

_T = TypeVar("_T")


class StatusConflictError(Exception):
    """The job changed since it was read: the status patch was refused, derive again from a fresh read."""


@dataclass(frozen=True)
class ObjectRef:
    """The object an Event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> ObjectRef:
        meta = body.get("metadata") or {}
        return cls(
            str(body.get("apiVersion", "")),
            str(body.get("kind", "")),
            str(meta.get("namespace", "")),
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
        )


def new_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client for the cluster: `kubeconfig` if given, else in-cluster credentials, else $KUBECONFIG; its
    connection pool holds `API_CONCURRENCY` connections (one per worker thread of `Kube`)."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            configuration = client.Configuration()
            config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = API_CONCURRENCY
    return client.ApiClient(configuration)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The RFC 7386 merge patch turning `old` into `new`: removed keys become null, maps are diffed
    recursively, lists and scalars are sent whole (so the conditions list is always written whole)."""
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = value
    return patch


def _status_of(error: ApiException) -> int:
    return int(error.status or 0)


def _raw(response: Any) -> Any:
    """The JSON of a `_preload_content=False` response: plain camelCase dicts, as the pure layer reads them."""
    return json.loads(response.data)


class Kube:
    """Typed, awaitable wrappers around the calls the controller makes; one instance per operator."""

    def __init__(self, api: client.ApiClient, *, concurrency: int = API_CONCURRENCY) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.objects = client.CustomObjectsApi(api)
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kube-api")

    async def _call(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run one blocking client call in the operator's API thread pool. A raw response's body is read
        in that thread too: reading it returns the connection to the pool, and a connection still held
        by a response waiting for the event loop would make the next call open one more."""

        def call() -> _T:
            result = function(*args, **kwargs)
            if isinstance(result, urllib3.BaseHTTPResponse):
                _ = result.data  # read and cached; `_raw` parses it later
            return result

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def close(self) -> None:
        """Stop the API threads (calls in flight finish on their own; nothing new starts)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ---- reads -------------------------------------------------------------------------------------------

    async def get_object(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """One of our custom objects (`TRAININGJOB_PLURAL`, `SWEEP_PLURAL`) as stored, or None when it does
        not exist."""
        try:
            body = await self._call(self.objects.get_namespaced_custom_object, GROUP, VERSION, namespace, plural, name)
        except ApiException as error:
            if _status_of(error) == 404:
                return None
            raise
        return dict(body)

    async def read_node(self, name: str) -> dict[str, Any] | None:
        """A Node as stored, or None when it does not exist (a lost node's pods: `status/node_loss.py`).
        Raises ApiException 403 where the operator may not read nodes (the chart grants it only with
        `operator.lostNodeForceDeleteAfterSeconds` set)."""
        try:
            response = await self._call(self.core.read_node, name, _preload_content=False)
        except ApiException as error:
            if _status_of(error) == 404:
                return None
            raise
        body: dict[str, Any] = _raw(response)
        return body

    async def list_job_pods(self, namespace: str, job: str | None) -> list[dict[str, Any]]:
        """Every pod carrying the job's selector labels (job None: every job's replica pods in the
        namespace), as API dicts; owner filtering is the caller's."""
        if job is None:
            selector = JOB_NAME_LABEL
        else:
            selector = ",".join(f"{key}={value}" for key, value in selector_labels(job).items())
        response = await self._call(
            self.core.list_namespaced_pod, namespace, label_selector=selector, _preload_content=False
        )
        items: list[dict[str, Any]] = _raw(response).get("items") or []
        return items

    async def served_resources(self, group: str, version: str) -> set[str]:
        """The plural names API discovery lists for group/version (empty when the group is not served)."""
        try:
            response = await self._call(
                self.objects.get_api_resources, group, version, _preload_content=False, _request_timeout=10
            )
        except ApiException as error:
            if _status_of(error) == 404:
                return set()
            raise
        return {str(item.get("name", "")) for item in _raw(response).get("resources") or []}

    async def read_report_token(self, namespace: str, job: str) -> str | None:
        """The job's report token from its Secret; None when the Secret (or its key) does not exist."""
        data = await self.read_secret_data(namespace, report_secret_name(job))
        return data.get(REPORT_TOKEN_KEY) if data is not None else None

    async def read_secret_data(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, decoded (keys that are not UTF-8 left out); None when it does not exist. Report
        tokens and experiment-tracking credentials (`tracking/mlflow_sync.py`): the values are never logged."""
        try:
            response = await self._call(self.core.read_namespaced_secret, name, namespace, _preload_content=False)
        except ApiException as error:
            if _status_of(error) == 404:
                return None
            raise
        data: dict[str, str] = {}
        for key, encoded in (_raw(response).get("data") or {}).items():
            try:
                data[str(key)] = base64.b64decode(str(encoded), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
        return data

    # ---- writes ------------------------------------------------------------------------------------------

    async def create_if_absent(self, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
        """Create a namespaced core object (Pod, Service, Secret, ConfigMap, PVC); returns it as stored (a
        dict), or None when the name already exists."""
        kind = manifest["kind"]
        namespace = manifest["metadata"]["namespace"]
        create = {
            "Pod": self.core.create_namespaced_pod,
            "Service": self.core.create_namespaced_service,
            "Secret": self.core.create_namespaced_secret,
            "ConfigMap": self.core.create_namespaced_config_map,
            "PersistentVolumeClaim": self.core.create_namespaced_persistent_volume_claim,
        }[kind]
        try:
            response = await self._call(
                create, namespace, dict(manifest), field_manager=FIELD_MANAGER, _preload_content=False
            )
        except ApiException as error:
            if _status_of(error) == 409:
                return None
            raise
        created: dict[str, Any] = _raw(response)
        return created

    async def delete_pod(self, namespace: str, name: str, uid: str | None) -> dict[str, Any] | None:
        """Delete a pod with its own grace period (the trainer checkpoints on SIGTERM). Returns the pod as
        the API left it (terminating, with deletionTimestamp), {} when it went at once, None if already gone.

        The uid precondition keeps a late delete from hitting a newer pod that reuses the name."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid) if uid else None)
        try:
            response = await self._call(
                self.core.delete_namespaced_pod, name, namespace, body=options, _preload_content=False
            )
        except ApiException as error:
            if _status_of(error) in (404, 409):
                return None
            raise
        body: dict[str, Any] = _raw(response)
        return body if body.get("kind") == "Pod" else {}

    async def force_delete_pod(self, namespace: str, name: str, uid: str | None) -> bool:
        """Remove a pod at once (grace 0) without its kubelet's confirmation: only for a pod whose node is
        lost (`status/node_loss.py`). False when it was already gone or the name is a newer pod's."""
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid) if uid else None
        )
        try:
            await self._call(self.core.delete_namespaced_pod, name, namespace, body=options, _preload_content=False)
        except ApiException as error:
            if _status_of(error) in (404, 409):
                return False
            raise
        return True

    async def delete_trainingjob(self, namespace: str, name: str, uid: str) -> bool:
        """Delete the job (its children go with it by owner reference); False if already gone."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid), propagation_policy="Background")
        try:
            await self._call(
                self.objects.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                TRAININGJOB_PLURAL,
                name,
                body=options,
            )
        except ApiException as error:
            if _status_of(error) in (404, 409):
                return False
            raise
        return True

    async def post_event(self, regarding: ObjectRef, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on `regarding` (what `kubectl describe` lists). Failures are logged, not raised:
        an Event is a notification, and the status already holds the facts."""
        now = datetime.now(UTC)
        event = client.CoreV1Event(
            metadata=client.V1ObjectMeta(
                name=f"{regarding.name}.{secrets.token_hex(8)}", namespace=regarding.namespace
            ),
            involved_object=client.V1ObjectReference(
                api_version=regarding.api_version,
                kind=regarding.kind,
                name=regarding.name,
                namespace=regarding.namespace,
                uid=regarding.uid,
            ),
            type=type_,
            reason=reason,
            message=message[:EVENT_MESSAGE_MAX_CHARS],
            source=client.V1EventSource(component=EVENT_SOURCE),
            reporting_component=EVENT_SOURCE,
            reporting_instance=EVENT_SOURCE,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            await self._call(self.core.create_namespaced_event, regarding.namespace, event, field_manager=FIELD_MANAGER)
        except ApiException as error:
            log.warning("could not post Event %s on %s/%s: %s", reason, regarding.namespace, regarding.name, error)

    # ---- sweeps (a sweep owns its trial TrainingJobs, so it may create, suspend/resume and delete them) ----

    async def list_trials(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """The TrainingJobs matching a label selector (a sweep's trials; owner filtering is the caller's)."""
        response = await self._call(
            self.objects.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            TRAININGJOB_PLURAL,
            label_selector=selector,
            _preload_content=False,
        )
        items: list[dict[str, Any]] = _raw(response).get("items") or []
        return items

    async def create_trainingjob(self, manifest: Mapping[str, Any]) -> bool:
        """Create a TrainingJob (a sweep's trial); False when the name already exists."""
        namespace = manifest["metadata"]["namespace"]
        try:
            await self._call(
                self.objects.create_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                TRAININGJOB_PLURAL,
                dict(manifest),
                field_manager=FIELD_MANAGER,
            )
        except ApiException as error:
            if _status_of(error) == 409:
                return False
            raise
        return True

    async def patch_trainingjob(self, namespace: str, name: str, uid: str | None, patch: Mapping[str, Any]) -> bool:
        """Merge-patch a trial's `spec.suspend` and the sweep's annotations on it; False when it is gone or
        is another object by now (the uid in the patch is a precondition: 409 when it differs)."""
        body = {**patch, "metadata": {**(patch.get("metadata") or {}), **({"uid": uid} if uid else {})}}
        try:
            await self._call(
                self.objects.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                TRAININGJOB_PLURAL,
                name,
                body,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if _status_of(error) in (404, 409):
                return False
            raise
        return True

    async def patch_status(
        self, plural: str, namespace: str, name: str, resource_version: str, patch: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Merge-patch `.status` of one of our objects on the status subresource, only if it is still at
        `resource_version`. Returns the updated object, None when it is gone; raises StatusConflictError
        when it changed meanwhile (derive again, never overwrite)."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": dict(patch)}
        try:
            updated = await self._call(
                self.objects.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                plural,
                name,
                body,
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if _status_of(error) == 404:
                return None
            if _status_of(error) == 409:
                raise StatusConflictError(f"{namespace}/{name} changed since it was read") from error
            raise
        return dict(updated)

    # ---- the operator's own pod (several replicas: see handlers/standby.py) -------------------------------

    async def read_peering_status(self, peering: PeeringRef) -> Mapping[str, Any]:
        """The `status` of Kopf's peering object (identity -> peer), {} when it has none."""
        if peering.namespace is None:
            body = await self._call(
                self.objects.get_cluster_custom_object, PEERING_GROUP, "v1", "clusterkopfpeerings", peering.name
            )
        else:
            body = await self._call(
                self.objects.get_namespaced_custom_object,
                PEERING_GROUP,
                "v1",
                peering.namespace,
                "kopfpeerings",
                peering.name,
            )
        status = body.get("status") if isinstance(body, Mapping) else None
        return status if isinstance(status, Mapping) else {}

    async def set_pod_label(self, pod: OwnPod, label: str, value: str | None) -> None:
        """Set (or, with None, remove) one label on a pod."""
        patch = {"metadata": {"labels": {label: value}}}
        await self._call(
            self.core.patch_namespaced_pod,
            pod.name,
            pod.namespace,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE_PATCH,
        )
