"""Where the control-plane binaries come from.

Pins the lookup order of the foundation issue: an explicit directory (TRAINSMART_K8S_BIN_DIR, then
KUBEBUILDER_ASSETS) or PATH, then the user cache; optional binaries preferred from the apiserver's own
directory; a download that cannot reach the internet falls back instead of failing.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest

from trainsmart.devcluster import binaries
from trainsmart.devcluster.binaries import find_binaries, parse_version


def _fake_bins(directory: Path, *names: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = directory / name
        path.write_text("#!/bin/sh\necho Kubernetes v1.29.3\n")
        path.chmod(0o755)
    return directory


ALL = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager")


def _cached(cache: Path, version: str, stamp: str = binaries.OFFLINE_STAMP) -> Path:
    """A cache entry as the offline build or the download leaves it: binaries plus the recipe stamp."""
    directory = _fake_bins(cache / f"k8s-{version}" / "bin", *ALL)
    (directory / binaries.STAMP_FILE).write_text(stamp + "\n")
    return directory


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "trainsmart"


def test_explicit_dir_wins_over_path_and_cache(tmp_path: Path, empty_cache: Path) -> None:
    explicit = _fake_bins(tmp_path / "explicit", *ALL)
    on_path = _fake_bins(tmp_path / "path", *ALL)
    _cached(empty_cache, "v1.20.2")
    env = {"TRAINSMART_K8S_BIN_DIR": str(explicit), "PATH": str(on_path)}
    found = find_binaries(env)
    assert found is not None
    assert found.kube_apiserver == explicit / "kube-apiserver"
    assert found.source == "TRAINSMART_K8S_BIN_DIR"


def test_kubebuilder_assets_without_scheduler_borrows_it_from_the_cache(tmp_path: Path, empty_cache: Path) -> None:
    assets = _fake_bins(tmp_path / "envtest", "etcd", "kube-apiserver", "kubectl")
    cached = _cached(empty_cache, "v1.20.2")
    found = find_binaries({"KUBEBUILDER_ASSETS": str(assets), "PATH": ""})
    assert found is not None
    assert found.kube_apiserver == assets / "kube-apiserver"
    assert found.kube_scheduler == cached / "kube-scheduler"
    assert found.complete


def test_path_is_searched_before_the_cache(tmp_path: Path, empty_cache: Path) -> None:
    on_path = _fake_bins(tmp_path / "path", *ALL)
    _cached(empty_cache, "v1.20.2")
    found = find_binaries({"PATH": str(on_path)})
    assert found is not None and found.source == "PATH"


def test_newest_cached_version_is_preferred(empty_cache: Path) -> None:
    _cached(empty_cache, "v1.20.2")
    newer = _cached(empty_cache, "v1.30.0", stamp=binaries.DOWNLOAD_STAMP)
    found = find_binaries({"PATH": ""})
    assert found is not None and found.kube_apiserver.parent == newer


def test_cache_entries_from_an_older_recipe_are_not_reused(empty_cache: Path) -> None:
    _cached(empty_cache, "v1.20.2", stamp="offline-v1.20.2-r1")
    _fake_bins(empty_cache / "k8s-v1.19.0" / "bin", *ALL)
    assert find_binaries({"PATH": ""}) is None


def test_missing_apiserver_means_nothing_found(tmp_path: Path, empty_cache: Path) -> None:
    only_etcd = _fake_bins(tmp_path / "partial", "etcd")
    assert find_binaries({"PATH": str(only_etcd)}) is None


def test_non_executable_files_are_ignored(tmp_path: Path, empty_cache: Path) -> None:
    d = _fake_bins(tmp_path / "d", *ALL)
    (d / "kube-apiserver").chmod(0o644)
    assert find_binaries({"PATH": str(d)}) is None


def test_download_without_internet_reports_and_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(url: str, timeout: float) -> bytes:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(binaries, "_fetch", unreachable)
    messages: list[str] = []
    assert binaries.download_envtest(tmp_path / "dest", messages.append) is False
    assert any("falling back to the offline build" in m for m in messages)
    assert not (tmp_path / "dest").exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Kubernetes v1.20.2\n", (1, 20)), ("Kubernetes v1.30.0-rc.1", (1, 30)), ("v2.0.0", (2, 0))],
)
def test_parse_version(text: str, expected: tuple[int, int]) -> None:
    assert parse_version(text) == expected


def test_parse_version_rejects_text_without_a_version() -> None:
    with pytest.raises(ValueError, match="no Kubernetes version"):
        parse_version("etcd Version: three")
