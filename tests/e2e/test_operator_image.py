"""The operator image (the root Dockerfile), built for real with buildah and run with podman.

Docker Hub is not reachable on the build machines, so the Dockerfile's `BASE_IMAGE` is replaced by a local
Debian bookworm image made with mmdebstrap (python3 + venv, as `python:3.11-slim-bookworm` provides);
everything else is the Dockerfile as users build it, including `pip install` from the package index inside
the build (the host's CA bundle is mounted in and passed as `PIP_CERT`, for TLS-intercepting proxies).

Pins:
- the image builds, and `trainsmart --version` runs in it as uid 65532 with a read-only root filesystem
  and no network;
- its configured entrypoint is `trainsmart operator` (the operator's own `--help` comes out) and its user
  is numeric and non-root;
- the final stage carries no compiler and no pip cache;
- `trainsmart operator` from the image, read-only root and uid 65532 as the chart runs it, connects to the
  session's real kube-apiserver (a kubeconfig mounted in), watches TrainingJobs and HyperparamSweeps in its
  namespace and answers its liveness probe.

Skipped, with the reason, where buildah, podman, runc or mmdebstrap are missing or not root;
`make test` installs them (scripts/install-image-tools.sh). The base image is kept in the containers
storage, keyed by its package list, so only the first run on a machine pays for mmdebstrap (~15 s).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.paths import REPO as ROOT
from trainsmart import __version__
from trainsmart.devcluster.controlplane import ControlPlane, free_port

BASE_PACKAGES = ("python3", "python3-venv")
BASE_SUITE = "bookworm"
MIRROR = os.environ.get("TRAINSMART_DEBIAN_MIRROR", "http://deb.debian.org/debian")
TOOLS = ("buildah", "podman", "runc", "mmdebstrap")
# runc cannot raise these limits inside this kind of VM, so podman must not ask for its defaults.
RUN_FLAGS = ("--runtime", "runc", "--network", "none", "--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:1024")


def _missing() -> str | None:
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (scripts/install-image-tools.sh installs them as root)"
    if os.geteuid() != 0:
        return "buildah/podman here run as root (rootless needs subuid ranges this test does not set up)"
    return None


pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_missing() is not None, reason=_missing() or "")]


def _run(*argv: str, timeout: float = 600) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _base_image() -> str:
    """A local stand-in for python:3.11-slim-bookworm, made once per machine and package list."""
    key = hashlib.sha256(f"{BASE_SUITE} {MIRROR} {' '.join(BASE_PACKAGES)}".encode()).hexdigest()[:12]
    image = f"localhost/trainsmart-test-base:{BASE_SUITE}-{key}"
    if subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0:
        return image
    with tempfile.TemporaryDirectory(prefix="trainsmart-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        _run(
            "mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            BASE_SUITE, str(tarball), MIRROR,
        )  # fmt: skip
        _run("podman", "import", "--quiet", str(tarball), image)
    return image


def _ca_bundle() -> str:
    """The host's trust store: pip inside the build must trust what the host's pip trusts."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("no CA bundle found on the host for pip inside the build")


@pytest.fixture(scope="module")
def operator_image() -> Iterator[str]:
    tag = f"localhost/trainsmart-operator-test:{os.getpid()}"
    args = ["--build-arg", f"BASE_IMAGE={_base_image()}", "--build-arg", "PIP_CERT=/run/host-ca.crt"]
    if os.environ.get("PIP_INDEX_URL"):
        args += ["--build-arg", f"PIP_INDEX_URL={os.environ['PIP_INDEX_URL']}"]
    _run(
        "buildah", "build", "--quiet", "--isolation", "chroot", "--format", "docker",
        "--volume", f"{_ca_bundle()}:/run/host-ca.crt:ro", *args,
        "--file", str(ROOT / "Dockerfile"), "--tag", tag, str(ROOT),
    )  # fmt: skip
    try:
        yield tag
    finally:
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, check=False)


def _in_image(image: str, *argv: str, entrypoint: str | None = None, user: str | None = None) -> str:
    """Run the image as a pod would: read-only root filesystem, no network, its own user unless told."""
    flags = ["--entrypoint", entrypoint] if entrypoint else []
    flags += ["--user", user] if user else []
    return _run("podman", "run", "--rm", *RUN_FLAGS, "--read-only", *flags, image, *argv)


def test_version_runs_as_non_root_on_a_read_only_root(operator_image: str) -> None:
    assert _in_image(operator_image, "--version", entrypoint="trainsmart").strip() == f"trainsmart {__version__}"
    assert _in_image(operator_image, "-u", entrypoint="id").strip() == "65532"


def test_entrypoint_is_the_operator_and_user_numeric(operator_image: str) -> None:
    config = json.loads(_run("podman", "image", "inspect", operator_image))[0]["Config"]
    assert config["Entrypoint"] == ["trainsmart", "operator"]
    assert config["User"] == "65532:65532"
    assert _in_image(operator_image, "--help").startswith("usage: trainsmart operator")


def test_final_stage_has_no_compiler_and_no_pip_cache(operator_image: str) -> None:
    script = (
        "for tool in gcc cc c++ g++ clang make; do command -v $tool && exit 1; done; "
        "test ! -e /root/.cache/pip && test ! -e /src && echo clean"
    )
    assert _in_image(operator_image, "-c", script, entrypoint="sh", user="0").strip() == "clean"


def test_the_operator_runs_from_the_image_against_a_real_apiserver(
    operator_image: str, control_plane: ControlPlane, trainsmart_crds: object, namespace: str, tmp_path: Path
) -> None:
    """Namespaced to a namespace of its own, so it never reconciles the session operator's objects."""
    config = yaml.safe_load(control_plane.admin_kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    ca = Path(cluster.pop("certificate-authority")).read_bytes()
    cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(config))
    kubeconfig.chmod(0o644)  # read by uid 65532 in the container
    tmp_path.chmod(0o755)
    report, liveness, metrics = free_port(), free_port(), free_port()
    name = f"trainsmart-operator-test-{os.getpid()}"
    argv = [
        "podman", "run", "--detach", "--name", name, "--runtime", "runc", "--network", "host", "--read-only",
        "--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:1024",
        "--volume", f"{kubeconfig}:/etc/trainsmart/kubeconfig:ro", operator_image,
        "--kubeconfig", "/etc/trainsmart/kubeconfig", "--namespace", namespace, "--verbose",
        "--report-host", "127.0.0.1", "--report-port", str(report),
        "--liveness-port", str(liveness), "--metrics-port", str(metrics),
    ]  # fmt: skip
    _run(*argv)
    try:
        deadline = time.monotonic() + 90
        while True:
            logs = subprocess.run(["podman", "logs", name], capture_output=True, text=True, check=False)
            output = logs.stdout + logs.stderr
            watching = [line for line in output.splitlines() if "Starting the watch-stream for" in line]
            if any("trainingjobs" in line for line in watching) and any(
                "hyperparamsweeps" in line for line in watching
            ):
                break
            state = _run("podman", "inspect", "--format", "{{.State.Status}}", name).strip()
            assert state == "running" and time.monotonic() < deadline, f"operator container {state}:\n{output[-4000:]}"
            time.sleep(1)
        ours = [line for line in watching if "trainsmart.dev" in line]
        assert ours and all(line.endswith(f"in '{namespace}'.") for line in ours), ours
        with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)
