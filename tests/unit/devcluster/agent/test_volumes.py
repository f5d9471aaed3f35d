"""Volumes on disk and each container's mounts.

Pins: emptyDir is per pod (0777) and removed with the pod; a claim's directory is keyed by namespace,
claim and claim UID and outlives the pod; configMap/secret volumes write every key (or just `items`, with
modes), decode secrets and binaryData, honour `optional`; projected volumes combine sources including a
service-account token; downwardAPI writes metadata; hostPath types are checked/created; fsGroup owns
writable volumes (setgid); mounts honour subPath (created in writable volumes, never escaping) and
readOnly (always for configMap/secret).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from trainsmart.devcluster.agent.pod_runtime_contract import Mount
from trainsmart.devcluster.agent.podenv import ConfigMapData
from trainsmart.devcluster.agent.volumes import (
    PodVolumes,
    VolumeError,
    claim_dir,
    container_mounts,
    materialise_volumes,
    prune_claims,
    remove_pod_volumes,
)


class FakeSource:
    def __init__(self) -> None:
        self.cms = {"cfg": ConfigMapData(data={"a.yaml": "lr: 1", "b": "2"}, binary={"blob": b"\x00\x01"})}
        self.secrets: dict[str, Mapping[str, bytes]] = {"creds": {"token": b"s3cr3t"}}
        self.claims = {"ckpt": "claim-uid-1"}
        self.tokens: list[tuple[str, str, str | None, int]] = []

    def config_map(self, namespace: str, name: str) -> ConfigMapData | None:
        return self.cms.get(name)

    def secret(self, namespace: str, name: str) -> Mapping[str, bytes] | None:
        return self.secrets.get(name)

    def claim_uid(self, namespace: str, name: str) -> str | None:
        return self.claims.get(name)

    def service_account_token(self, namespace: str, sa: str, audience: str | None, seconds: int) -> str:
        self.tokens.append((namespace, sa, audience, seconds))
        return "jwt-token"


def pod(volumes: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "pod-uid", "labels": {"a": "b"}},
        "spec": {"volumes": volumes, "containers": [{"name": "main"}], **spec},
    }


def test_empty_dir_and_claim_lifetimes(tmp_path: Path) -> None:
    vols = materialise_volumes(
        pod([{"name": "scratch", "emptyDir": {}}, {"name": "ckpt", "persistentVolumeClaim": {"claimName": "ckpt"}}]),
        tmp_path,
        FakeSource(),
    )
    assert stat.S_IMODE(vols.paths["scratch"].stat().st_mode) == 0o777
    assert vols.paths["ckpt"] == claim_dir(tmp_path, "ns", "ckpt", "claim-uid-1")
    (vols.paths["ckpt"] / "epoch-1.pt").write_text("weights")
    remove_pod_volumes(tmp_path, "pod-uid")
    assert not vols.paths["scratch"].exists()
    assert (vols.paths["ckpt"] / "epoch-1.pt").read_text() == "weights"
    assert prune_claims(tmp_path, {("ns", "ckpt", "claim-uid-1")}) == []
    assert prune_claims(tmp_path, set()) == [vols.paths["ckpt"]]


def test_missing_claim_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(VolumeError, match='persistentvolumeclaim "nope" not found') as info:
        materialise_volumes(
            pod([{"name": "v", "persistentVolumeClaim": {"claimName": "nope"}}]), tmp_path, FakeSource()
        )
    assert info.value.reason == "ContainerCreating"


def test_config_map_and_secret_files(tmp_path: Path) -> None:
    vols = materialise_volumes(
        pod(
            [
                {"name": "all", "configMap": {"name": "cfg"}},
                {
                    "name": "some",
                    "configMap": {
                        "name": "cfg",
                        "items": [{"key": "a.yaml", "path": "conf/app.yaml", "mode": 0o600}],
                        "defaultMode": 0o640,
                    },
                },
                {"name": "sec", "secret": {"secretName": "creds", "defaultMode": 0o400}},
                {"name": "opt", "secret": {"secretName": "absent", "optional": True}},
            ]
        ),
        tmp_path,
        FakeSource(),
    )
    assert sorted(p.name for p in vols.paths["all"].iterdir()) == ["a.yaml", "b", "blob"]
    assert (vols.paths["all"] / "blob").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((vols.paths["all"] / "b").stat().st_mode) == 0o644
    app = vols.paths["some"] / "conf" / "app.yaml"
    assert app.read_text() == "lr: 1" and stat.S_IMODE(app.stat().st_mode) == 0o600
    assert not (vols.paths["some"] / "b").exists()
    token = vols.paths["sec"] / "token"
    assert token.read_bytes() == b"s3cr3t" and stat.S_IMODE(token.stat().st_mode) == 0o400
    assert list(vols.paths["opt"].iterdir()) == []
    assert vols.read_only == {"all", "some", "sec", "opt"}


@pytest.mark.parametrize(
    ("volume", "message"),
    [
        ({"configMap": {"name": "absent"}}, 'configmap "absent" not found'),
        ({"configMap": {"name": "cfg", "items": [{"key": "nokey", "path": "x"}]}}, "couldn't find key nokey"),
        ({"configMap": {"name": "cfg", "items": [{"key": "b", "path": "../escape"}]}}, "stay inside the volume"),
        ({"gitRepo": {"repository": "x"}}, "unsupported volume type"),
        (
            {"projected": {"sources": [{"configMap": {"name": "cfg"}}, {"configMap": {"name": "cfg"}}]}},
            "conflicting duplicate paths",
        ),
        ({"hostPath": {"path": "/nonexistent/dir", "type": "Directory"}}, "not a Directory"),
    ],
)
def test_volume_errors(tmp_path: Path, volume: dict[str, Any], message: str) -> None:
    with pytest.raises(VolumeError, match=message):
        materialise_volumes(pod([{"name": "v", **volume}]), tmp_path, FakeSource())


def test_projected_and_downward_api(tmp_path: Path) -> None:
    source = FakeSource()
    vols = materialise_volumes(
        pod(
            [
                {
                    "name": "proj",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token", "audience": "report", "expirationSeconds": 600}},
                            {"configMap": {"name": "cfg", "items": [{"key": "b", "path": "b.txt"}]}},
                            {"secret": {"name": "creds", "items": [{"key": "token", "path": "creds/token"}]}},
                            {
                                "downwardAPI": {
                                    "items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                                }
                            },
                        ]
                    },
                },
                {
                    "name": "down",
                    "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]},
                },
            ],
            serviceAccountName="trainer",
        ),
        tmp_path,
        source,
    )
    proj = vols.paths["proj"]
    assert sorted(p.name for p in proj.iterdir()) == ["b.txt", "creds", "ns", "token"]
    assert (proj / "creds" / "token").read_text() == "s3cr3t"
    assert (proj / "token").read_text() == "jwt-token"
    assert (proj / "b.txt").read_text() == "2"
    assert (proj / "ns").read_text() == "ns"
    assert source.tokens == [("ns", "trainer", "report", 600)]
    assert (vols.paths["down"] / "labels").read_text() == 'a="b"'


def test_host_path_or_create(tmp_path: Path) -> None:
    target = tmp_path / "made" / "here"
    vols = materialise_volumes(
        pod([{"name": "h", "hostPath": {"path": str(target), "type": "DirectoryOrCreate"}}]), tmp_path, FakeSource()
    )
    assert vols.paths["h"] == target and target.is_dir()


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's group to an arbitrary fsGroup needs root")
def test_fs_group_owns_writable_volumes(tmp_path: Path) -> None:
    vols = materialise_volumes(
        pod(
            [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o400}}],
            securityContext={"fsGroup": 4321},
        ),
        tmp_path,
        FakeSource(),
    )
    st = vols.paths["scratch"].stat()
    assert st.st_gid == 4321 and st.st_mode & stat.S_ISGID
    cfg = (vols.paths["cfg"] / "b").stat()
    assert cfg.st_gid == 4321 and stat.S_IMODE(cfg.st_mode) == 0o440


def test_container_mounts(tmp_path: Path) -> None:
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "app.yaml").write_text("x")
    vols = PodVolumes(paths={"ckpt": tmp_path / "ckpt", "cfg": tmp_path / "cfg"}, read_only=frozenset({"cfg"}))
    container = {
        "volumeMounts": [
            {"name": "ckpt", "mountPath": "/checkpoints"},
            {"name": "ckpt", "mountPath": "/per-pod", "subPathExpr": "runs/$(POD_NAME)"},
            {"name": "ckpt", "mountPath": "/ro", "readOnly": True},
            {"name": "cfg", "mountPath": "/etc/app.yaml", "subPath": "app.yaml"},
        ]
    }
    mounts = container_mounts(container, vols, {"POD_NAME": "job-0"})
    assert mounts == [
        Mount(tmp_path / "ckpt", "/checkpoints", False),
        Mount(tmp_path / "ckpt" / "runs" / "job-0", "/per-pod", False),
        Mount(tmp_path / "ckpt", "/ro", True),
        Mount(tmp_path / "cfg" / "app.yaml", "/etc/app.yaml", True),
    ]
    assert (tmp_path / "ckpt" / "runs" / "job-0").is_dir()


def test_sub_paths_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "link").symlink_to("/etc")
    vols = PodVolumes(paths={"v": tmp_path / "v"})
    for sub in ["../x", "/abs", "link"]:
        with pytest.raises(VolumeError):
            container_mounts({"volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": sub}]}, vols)
    with pytest.raises(VolumeError, match="refers to no volume"):
        container_mounts({"volumeMounts": [{"name": "other", "mountPath": "/m"}]}, vols)
    with pytest.raises(VolumeError, match="read-only volume"):
        container_mounts(
            {"volumeMounts": [{"name": "v", "mountPath": "/m", "subPath": "new"}]},
            PodVolumes(paths={"v": tmp_path / "v"}, read_only=frozenset({"v"})),
        )
