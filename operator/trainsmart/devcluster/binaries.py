"""Finding (or obtaining) the control-plane binaries: etcd, kube-apiserver, kube-scheduler,
kube-controller-manager.

Lookup order, first hit wins for each binary:
1. an explicit directory: `TRAINSMART_K8S_BIN_DIR`, then `KUBEBUILDER_ASSETS` (so an envtest setup that
   already exists is reused as is), then `PATH`;
2. the user cache, `${XDG_CACHE_HOME:-~/.cache}/trainsmart/k8s-*/bin`, newest version first;
3. a download of the official envtest archive (etcd, kube-apiserver) plus the matching kube-scheduler and
   kube-controller-manager, where the internet is reachable;
4. an offline build of v1.20.2 from Debian bookworm's `kubernetes` source package (`build_k8s_offline.sh`),
   which is the only way on machines that reach nothing but Debian's archive and PyPI.

Steps 3 and 4 write into the cache, so only the first run on a machine pays for them.
"""

from __future__ import annotations

import io
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

OFFLINE_K8S_VERSION = "v1.20.2"
ENVTEST_VERSION = "v1.30.0"
ENVTEST_URL = (
    "https://github.com/kubernetes-sigs/controller-tools/releases/download/"
    "envtest-{version}/envtest-{version}-linux-{arch}.tar.gz"
)
K8S_RELEASE_URL = "https://dl.k8s.io/release/{version}/bin/linux/{arch}/{name}"
# A cache entry counts only when it carries one of these stamps: an entry from an older recipe (the first
# offline build rejected "" in custom resources) is rebuilt, never silently reused.
STAMP_FILE = ".trainsmart-stamp"
OFFLINE_STAMP = f"offline-{OFFLINE_K8S_VERSION}-r3"
DOWNLOAD_STAMP = f"envtest-{ENVTEST_VERSION}"
REQUIRED = ("etcd", "kube-apiserver")
OPTIONAL = ("kube-scheduler", "kube-controller-manager")
BUILD_SCRIPT = Path(__file__).with_name("build_k8s_offline.sh")

Log = Callable[[str], None]


class BinariesNotFoundError(RuntimeError):
    """No usable set of control-plane binaries could be found or obtained."""


@dataclass(frozen=True)
class BinarySet:
    """Paths to the control-plane binaries. The scheduler and controller-manager are optional: a
    control plane without them still serves the API (enough for schema and RBAC tests)."""

    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path | None
    kube_controller_manager: Path | None
    source: str

    @cached_property
    def version(self) -> tuple[int, int]:
        """(major, minor) of kube-apiserver: flags differ across versions (insecure ports went in 1.24)."""
        out = subprocess.run(
            [str(self.kube_apiserver), "--version"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
        return parse_version(out)

    @property
    def complete(self) -> bool:
        return self.kube_scheduler is not None and self.kube_controller_manager is not None


def parse_version(text: str) -> tuple[int, int]:
    """Parse `Kubernetes v1.20.2` (or any `vX.Y...`) into (X, Y)."""
    match = re.search(r"v(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"no Kubernetes version in {text!r}")
    return int(match.group(1)), int(match.group(2))


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trainsmart"


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _stamp(directory: Path) -> str:
    try:
        return (directory / STAMP_FILE).read_text().strip()
    except OSError:
        return ""


def _cached_bin_dirs() -> list[Path]:
    """Cache directories holding binaries from a current recipe, newest Kubernetes version first."""

    def key(path: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)

    root = cache_root()
    if not root.is_dir():
        return []
    current = {OFFLINE_STAMP, DOWNLOAD_STAMP}
    dirs = (d / "bin" for d in root.glob("k8s-*") if _stamp(d / "bin") in current)
    return sorted(dirs, key=key, reverse=True)


def candidate_dirs(env: dict[str, str] | None = None) -> list[tuple[str, Path]]:
    """Directories to search, labelled with where they came from, in lookup order (steps 1 and 2)."""
    env = dict(os.environ) if env is None else env
    dirs: list[tuple[str, Path]] = []
    for var in ("TRAINSMART_K8S_BIN_DIR", "KUBEBUILDER_ASSETS"):
        if env.get(var):
            dirs.append((var, Path(env[var])))
    dirs.extend(("PATH", Path(p)) for p in env.get("PATH", "").split(os.pathsep) if p)
    dirs.extend(("cache", d) for d in _cached_bin_dirs())
    return dirs


def _first(name: str, dirs: Iterable[tuple[str, Path]]) -> tuple[str, Path] | None:
    for label, d in dirs:
        if _executable(d / name):
            return label, d / name
    return None


def find_binaries(env: dict[str, str] | None = None) -> BinarySet | None:
    """Look for the binaries without side effects (steps 1 and 2). None if etcd or the apiserver is
    missing. The optional binaries are preferred from the apiserver's own directory so versions match."""
    dirs = candidate_dirs(env)
    apiserver = _first("kube-apiserver", dirs)
    etcd = _first("etcd", dirs)
    if apiserver is None or etcd is None:
        return None
    own_dir = [(apiserver[0], apiserver[1].parent)]
    optional = {name: _first(name, own_dir + dirs) for name in OPTIONAL}
    sched, cm = optional["kube-scheduler"], optional["kube-controller-manager"]
    return BinarySet(
        etcd=etcd[1],
        kube_apiserver=apiserver[1],
        kube_scheduler=sched[1] if sched else None,
        kube_controller_manager=cm[1] if cm else None,
        source=apiserver[0],
    )


def _install(data: bytes, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.replace(dest)


def _fetch(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - fixed https URLs
        data: bytes = response.read()
        return data


def download_envtest(dest: Path, log: Log, timeout: float = 15.0) -> bool:
    """Step 3: the official envtest archive plus scheduler and controller-manager of the same version.
    Returns False (after logging why) when the internet is not reachable; nothing is left half-written."""
    arch = _arch()
    url = ENVTEST_URL.format(version=ENVTEST_VERSION, arch=arch)
    log(f"downloading envtest {ENVTEST_VERSION} from {url}")
    try:
        archive = _fetch(url, timeout)
        extra = {
            name: _fetch(K8S_RELEASE_URL.format(version=ENVTEST_VERSION, arch=arch, name=name), timeout)
            for name in OPTIONAL
        }
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        log(f"download not possible ({exc}); falling back to the offline build")
        return False
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if member.isfile() and name in REQUIRED:
                handle = tar.extractfile(member)
                if handle is not None:
                    _install(handle.read(), dest / name)
    for name, data in extra.items():
        _install(data, dest / name)
    if not all(_executable(dest / n) for n in REQUIRED + OPTIONAL):
        return False
    (dest / STAMP_FILE).write_text(DOWNLOAD_STAMP + "\n")
    return True


def build_offline(dest: Path, log: Log) -> None:
    """Step 4: run the offline build script, streaming its progress lines to `log`."""
    if shutil.which("bash") is None:
        raise BinariesNotFoundError("the offline build needs bash")
    log(f"building Kubernetes {OFFLINE_K8S_VERSION} from Debian's source package into {dest} (~5 min)")
    with tempfile.TemporaryDirectory(prefix="trainsmart-build-log-") as tmp:
        proc = subprocess.Popen(
            ["bash", str(BUILD_SCRIPT), str(dest), OFFLINE_STAMP],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp,
        )
        assert proc.stdout is not None
        tail: list[str] = []
        for line in proc.stdout:
            line = line.rstrip()
            tail = [*tail, line][-30:]
            if line.startswith("[k8s-offline"):
                log(line)
        if proc.wait() != 0:
            raise BinariesNotFoundError("offline build failed:\n" + "\n".join(tail))


def ensure_binaries(log: Log = print, *, allow_download: bool | None = None) -> BinarySet:
    """Steps 1-4: return a complete set, downloading or building into the cache when needed.

    `allow_download` defaults to true unless `TRAINSMART_K8S_OFFLINE=1`.
    """
    found = find_binaries()
    if found is not None and found.complete:
        return found
    if allow_download is None:
        allow_download = os.environ.get("TRAINSMART_K8S_OFFLINE", "") not in ("1", "true", "yes")
    if allow_download:
        dest = cache_root() / f"k8s-{ENVTEST_VERSION}" / "bin"
        if download_envtest(dest, log):
            found = find_binaries()
            if found is not None and found.complete:
                return found
    build_offline(cache_root() / f"k8s-{OFFLINE_K8S_VERSION}" / "bin", log)
    found = find_binaries()
    if found is None or not found.complete:
        raise BinariesNotFoundError("the offline build finished but the binaries are still missing")
    return found
