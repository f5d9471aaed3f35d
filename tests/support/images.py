"""Container images for tests, without a Docker daemon: buildah builds them, podman runs them.

The build machines cannot reach Docker Hub, so a Dockerfile's `BASE_IMAGE` is replaced by a local Debian
image made with mmdebstrap and imported into the containers storage under a tag keyed by its suite, mirror
and package list: only the first run on a machine pays for it (a minute or less), and a changed package
list gets an image of its own instead of a stale one. Everything else is the Dockerfile as users build it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

BASE_SUITE = "bookworm"
MIRROR = os.environ.get("TRAINSMART_DEBIAN_MIRROR", "http://deb.debian.org/debian")
TOOLS = ("buildah", "podman", "runc", "mmdebstrap")
HOST_CA_IN_BUILD = "/run/host-ca.crt"
"""Where `build` mounts the host's CA bundle inside the build, passed to pip as PIP_CERT."""
# runc cannot raise these limits inside this kind of VM, so podman must not ask for its defaults.
RUNTIME_FLAGS = ("--runtime", "runc", "--ulimit", "nofile=1024:20000", "--ulimit", "nproc=1024:1024")
RUN_FLAGS = (*RUNTIME_FLAGS, "--network", "none")
"""`podman run` flags for a container that needs no network."""


def missing_tools() -> str | None:
    """Why image tests cannot run here, or None when they can."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return f"{', '.join(absent)} not installed (scripts/install-image-tools.sh installs them as root)"
    if os.geteuid() != 0:
        return "buildah/podman here run as root (rootless needs subuid ranges this test does not set up)"
    return None


def run(*argv: str, timeout: float = 600) -> str:
    """Run a command; its stdout, or an AssertionError with everything it printed."""
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def base_image(packages: Sequence[str], name: str = "trainsmart-test-base") -> str:
    """A local stand-in for a Debian-based image with `packages` (minbase, no recommends), made once per
    machine, suite, mirror and package list."""
    key = hashlib.sha256(f"{BASE_SUITE} {MIRROR} {' '.join(packages)}".encode()).hexdigest()[:12]
    image = f"localhost/{name}:{BASE_SUITE}-{key}"
    if subprocess.run(["podman", "image", "exists", image], check=False).returncode == 0:
        return image
    with tempfile.TemporaryDirectory(prefix="trainsmart-base-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        run(
            "mmdebstrap", "--quiet", "--variant=minbase", f"--include={','.join(packages)}",
            BASE_SUITE, str(tarball), MIRROR,
        )  # fmt: skip
        run("podman", "import", "--quiet", str(tarball), image)
    return image


def ca_bundle() -> str:
    """The host's trust store: pip inside the build must trust what the host's pip trusts."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return candidate
    raise AssertionError("no CA bundle found on the host for pip inside the build")


def build(
    dockerfile: Path,
    context: Path,
    tag: str,
    build_args: Mapping[str, str],
    volumes: Sequence[str] = (),
) -> float:
    """`buildah build` (chroot isolation, docker format) of `dockerfile` with `build_args`, the host's CA
    bundle mounted in as PIP_CERT and PIP_INDEX_URL passed on when this process has one; `volumes` are
    further `--volume` specs (host:container[:options]). Returns the seconds it took."""
    args = {"PIP_CERT": HOST_CA_IN_BUILD, **build_args}
    if os.environ.get("PIP_INDEX_URL") and "PIP_INDEX_URL" not in args:
        args["PIP_INDEX_URL"] = os.environ["PIP_INDEX_URL"]
    flags = [f for name, value in args.items() for f in ("--build-arg", f"{name}={value}")]
    flags += [f for volume in (f"{ca_bundle()}:{HOST_CA_IN_BUILD}:ro", *volumes) for f in ("--volume", volume)]
    started = time.monotonic()
    run(
        "buildah", "build", "--quiet", "--isolation", "chroot", "--format", "docker", *flags,
        "--file", str(dockerfile), "--tag", tag, str(context),
    )  # fmt: skip
    return time.monotonic() - started


def remove_image(tag: str) -> None:
    subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, check=False)


def in_image(image: str, *argv: str, entrypoint: str | None = None, user: str | None = None) -> str:
    """Run the image as a pod would: read-only root filesystem, no network, its own user unless told."""
    flags = ["--entrypoint", entrypoint] if entrypoint else []
    flags += ["--user", user] if user else []
    return run("podman", "run", "--rm", *RUN_FLAGS, "--read-only", *flags, image, *argv)
