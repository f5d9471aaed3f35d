"""A small dynamic volume provisioner for the local cluster, run by the node agent.

A kubelet provisions nothing; on a real cluster a CSI driver's external-provisioner does. The local
cluster has none, so a PersistentVolumeClaim (the operator's `<job>-checkpoints`, say) would stay Pending
forever and the scheduler would never place a pod that uses it. The agent fills that gap:

* at start it registers the `trainsmart-local` StorageClass (provisioner `trainsmart.dev/local`,
  `Immediate` binding, `Delete` reclaim) as the cluster default unless some class already is, so the
  apiserver's DefaultStorageClass admission plugin (on by default in v1.20, and not disabled by
  `controlplane.py`) gives it to claims that name no class;
* for every Pending, unbound claim whose class names our provisioner it creates a hostPath PV pointing at
  the claim's directory under the agent's state dir (`volumes.claim_dir`, the directory the sandbox
  mounts for that claim) with `claimRef` set to the claim's UID; the real PV controller in
  kube-controller-manager then binds the two;
* a PV of ours that is `Released` with reclaim policy `Delete` (its claim was deleted) goes, with its
  directory.

Several agents may run against one cluster: PV names are deterministic (`pvc-<claim uid>`) and created
only if absent, so the agent that loses the race gets AlreadyExists and moves on; reclaiming is
idempotent. Limit: the PV names the directory of the agent that created it; an agent with another state
dir mounts its own directory for the claim, so data is shared only among pods of one agent's nodes.

Watches are level-based (`kubeio.ListWatch`): a failed create or delete is retried at the next relist.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from trainsmart.devcluster.agent.kubeio import ListWatch
from trainsmart.devcluster.agent.volumes import claim_dir

log = logging.getLogger(__name__)

PROVISIONER = "trainsmart.dev/local"
STORAGE_CLASS = "trainsmart-local"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PROVISIONED_BY_ANNOTATION = "pv.kubernetes.io/provisioned-by"


# ---- pure: what the provisioner decides and writes ------------------------------------------------------


def storage_class_manifest(default: bool = True) -> dict[str, Any]:
    """Our class; `default` is off when another class already is the default (v1.20's admission plugin
    rejects class-less claims outright when it finds two defaults)."""
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if default else {}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "annotations": annotations},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def is_default_class(storage_class: Mapping[str, Any]) -> bool:
    annotations = (storage_class.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true"


def pv_name(claim_uid: str) -> str:
    """Deterministic, so concurrent agents collide on the name instead of creating two volumes."""
    return f"pvc-{claim_uid}"


def awaits_volume(claim: Mapping[str, Any]) -> bool:
    """Pending, unbound, not being deleted and with a class: a candidate (the class still has to be ours)."""
    meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    phase = (claim.get("status") or {}).get("phase") or "Pending"
    return (
        phase == "Pending"
        and not spec.get("volumeName")
        and not meta.get("deletionTimestamp")
        and bool(spec.get("storageClassName"))
    )


def unsupported(claim: Mapping[str, Any]) -> str | None:
    """Why we cannot serve the claim, if we cannot: a directory is neither a block device nor selectable."""
    spec = claim.get("spec") or {}
    if (spec.get("volumeMode") or "Filesystem") != "Filesystem":
        return f"volumeMode {spec['volumeMode']} is not supported (directories only)"
    if spec.get("selector"):
        return "claims with a selector are not supported by dynamic provisioning"
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        return "the claim requests no storage"
    return None


def pv_manifest(claim: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """A PV made for `claim` and pre-bound to it by UID, so only that claim (not a namesake created later)
    can bind it. Capacity is what was asked for: nothing is enforced on a plain directory anyway."""
    meta, spec = claim["metadata"], claim["spec"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": pv_name(meta["uid"]), "annotations": {PROVISIONED_BY_ANNOTATION: PROVISIONER}},
        "spec": {
            "capacity": {"storage": spec["resources"]["requests"]["storage"]},
            "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
            "storageClassName": spec["storageClassName"],
            "persistentVolumeReclaimPolicy": "Delete",
            "volumeMode": "Filesystem",
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


def is_ours(volume: Mapping[str, Any]) -> bool:
    annotations = (volume.get("metadata") or {}).get("annotations") or {}
    return annotations.get(PROVISIONED_BY_ANNOTATION) == PROVISIONER


def reclaimable(volume: Mapping[str, Any]) -> bool:
    """Ours, its claim gone (`Released`) and meant to go with it."""
    spec, status = volume.get("spec") or {}, volume.get("status") or {}
    return (
        is_ours(volume) and status.get("phase") == "Released" and spec.get("persistentVolumeReclaimPolicy") == "Delete"
    )


def volume_directory(volume: Mapping[str, Any]) -> Path | None:
    """The directory to remove with a PV of ours, or None when its path is not the claim directory its
    claimRef implies (an edited PV must not make us delete an arbitrary tree)."""
    spec = volume.get("spec") or {}
    path, ref = (spec.get("hostPath") or {}).get("path"), spec.get("claimRef") or {}
    if not path or not ref.get("uid"):
        return None
    candidate = Path(path)
    expected = ("volumes", "claims", ref.get("namespace"), ref.get("name"), ref["uid"])
    if not candidate.is_absolute() or candidate.parts[-5:] != expected:
        return None
    return candidate


# ---- I/O --------------------------------------------------------------------------------------------------


class VolumeProvisioner:
    """Registers the class, then watches claims (to provision) and volumes (to reclaim) until `stop()`."""

    def __init__(self, api: client.ApiClient, state_dir: Path, resync_interval: float = 30.0) -> None:
        self._state_dir = state_dir
        self._core = client.CoreV1Api(api)
        self._storage = client.StorageV1Api(api)
        self._claims = ListWatch(
            "pvcs",
            self._core.list_persistent_volume_claim_for_all_namespaces,
            self._claims_listed,
            self._claim_event,
            resync_interval,
        )
        self._volumes = ListWatch(
            "pvs", self._core.list_persistent_volume, self._volumes_listed, self._volume_event, resync_interval
        )

    def start(self) -> None:
        self.ensure_storage_class()
        self._volumes.start()
        self._claims.start()

    def stop(self) -> None:
        self._claims.stop()
        self._volumes.stop()

    def ensure_storage_class(self) -> None:
        """Create our class if absent; never touch an existing one (a user's edit wins)."""
        classes = [self._api_dict(c) for c in self._storage.list_storage_class().items]
        if any(c["metadata"]["name"] == STORAGE_CLASS for c in classes):
            return
        default = not any(is_default_class(c) for c in classes)
        if not default:
            log.warning("another StorageClass is the default: %s is registered as a non-default class", STORAGE_CLASS)
        try:
            self._storage.create_storage_class(storage_class_manifest(default))
        except ApiException as exc:
            if exc.status != 409:  # 409: another agent was first
                raise

    def _class_is_ours(self, name: str) -> bool:
        try:
            return bool(self._storage.read_storage_class(name).provisioner == PROVISIONER)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise

    # One object's trouble (an API hiccup) must not stop the others in a list: log, the relist retries.

    def _claims_listed(self, claims: list[dict[str, Any]]) -> None:
        for claim in claims:
            self._claim_event("ADDED", claim)

    def _claim_event(self, kind: str, claim: dict[str, Any]) -> None:
        if kind == "DELETED" or not awaits_volume(claim):
            return
        try:
            self._provision(claim)
        except Exception:
            log.exception("provisioning for claim %s failed", claim["metadata"].get("name"))

    def _volumes_listed(self, volumes: list[dict[str, Any]]) -> None:
        for volume in volumes:
            self._volume_event("ADDED", volume)

    def _volume_event(self, kind: str, volume: dict[str, Any]) -> None:
        if kind == "DELETED" or not reclaimable(volume):
            return
        try:
            self._reclaim(volume)
        except Exception:
            log.exception("reclaiming volume %s failed", volume["metadata"].get("name"))

    def _provision(self, claim: dict[str, Any]) -> None:
        meta = claim["metadata"]
        what = f"claim {meta['namespace']}/{meta['name']}"
        path = claim_dir(self._state_dir, meta["namespace"], meta["name"], meta["uid"])
        try:
            if not self._class_is_ours(claim["spec"]["storageClassName"]):
                return
            reason = unsupported(claim)
            if reason is not None:
                log.warning("not provisioning %s: %s", what, reason)
                return
            self._core.create_persistent_volume(pv_manifest(claim, path))
        except ApiException as exc:
            if exc.status != 409:  # 409: this agent or another one already made it
                log.warning("provisioning a volume for %s failed (retried at the next relist): %s", what, exc.reason)
            return
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # as the sandbox makes claim directories: any runAsUser can write
        log.info("provisioned %s for %s at %s", pv_name(meta["uid"]), what, path)

    def _reclaim(self, volume: dict[str, Any]) -> None:
        name = volume["metadata"]["name"]
        directory = volume_directory(volume)
        if directory is None:
            log.warning("volume %s: its path is not a claim directory; deleting the PV but keeping the path", name)
        else:
            shutil.rmtree(directory, ignore_errors=True)
            for parent in (directory.parent, directory.parent.parent):  # <claim>, then <namespace>, if empty
                with contextlib.suppress(OSError):
                    parent.rmdir()
        try:
            self._core.delete_persistent_volume(name)
        except ApiException as exc:
            if exc.status != 404:  # 404: another agent was first
                log.warning("deleting released volume %s failed (retried at the next relist): %s", name, exc.reason)
                return
        log.info("reclaimed volume %s", name)

    def _api_dict(self, obj: Any) -> dict[str, Any]:
        serialised: dict[str, Any] = self._core.api_client.sanitize_for_serialization(obj)
        return serialised
