"""A real `mlflow server` (sqlite backend, loopback, a free port) for the tracking tests, and a wait for it.

Started as its own process group and stopped with it (the server forks workers). Tests that use it are
skipped, with the reason, only when the `mlflow` package (the dev extra) cannot be imported.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trainsmart.devcluster.controlplane import free_port


@dataclass(frozen=True)
class MlflowServer:
    uri: str
    log: Path


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=1) as response:  # noqa: S310 - loopback http
            return bool(response.status == 200)
    except OSError:
        return False


@contextmanager
def mlflow_server(workdir: Path, timeout: float = 60.0) -> Iterator[MlflowServer]:
    """`mlflow server` on 127.0.0.1 with its store under `workdir`, until the block ends."""
    port = free_port("127.0.0.1")
    uri = f"http://127.0.0.1:{port}"
    log = workdir / "mlflow-server.log"
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
        "--default-artifact-root", str(workdir / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(uri):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield MlflowServer(uri, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
