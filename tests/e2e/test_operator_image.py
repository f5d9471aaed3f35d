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
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.images import RUNTIME_FLAGS, base_image, build, in_image, missing_tools, remove_image, run
from support.paths import REPO as ROOT
from trainsmart import __version__
from trainsmart.devcluster.controlplane import ControlPlane, free_port

BASE_PACKAGES = ("python3", "python3-venv")

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(missing_tools() is not None, reason=missing_tools() or "")]


@pytest.fixture(scope="module")
def operator_image() -> Iterator[str]:
    tag = f"localhost/trainsmart-operator-test:{os.getpid()}"
    seconds = build(ROOT / "Dockerfile", ROOT, tag, {"BASE_IMAGE": base_image(BASE_PACKAGES)})
    print(f"built {tag} in {seconds:.0f} s")
    try:
        yield tag
    finally:
        remove_image(tag)


def test_version_runs_as_non_root_on_a_read_only_root(operator_image: str) -> None:
    assert in_image(operator_image, "--version", entrypoint="trainsmart").strip() == f"trainsmart {__version__}"
    assert in_image(operator_image, "-u", entrypoint="id").strip() == "65532"


def test_entrypoint_is_the_operator_and_user_numeric(operator_image: str) -> None:
    config = json.loads(run("podman", "image", "inspect", operator_image))[0]["Config"]
    assert config["Entrypoint"] == ["trainsmart", "operator"]
    assert config["User"] == "65532:65532"
    assert in_image(operator_image, "--help").startswith("usage: trainsmart operator")


def test_final_stage_has_no_compiler_and_no_pip_cache(operator_image: str) -> None:
    script = (
        "for tool in gcc cc c++ g++ clang make; do command -v $tool && exit 1; done; "
        "test ! -e /root/.cache/pip && test ! -e /src && echo clean"
    )
    assert in_image(operator_image, "-c", script, entrypoint="sh", user="0").strip() == "clean"


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
        "podman", "run", "--detach", "--name", name, *RUNTIME_FLAGS, "--network", "host", "--read-only",
        "--volume", f"{kubeconfig}:/etc/trainsmart/kubeconfig:ro", operator_image,
        "--kubeconfig", "/etc/trainsmart/kubeconfig", "--namespace", namespace, "--verbose",
        "--report-host", "127.0.0.1", "--report-port", str(report),
        "--liveness-port", str(liveness), "--metrics-port", str(metrics),
    ]  # fmt: skip
    run(*argv)
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
            state = run("podman", "inspect", "--format", "{{.State.Status}}", name).strip()
            assert state == "running" and time.monotonic() < deadline, f"operator container {state}:\n{output[-4000:]}"
            time.sleep(1)
        ours = [line for line in watching if "trainsmart.dev" in line]
        assert ours and all(line.endswith(f"in '{namespace}'.") for line in ours), ours
        with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=5) as response:
            assert response.status == 200
    finally:
        subprocess.run(["podman", "rm", "--force", name], capture_output=True, check=False)
