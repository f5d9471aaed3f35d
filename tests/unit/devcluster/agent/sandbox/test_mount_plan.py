"""The container filesystem plan (pure, against a fake host) and its script.

Pins: the root mirrors every top-level host entry (dirs and files bound, symlinks copied); a missing
top-level mount point is created in the container's tmpfs root only; a missing deeper one gets an
overlay at its deepest existing ancestor (topmost only) with that ancestor's submounts bound back, except
hidden pin dirs; paths resolve through host symlinks first (`/var/run` -> `/run`); a mount point nested
in an earlier volume is created in that volume's host directory; kind mismatches and relative paths are
errors; namespace-pin copies are detached; fstab fields are escaped; mountinfo escapes are decoded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trainsmart.devcluster.agent.pod_runtime_contract import Mount
from trainsmart.devcluster.agent.sandbox import mount_plan as sm

DIRS = {"/", "/etc", "/run", "/run/user", "/run/user/0", "/tmp", "/state", "/state/ns", "/usr", "/var", "/opt"}
FILES = {"/etc/hosts", "/.dockerenv"}
LINKS = {"/var/run": "/run", "/bin": "/usr/bin"}
MOUNTS = ["/", "/proc", "/run/user/0", "/state/ns", "/tmp"]


def _real(path: str) -> str:
    for link, target in LINKS.items():
        if path == link or path.startswith(link + "/"):
            return target + path[len(link) :]
    return path


FAKE = sm.FsView(
    root_entries=lambda: [
        sm.HostEntry("bin", "symlink"),
        sm.HostEntry(".dockerenv", "file"),
        sm.HostEntry("etc", "dir"),
        sm.HostEntry("run", "dir"),
        sm.HostEntry("usr", "dir"),
    ],
    kind=lambda p: "dir" if p in DIRS else "file" if p in FILES else "missing",
    realpath=_real,
    mount_points=lambda: MOUNTS,
)
R = "/st/root"


def plan(mounts: list[Mount], **kw: object) -> sm.SetupPlan:
    return sm.plan_setup(R, mounts, ["/state/ns"], FAKE, **kw)  # type: ignore[arg-type]


@pytest.fixture
def vol(tmp_path: Path) -> Path:
    (tmp_path / "vol").mkdir()
    return tmp_path / "vol"


def test_root_mirrors_the_host(vol: Path) -> None:
    p = plan([])
    assert p.fstab_base == ["tsroot /st/root tmpfs mode=755,unbindable 0 0"]
    assert p.symlinks == ["/bin"]
    assert p.top_files == ["/st/root/.dockerenv"]
    assert "/etc /st/root/etc none rbind,X-mount.mkdir 0 0" in p.fstab_mirror
    assert "/.dockerenv /st/root/.dockerenv none rbind 0 0" in p.fstab_mirror
    assert p.detach == ["/st/root/state/ns"]
    assert p.overlays == [] and p.make_dirs == []


def test_missing_top_level_point_is_made_in_the_tmpfs_root_only(vol: Path) -> None:
    p = plan([Mount(vol, "/checkpoints", read_only=True)])
    assert p.make_dirs == []  # libmount makes it, in the tmpfs root
    assert p.overlays == []
    assert p.fstab_volumes == [f"{vol} /st/root/checkpoints none rbind,ro,X-mount.mkdir 0 0"]


def test_missing_deep_point_gets_an_overlay_through_symlinks(vol: Path) -> None:
    p = plan([Mount(vol, "/var/run/secrets/kubernetes.io/serviceaccount")])
    assert p.overlays == ["/run"]
    target = "/st/root/run/secrets/kubernetes.io/serviceaccount"
    assert p.fstab_volumes == [f"{vol} {target} none rbind,X-mount.mkdir 0 0"]
    overlay = next(line for line in p.fstab_mirror if line.startswith("tsoverlay"))
    assert overlay.startswith("tsoverlay /st/root/run overlay lowerdir=/run,upperdir=/st/root/.ts-scratch/u0,")
    # the host mount below /run is bound back above the overlay
    assert "/run/user/0 /st/root/run/user/0 none rbind 0 0" in p.fstab_mirror
    assert any(line.startswith("tsscratch /st/root/.ts-scratch tmpfs") for line in p.fstab_base)


def test_only_topmost_overlays(vol: Path) -> None:
    p = plan([Mount(vol, "/opt/a/b"), Mount(vol, "/opt/c")])
    assert p.overlays == ["/opt"]


def test_nested_volume_points_are_made_inside_the_outer_volume(vol: Path, tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    p = plan([Mount(inner, "/data/config"), Mount(vol, "/data")])
    assert p.host_dirs == [vol / "config"]
    assert p.fstab_volumes == [
        f"{vol} /st/root/data none rbind,X-mount.mkdir 0 0",
        f"{inner} /st/root/data/config none rbind 0 0",
    ]


def test_file_mounts_get_file_points(tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text("x")
    p = plan([Mount(f, "/etc/trainsmart/app.yaml"), Mount(f, "/etc/hosts")])
    assert p.make_files == ["/st/root/etc/trainsmart/app.yaml"]
    assert "/st/root/etc/trainsmart" in p.make_dirs
    assert p.overlays == ["/etc"]


def test_kind_mismatch_and_bad_paths(vol: Path) -> None:
    with pytest.raises(sm.MountPlanError, match="it is a file"):
        plan([Mount(vol, "/etc/hosts")])
    with pytest.raises(sm.MountPlanError, match="not absolute"):
        plan([Mount(vol, "data")])
    with pytest.raises(sm.MountPlanError, match="cannot mount over"):
        plan([Mount(vol, "/../")])


def test_working_dir_is_ensured_like_a_mount_point() -> None:
    assert plan([], ensure_dirs=["/workspace/run", "/"]).make_dirs == ["/st/root/workspace/run"]


def test_script_detaches_pins_before_mounting_volumes(vol: Path, tmp_path: Path) -> None:
    """A volume may cover the agent's state dir (an emptyDir at /tmp); the pins must be gone first."""
    script, files = sm.render_script(plan([Mount(vol, "/var/run/secrets/x")]), tmp_path, sm.Tools())
    assert set(files) == {"fstab.base", "fstab.mirror", "fstab.volumes"}
    assert f"{vol} /st/root/run/secrets/x" in files["fstab.volumes"]
    assert f"{vol} " not in files["fstab.mirror"]
    order = [script.index(s) for s in ("fstab.base", "fstab.mirror", "umount -l /st/root/state/ns", "fstab.volumes")]
    assert order == sorted(order)
    assert script.index("fstab.volumes") < script.index("pivot_root . .")
    assert script.rstrip().endswith("/usr/bin/rmdir /.ts-scratch")
    assert script.count("\n") <= 15


def test_runtime_paths_covered_by_a_volume_are_bound_back_on_top_of_it(tmp_path: Path) -> None:
    """A checkout under /tmp and a pod with an emptyDir at /tmp: the venv must stay visible."""
    scratch = tmp_path / "emptydir"
    scratch.mkdir()
    p = plan([Mount(scratch, "/tmp")], keep_visible=["/tmp/ci/main/.venv", "/work/main/operator"])
    volumes = p.fstab_volumes
    assert volumes[0].startswith(f"{scratch} /st/root/tmp ")
    assert volumes[1] == "/tmp/ci/main/.venv /st/root/tmp/ci/main/.venv none rbind,ro,X-mount.mkdir 0 0"
    assert len(volumes) == 2  # /work/main/operator is not under any volume: the mirror already shows it


def test_runtime_paths_are_the_environment_and_the_source_roots() -> None:
    paths = sm.runtime_paths()
    assert paths
    assert any(Path(sys.prefix).resolve() == Path(p) or str(Path(sys.prefix).resolve()).startswith(p) for p in paths)
    assert all(Path(p).is_absolute() for p in paths)
    # Every package a pod's Python may import from the agent's environment, the client's source root too
    # (an editable install imports from there; a checkout under a pod's /tmp would otherwise hide it).
    import trainsmart_client
    import trainsmart_trainer

    for package in (trainsmart_trainer, trainsmart_client):
        root = str(Path(package.__file__).resolve().parents[1])
        assert any(root == p or root.startswith(p.rstrip("/") + "/") for p in paths), (package, paths)


def test_script_makes_placeholders_between_mirror_and_volumes(tmp_path: Path) -> None:
    f = tmp_path / "app.yaml"
    f.write_text("x")
    script, files = sm.render_script(plan([Mount(f, "/srv/app.yaml")], ensure_dirs=["/w"]), tmp_path, sm.Tools())
    assert set(files) == {"fstab.base", "fstab.mirror", "fstab.volumes"}
    assert script.index("fstab.mirror") < script.index("mkdir -p /st/root/srv /st/root/w")
    assert script.index(": > /st/root/srv/app.yaml") < script.index("fstab.volumes")


def test_fstab_escaping_and_mountinfo_parsing() -> None:
    assert sm.fstab_line("/a b", "/c\\d", "none", "bind") == "/a\\040b /c\\134d none bind 0 0"
    info = "36 35 98:0 / /mnt/with\\040space rw - ext3 /dev/root rw\n37 36 98:0 / /x rw - ext3 /dev/root rw\n"
    assert sm.parse_mountinfo(info) == ["/mnt/with space", "/x"]
