"""A container's filesystem view: the plan (pure) and the shell script that builds it in a new mount namespace.

How a container sees the host, and why:

* Its root `/` is a small tmpfs holding a recursive bind of every top-level host directory (and the
  top-level symlinks copied as symlinks). Everything that exists on the host is visible and writable
  through, exactly as on the host; the only thing that is the container's own is the root directory
  itself. That is what lets a mount point such as `/checkpoints` be created for the container without
  creating anything on the host: it is made in the container's tmpfs root.
* A missing mount point deeper down (e.g. `/run/secrets/...` or `/etc/trainsmart/...`) needs a writable
  directory at its deepest existing ancestor A. There the plan stacks an overlay (lower: the host's A,
  upper: a per-container tmpfs), so the new directories live only in the container. Limits of that
  choice: inside A (only A, not its siblings) the container's own writes land in the overlay and are not
  seen on the host, and mounts below A are bound back in explicitly (so they stay visible).
* Volumes are bind mounts at their container paths, ordered parent-first; a mount point nested inside an
  earlier volume is created inside that volume's directory on the host, as container runtimes do.
* The pod's hosts file is bind-mounted over `/etc/hosts`; it is rewritten in place, never replaced.
* The copies of the agent's namespace pins are detached, so a container never keeps another pod's
  namespaces alive; then the root is switched with `pivot_root . .` and the host's old root tree is
  detached. Everything happens in a private mount namespace, so nothing propagates back to the host.

Container paths are resolved against the host (`realpath` of the existing part) before any directory is
created, so an absolute symlink such as `/var/run -> /run` can never lead a `mkdir` onto the host.
The whole setup is one `sh -c` with two or three `mount -a -T <fstab>` runs rather than one `mount` per
entry: about eight short processes per container, 20-30 ms on two cores.

Limits: the container sees the host's files (there are no images), so what a process writes outside its
volumes lands on the host, as with hostPath; host mounts made after a container started are not seen
by it; the root mirror is a snapshot of the host's top-level entries at container start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import posixpath
import shlex
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trainsmart.devcluster.agent.pod_runtime_contract import Mount

Kind = Literal["dir", "file", "missing"]

SCRATCH = "/.ts-scratch"


class MountPlanError(ValueError):
    """A mount that cannot be honoured (bad path, file over directory, ...); the message says which."""


@dataclass(frozen=True)
class HostEntry:
    """One entry of the host's `/` as the root mirror needs it."""

    name: str
    kind: Literal["dir", "file", "symlink"]


@dataclass(frozen=True)
class FsView:
    """What the planner may ask about the host filesystem; injectable so the planner stays pure."""

    root_entries: Callable[[], list[HostEntry]]
    kind: Callable[[str], Kind]
    realpath: Callable[[str], str]
    mount_points: Callable[[], list[str]]


@dataclass
class SetupPlan:
    """Everything the setup script does, as data (asserted on by unit tests)."""

    root: str
    fstab_base: list[str] = field(default_factory=list)
    top_files: list[str] = field(default_factory=list)
    symlinks: list[str] = field(default_factory=list)
    scratch_dirs: list[str] = field(default_factory=list)
    fstab_mirror: list[str] = field(default_factory=list)
    make_dirs: list[str] = field(default_factory=list)
    make_files: list[str] = field(default_factory=list)
    host_dirs: list[Path] = field(default_factory=list)
    host_files: list[Path] = field(default_factory=list)
    fstab_volumes: list[str] = field(default_factory=list)
    detach: list[str] = field(default_factory=list)
    overlays: list[str] = field(default_factory=list)


def fstab_escape(path: str) -> str:
    """Escape a path for an fstab field (libmount decodes octal escapes)."""
    out = path.replace("\\", "\\134")
    return out.replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def fstab_line(source: str, target: str, fstype: str, options: str) -> str:
    return f"{fstab_escape(source)} {fstab_escape(target)} {fstype} {options} 0 0"


def normalize_container_path(path: str) -> str:
    """Absolute, normalized, not `/` itself."""
    if not path.startswith("/"):
        raise MountPlanError(f"mount path {path!r} is not absolute")
    norm = posixpath.normpath(path)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    if norm == "/" or "\0" in norm:
        raise MountPlanError(f"cannot mount over {path!r}")
    return norm


@functools.cache
def runtime_paths() -> tuple[str, ...]:
    """Host directories every container the agent runs needs at their own paths, whatever its volumes:
    images are not used, so `python` in a pod command is the agent's own environment (`sys.prefix`), and
    an editable install imports from the source roots, which may lie elsewhere (the client's too: pods of
    your own code import `trainsmart_client`). Nested ones are dropped."""
    import trainsmart
    import trainsmart_client
    import trainsmart_trainer

    found = {
        os.path.realpath(sys.prefix),
        *(
            str(Path(file).resolve().parents[1])
            for file in (trainsmart.__file__, trainsmart_trainer.__file__, trainsmart_client.__file__)
        ),
    }
    return tuple(sorted(p for p in found if not any(q != p and is_under(p, q) for q in found)))


def is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _deepest_existing(path: str, fs: FsView) -> str:
    cur = path
    while cur != "/" and fs.kind(cur) == "missing":
        cur = posixpath.dirname(cur)
    return cur


def plan_setup(
    root: str,
    mounts: Sequence[Mount],
    hide: Iterable[str],
    fs: FsView,
    ensure_dirs: Sequence[str] = (),
    keep_visible: Sequence[str] = (),
) -> SetupPlan:
    """Plan a container root at `root` (an empty host directory) with `mounts` at their container paths.

    `hide` are host mount points whose copies must not stay visible (namespace pins); `ensure_dirs`
    are container directories that must exist (the working directory), created like mount points.
    `keep_visible` are host directories the container's command itself needs at their own paths (the
    agent's Python environment and sources, see `runtime_paths`): one that a volume covers (a checkout
    under /tmp, and a pod with an emptyDir at /tmp) is bound back read-only on top of that volume.
    """
    plan = SetupPlan(root=root)
    plan.fstab_base.append(fstab_line("tsroot", root, "tmpfs", "mode=755,unbindable"))
    for entry in fs.root_entries():
        host = "/" + entry.name
        if entry.kind == "symlink":
            plan.symlinks.append(host)
            continue
        if entry.kind == "file":
            plan.top_files.append(root + host)
            plan.fstab_mirror.append(fstab_line(host, root + host, "none", "rbind"))
        else:  # the root is a fresh tmpfs: nothing on the way can be a symlink
            plan.fstab_mirror.append(fstab_line(host, root + host, "none", "rbind,X-mount.mkdir"))

    ordered = sorted(((normalize_container_path(m.container_path), m) for m in mounts), key=lambda pm: pm[0].count("/"))
    placed: list[tuple[str, Mount]] = []
    anchors: list[str] = []
    for cpath, mount in ordered:
        source_kind: Kind = "dir" if mount.host_path.is_dir() else "file"
        target, missing = _mount_point(plan, cpath, source_kind, placed, anchors, fs)
        opts = "rbind,ro" if mount.read_only else "rbind"
        if missing and source_kind == "dir":
            opts += ",X-mount.mkdir"  # libmount creates it; safe, the target holds no symlinks
        plan.fstab_volumes.append(fstab_line(str(mount.host_path), target, "none", opts))
        placed.append((cpath, mount))
    for keep in keep_visible:
        keep = posixpath.normpath(keep)
        if any(is_under(keep, cpath) for cpath, _ in placed):
            plan.fstab_volumes.append(fstab_line(keep, root + keep, "none", "rbind,ro,X-mount.mkdir"))
    for wanted in ensure_dirs:
        if posixpath.normpath(wanted) != "/":
            target, missing = _mount_point(plan, normalize_container_path(wanted), "dir", placed, anchors, fs)
            if missing:
                plan.make_dirs.append(target)

    _plan_overlays(plan, anchors, set(hide), fs)
    mount_points = fs.mount_points()
    # Under an overlay the copies are already out of sight (and not mount points there).
    plan.detach = [
        root + h for h in sorted(set(hide)) if h in mount_points and not any(is_under(h, a) for a in plan.overlays)
    ]
    plan.make_dirs = sorted(set(plan.make_dirs) - {root})
    return plan


def _mount_point(
    plan: SetupPlan,
    cpath: str,
    source_kind: Kind,
    placed: list[tuple[str, Mount]],
    anchors: list[str],
    fs: FsView,
) -> tuple[str, bool]:
    """Where container path `cpath` is under the root, and whether a directory must be created there.

    Missing files get their placeholder (and parent directories) planned here; a missing directory is
    left to the caller (libmount's X-mount.mkdir for mount points, mkdir for the working directory).
    """
    root = plan.root
    parent_vol = next((pm for pm in reversed(placed) if is_under(cpath, pm[0]) and cpath != pm[0]), None)
    if parent_vol is not None:
        # Nested inside an earlier volume: the mount point lives in that volume's host directory.
        host_point = parent_vol[1].host_path / posixpath.relpath(cpath, parent_vol[0])
        if not host_point.exists():
            (plan.host_dirs if source_kind == "dir" else plan.host_files).append(host_point)
        return root + cpath, False
    real = fs.realpath(cpath)
    kind = fs.kind(real)
    if kind == "missing":
        anchor = _deepest_existing(real, fs)
        if anchor != "/" and anchor not in anchors:
            anchors.append(anchor)
        if source_kind == "file":
            plan.make_dirs.append(root + posixpath.dirname(real))
            plan.make_files.append(root + real)
        return root + real, source_kind == "dir"
    if kind != source_kind:
        raise MountPlanError(f"cannot mount a {source_kind} at {cpath}: it is a {kind} in the container")
    return root + real, False


def _plan_overlays(plan: SetupPlan, anchors: list[str], hide: set[str], fs: FsView) -> None:
    """An overlay per topmost anchor, plus re-binds of the host mounts it would otherwise hide."""
    topmost = [a for a in anchors if not any(b != a and is_under(a, b) for b in anchors)]
    if not topmost:
        return
    root = plan.root
    plan.fstab_base.append(fstab_line("tsscratch", root + SCRATCH, "tmpfs", "mode=700,X-mount.mkdir"))
    mount_points = fs.mount_points()
    for i, anchor in enumerate(sorted(topmost)):
        if any(ch in anchor for ch in ",:="):
            raise MountPlanError(f"cannot create a mount point under {anchor!r} (',', ':' or '=' in path)")
        upper, work = f"{root}{SCRATCH}/u{i}", f"{root}{SCRATCH}/w{i}"
        plan.scratch_dirs += [upper, work]
        plan.overlays.append(anchor)
        opts = f"lowerdir={anchor},upperdir={upper},workdir={work}"
        plan.fstab_mirror.append(fstab_line("tsoverlay", root + anchor, "overlay", opts))
        below = [m for m in mount_points if m != anchor and is_under(m, anchor) and m not in hide]
        for sub in sorted(m for m in below if not any(o != m and is_under(m, o) for o in below)):
            plan.fstab_mirror.append(fstab_line(sub, root + sub, "none", "rbind"))


@dataclass(frozen=True)
class Tools:
    """Absolute paths of the helper binaries (resolved once, so the pod's PATH never matters)."""

    mount: str = "/usr/bin/mount"
    umount: str = "/usr/bin/umount"
    mkdir: str = "/usr/bin/mkdir"
    cp: str = "/usr/bin/cp"
    pivot_root: str = "/usr/sbin/pivot_root"
    rmdir: str = "/usr/bin/rmdir"
    ip: str = "/usr/sbin/ip"
    unshare: str = "/usr/bin/unshare"
    nsenter: str = "/usr/bin/nsenter"
    setpriv: str = "/usr/bin/setpriv"
    hostname: str = "/usr/bin/hostname"
    sh: str = "/bin/sh"

    @classmethod
    def find(cls) -> Tools:
        """Resolve every tool on a fixed system PATH; FileNotFoundError names the first one missing."""
        found = {}
        for name in cls.__dataclass_fields__:
            path = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
            if path is None:
                raise FileNotFoundError(f"{name} not found (the sandbox needs util-linux, iproute2, coreutils)")
            found[name] = path
        return cls(**found)


def render_script(plan: SetupPlan, fstab_dir: Path, tools: Tools) -> tuple[str, dict[str, str]]:
    """The `sh -c` text and the fstab files it reads (name -> content), written by the caller.

    Order matters: the root mirror first, then the namespace-pin copies are detached, and only then are
    the volumes mounted. A volume may sit over the agent's own state dir (an emptyDir at `/tmp` while the
    agent keeps its pins under `/tmp`); detached after the volumes, those copies would be out of reach and
    the start would fail. Placeholders that volumes need (a missing file target, a missing working
    directory) are made between the two. `pivot_root . .` then `umount -l .` switches the root without a
    put-old directory. Every step is one short process: about eight in all.
    """
    q = shlex.quote
    root = plan.root
    between = [f": > {q(f)}" for f in plan.make_files]
    if plan.make_dirs:
        between.insert(0, f"{tools.mkdir} -p {' '.join(q(d) for d in plan.make_dirs)}")
    files = {"fstab.base": "\n".join(plan.fstab_base) + "\n", "fstab.mirror": "\n".join(plan.fstab_mirror) + "\n"}
    if plan.fstab_volumes:
        files["fstab.volumes"] = "\n".join(plan.fstab_volumes) + "\n"
    lines = ["set -e", f"{tools.mount} -a -T {q(str(fstab_dir / 'fstab.base'))}"]
    if plan.scratch_dirs:
        lines.append(f"{tools.mkdir} {' '.join(q(d) for d in plan.scratch_dirs)}")
    lines += [f": > {q(f)}" for f in plan.top_files]
    if plan.symlinks:
        lines.append(f"{tools.cp} -d {' '.join(q(s) for s in plan.symlinks)} {q(root + '/')}")
    lines.append(f"{tools.mount} -a -T {q(str(fstab_dir / 'fstab.mirror'))}")
    if plan.detach:
        lines.append(f"{tools.umount} -l {' '.join(q(d) for d in plan.detach)}")
    lines += between
    if plan.fstab_volumes:
        lines.append(f"{tools.mount} -a -T {q(str(fstab_dir / 'fstab.volumes'))}")
    lines += [f"cd {q(root)}", f"{tools.pivot_root} . .", f"{tools.umount} -l .", "cd /"]
    if plan.scratch_dirs:
        lines += [f"{tools.umount} -l {SCRATCH}", f"{tools.rmdir} {SCRATCH}"]
    return "\n".join(lines) + "\n", files


# ---- reading the host (I/O) -------------------------------------------------------------------------


def parse_mountinfo(text: str) -> list[str]:
    """Mount points from /proc/<pid>/mountinfo text (octal escapes decoded), in table order."""
    points = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) > 4:
            points.append(_unescape_octal(fields[4]))
    return points


def _unescape_octal(s: str) -> str:
    if "\\" not in s:
        return s  # the common case, and the table has a few lines per running pod (its namespace pins)
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 4 <= len(s) and s[i + 1 : i + 4].isdigit():
            out.append(chr(int(s[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def host_fs_view() -> FsView:
    """The real host, as seen by the agent process."""

    def root_entries() -> list[HostEntry]:
        entries = []
        with os.scandir("/") as it:
            for e in it:
                if e.is_symlink():
                    entries.append(HostEntry(e.name, "symlink"))
                elif e.is_dir(follow_symlinks=False):
                    entries.append(HostEntry(e.name, "dir"))
                elif e.is_file(follow_symlinks=False):
                    entries.append(HostEntry(e.name, "file"))
        return sorted(entries, key=lambda x: x.name)

    def kind(path: str) -> Kind:
        if os.path.isdir(path):
            return "dir"
        return "file" if os.path.lexists(path) else "missing"

    def mount_points() -> list[str]:
        return parse_mountinfo(Path("/proc/self/mountinfo").read_text())

    return FsView(root_entries=root_entries, kind=kind, realpath=os.path.realpath, mount_points=mount_points)


# ---- host-side mount syscalls (no process per call) ----------------------------------------------------

MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def sys_mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    rc = _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def sys_umount(target: str, *, lazy: bool = True) -> bool:
    """Unmount; False when `target` was not a mount point (or is gone), so callers can be idempotent."""
    rc = _libc.umount2(target.encode(), MNT_DETACH if lazy else 0)
    if rc != 0:
        err = ctypes.get_errno()
        if err in (22, 2):  # EINVAL: not a mount point; ENOENT: no such path
            return False
        raise OSError(err, f"umount {target}: {os.strerror(err)}")
    return True


def make_private_mount(directory: Path) -> bool:
    """Bind `directory` onto itself and make it private, so namespace files can be pinned inside.

    Returns whether a mount was added (False when it already was a private mount point of ours).
    """
    if str(directory) in parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        sys_mount("none", str(directory), None, MS_PRIVATE)
        return False
    sys_mount(str(directory), str(directory), None, MS_BIND)
    sys_mount("none", str(directory), None, MS_PRIVATE)
    return True
