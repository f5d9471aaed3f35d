"""The node agent's volume provisioner, its pure half: which claims it serves, the PV it writes for one,
which PVs it reclaims and which directory it may remove. The watches and API calls are covered by
tests/e2e/test_agent_provisioner.py.

Pins:
- our StorageClass: provisioner `trainsmart.dev/local`, Immediate, Delete, default unless told otherwise;
- only Pending, unbound, not-deleting claims with a class await a volume; Block mode, selectors and a
  missing size are refused with a reason;
- the PV: named `pvc-<claim uid>`, pre-bound by UID, capacity and access modes as requested, the claim's
  class, reclaim Delete, our provisioned-by annotation, hostPath at `volumes.claim_dir` (the directory
  the sandbox mounts for that claim);
- only our Released PVs with policy Delete are reclaimed, and only a path shaped like the claim directory
  of its claimRef is ever removed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from trainsmart.devcluster.agent.provisioner import (
    PROVISIONER,
    STORAGE_CLASS,
    awaits_volume,
    is_default_class,
    pv_manifest,
    pv_name,
    reclaimable,
    storage_class_manifest,
    unsupported,
    volume_directory,
)
from trainsmart.devcluster.agent.volumes import claim_dir

STATE = Path("/var/lib/agent")


def claim(**spec: Any) -> dict[str, Any]:
    base = {
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": "5Gi"}},
        "storageClassName": STORAGE_CLASS,
    }
    return {
        "metadata": {"name": "job-checkpoints", "namespace": "team", "uid": "1234-abcd"},
        "spec": {**base, **spec},
        "status": {"phase": "Pending"},
    }


def test_storage_class() -> None:
    sc = storage_class_manifest()
    assert (sc["provisioner"], sc["reclaimPolicy"], sc["volumeBindingMode"]) == (PROVISIONER, "Delete", "Immediate")
    assert sc["metadata"]["name"] == "trainsmart-local"
    assert is_default_class(sc)
    assert not is_default_class(storage_class_manifest(default=False))


def test_which_claims_await_a_volume() -> None:
    assert awaits_volume(claim())
    assert awaits_volume({**claim(), "status": {}})  # just created: no phase yet
    assert not awaits_volume(claim(volumeName="pvc-other"))
    assert not awaits_volume({**claim(), "status": {"phase": "Bound"}})
    assert not awaits_volume(claim(storageClassName=""))  # explicitly no class: static binding only
    assert not awaits_volume(claim(storageClassName=None))
    deleting = claim()
    deleting["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    assert not awaits_volume(deleting)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"volumeMode": "Block"}, "volumeMode Block"),
        ({"selector": {"matchLabels": {"a": "b"}}}, "selector"),
        ({"resources": {}}, "no storage"),
    ],
)
def test_unsupported_claims_say_why(spec: dict[str, Any], reason: str) -> None:
    assert reason in (unsupported(claim(**spec)) or "")


def test_pv_for_a_claim() -> None:
    c = claim()
    assert unsupported(c) is None
    path = claim_dir(STATE, "team", "job-checkpoints", "1234-abcd")
    pv = pv_manifest(c, path)
    assert pv["metadata"] == {
        "name": "pvc-1234-abcd",
        "annotations": {"pv.kubernetes.io/provisioned-by": "trainsmart.dev/local"},
    }
    assert pv["metadata"]["name"] == pv_name("1234-abcd")
    spec = pv["spec"]
    assert spec["capacity"] == {"storage": "5Gi"}
    assert spec["accessModes"] == ["ReadWriteMany"]
    assert spec["storageClassName"] == STORAGE_CLASS
    assert spec["persistentVolumeReclaimPolicy"] == "Delete"
    assert spec["hostPath"]["path"] == str(path) == "/var/lib/agent/volumes/claims/team/job-checkpoints/1234-abcd"
    ref = spec["claimRef"]
    assert (ref["kind"], ref["namespace"], ref["name"], ref["uid"]) == (
        "PersistentVolumeClaim",
        "team",
        "job-checkpoints",
        "1234-abcd",
    )
    assert volume_directory(pv) == path


def released(pv: dict[str, Any], phase: str = "Released") -> dict[str, Any]:
    return {**pv, "status": {"phase": phase}}


def test_which_volumes_are_reclaimed() -> None:
    pv = pv_manifest(claim(), claim_dir(STATE, "team", "job-checkpoints", "1234-abcd"))
    assert reclaimable(released(pv))
    assert not reclaimable(released(pv, "Bound"))
    retained = released(pv)
    retained["spec"] = {**pv["spec"], "persistentVolumeReclaimPolicy": "Retain"}
    assert not reclaimable(retained)
    foreign = released(pv)
    foreign["metadata"] = {"name": "pvc-1234-abcd", "annotations": {"pv.kubernetes.io/provisioned-by": "other"}}
    assert not reclaimable(foreign)


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/home/user",
        "/var/lib/agent/volumes/claims/team/job-checkpoints/other-uid",
        "/var/lib/agent/volumes/claims/other-ns/job-checkpoints/1234-abcd",
        "relative/volumes/claims/team/job-checkpoints/1234-abcd/..",
    ],
)
def test_only_the_claims_own_directory_is_ever_removed(path: str) -> None:
    pv = pv_manifest(claim(), Path(path))
    assert volume_directory(pv) is None
