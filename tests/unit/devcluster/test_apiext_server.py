"""The pure parts of the Kubernetes 1.36 CRD server's tooling (trainsmart.devcluster.apiext_server).

Pins: where the binaries come from (TRAINSMART_APIEXT_BIN_DIR as is, else the cache only with the current
recipe's stamp, else a build, which refuses clearly without root); the build script and the stamp agree on
the pinned Debian version; the server's flags (loopback, client certificates, admission without core-API
plugins); the admin's client certificate (CN = user, O = system:masters, client auth) and a self-contained
kubeconfig; `provision` prints where the binaries are.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from trainsmart.devcluster import apiext_server
from trainsmart.devcluster.apiext_server import (
    APIEXT_STAMP,
    BUILD_SCRIPT,
    ApiextBinaries,
    admin_kubeconfig,
    apiext_argv,
    apiext_cache_dir,
    build_apiext,
    build_argv,
    ensure_apiext_binaries,
    etcd_argv,
    find_apiext_binaries,
    write_crd_server_pki,
)
from trainsmart.devcluster.binaries import STAMP_FILE, BinariesNotFoundError


def _fake_bins(directory: Path, stamp: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("apiext", "etcd"):
        (directory / name).write_text("#!/bin/sh\n")
        (directory / name).chmod(0o755)
    if stamp is not None:
        (directory / STAMP_FILE).write_text(stamp + "\n")
    return directory


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty user cache; returns where the build would put the binaries."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "trainsmart" / "apiext-v0.36.4"


def test_cache_dir_is_versioned_under_the_user_cache(cache: Path) -> None:
    assert apiext_cache_dir() == cache


def test_explicit_dir_wins_without_a_stamp(tmp_path: Path, cache: Path) -> None:
    _fake_bins(cache, APIEXT_STAMP)
    explicit = _fake_bins(tmp_path / "mine")
    found = find_apiext_binaries({"TRAINSMART_APIEXT_BIN_DIR": str(explicit)})
    assert found == ApiextBinaries(explicit / "apiext", explicit / "etcd", "TRAINSMART_APIEXT_BIN_DIR")


def test_explicit_dir_without_the_binaries_is_an_error_not_a_fallback(tmp_path: Path, cache: Path) -> None:
    _fake_bins(cache, APIEXT_STAMP)
    with pytest.raises(BinariesNotFoundError, match="TRAINSMART_APIEXT_BIN_DIR"):
        find_apiext_binaries({"TRAINSMART_APIEXT_BIN_DIR": str(tmp_path / "empty")})


def test_cache_counts_only_with_the_current_stamp(cache: Path) -> None:
    assert find_apiext_binaries({}) is None
    _fake_bins(cache, "apiext-v0.36.4-an-older-recipe")
    assert find_apiext_binaries({}) is None
    (cache / STAMP_FILE).write_text(APIEXT_STAMP + "\n")
    found = find_apiext_binaries({})
    assert found is not None and found.apiext == cache / "apiext" and found.source == "cache"


def test_stamped_cache_missing_a_binary_is_not_used(cache: Path) -> None:
    _fake_bins(cache, APIEXT_STAMP)
    (cache / "etcd").unlink()
    assert find_apiext_binaries({}) is None


def test_ensure_builds_into_the_cache_when_nothing_is_found(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Path] = []

    def fake_build(dest: Path, log: object) -> None:
        built.append(dest)
        _fake_bins(dest, APIEXT_STAMP)

    monkeypatch.setattr(apiext_server, "build_apiext", fake_build)
    found = ensure_apiext_binaries(log=lambda _m: None, env={})
    assert built == [cache]
    assert found.etcd == cache / "etcd"
    # Second call: found in the cache, no build.
    ensure_apiext_binaries(log=lambda _m: None, env={})
    assert built == [cache]


def test_build_without_root_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BinariesNotFoundError, match=r"needs root.*make apiext.*TRAINSMART_APIEXT_BIN_DIR"):
        build_apiext(tmp_path / "dest", lambda _m: None, euid=1000)


def test_build_argv_runs_the_script_with_dest_and_stamp(tmp_path: Path) -> None:
    assert build_argv(tmp_path) == ["bash", str(BUILD_SCRIPT), str(tmp_path), APIEXT_STAMP]
    assert BUILD_SCRIPT.is_file() and os.access(BUILD_SCRIPT, os.X_OK)
    assert (BUILD_SCRIPT.parent / "apiext" / "main.go").is_file()


def test_the_stamp_names_the_version_the_script_pins() -> None:
    script = BUILD_SCRIPT.read_text()
    pinned = re.search(r"^apiext_version=(\S+)", script, re.MULTILINE)
    kube = re.search(r"^kube_version=(\S+)", script, re.MULTILINE)
    assert pinned is not None and kube is not None
    assert f"-{pinned.group(1)}-" in APIEXT_STAMP
    assert kube.group(1) == apiext_server.KUBE_VERSION


def _flags(argv: list[str]) -> Mapping[str, str]:
    pairs = (a.removeprefix("--").partition("=") for a in argv[1:])
    return {name: value for name, _, value in pairs}


def test_server_argv(tmp_path: Path) -> None:
    pki = write_crd_server_pki(tmp_path / "pki")
    argv = apiext_argv(
        Path("/bin/apiext"),
        etcd_url="http://127.0.0.1:2379",
        port=6443,
        workdir=tmp_path,
        pki=pki,
        kubeconfig=tmp_path / "none.kubeconfig",
    )
    flags = _flags(argv)
    assert argv[0] == "/bin/apiext"
    assert flags["bind-address"] == "127.0.0.1"
    assert flags["secure-port"] == "6443"
    assert flags["etcd-servers"] == "http://127.0.0.1:2379"
    assert flags["client-ca-file"] == str(pki.ca_cert)
    assert flags["tls-cert-file"] == str(pki.serving_cert)
    assert flags["kubeconfig"] == flags["authentication-kubeconfig"] == flags["authorization-kubeconfig"]
    assert "authentication-skip-lookup" in flags
    assert flags["enable-priority-and-fairness"] == "false"
    assert "NamespaceLifecycle" in flags["disable-admission-plugins"].split(",")


def test_etcd_argv_listens_on_loopback_only(tmp_path: Path) -> None:
    flags = _flags(etcd_argv(Path("/bin/etcd"), tmp_path / "data", 2379, 2380))
    assert flags["listen-client-urls"] == "http://127.0.0.1:2379"
    assert flags["listen-peer-urls"] == "http://127.0.0.1:2380"
    assert flags["data-dir"] == str(tmp_path / "data")


def test_admin_certificate_is_a_system_masters_client_cert(tmp_path: Path) -> None:
    pki = write_crd_server_pki(tmp_path)
    cert = x509.load_pem_x509_certificate(pki.admin_cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert cert.issuer == ca.subject
    assert [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)] == ["system:masters"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "trainsmart-admin"
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert oct(pki.admin_key.stat().st_mode & 0o777) == "0o600"


def test_admin_kubeconfig_is_self_contained(tmp_path: Path) -> None:
    pki = write_crd_server_pki(tmp_path)
    kc = admin_kubeconfig("https://127.0.0.1:6443", pki)
    text = yaml.safe_dump(kc)
    assert str(tmp_path) not in text
    loaded = yaml.safe_load(text)
    cluster = loaded["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == pki.ca_cert.read_bytes()
    user = loaded["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == pki.admin_cert.read_bytes()


def test_provision_prints_the_binaries_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    explicit = _fake_bins(tmp_path / "bins")
    monkeypatch.setenv("TRAINSMART_APIEXT_BIN_DIR", str(explicit))
    assert apiext_server.main(["provision"]) == 0
    assert str(explicit) in capsys.readouterr().out


def test_provision_fails_clearly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINSMART_APIEXT_BIN_DIR", str(tmp_path / "missing"))
    assert apiext_server.main(["provision"]) == 1
