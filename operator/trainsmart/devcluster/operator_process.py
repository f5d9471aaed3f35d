"""The operator as a local process beside a dev cluster: the one launcher of tests, benches and the demo.

Why one: the launch was copied into four places and the copies drifted. Two of them lacked the
die-with-parent guard, so a killed test run left an orphaned operator holding ~300 MiB. Every launch
here gets that guard, a log file appended to (a restart keeps what the killed process wrote), an
explicit readiness probe (acting on an operator that does not serve yet makes a test race its startup)
and a stop that gives Kopf its SIGTERM grace before a kill.

The operator always runs as a subprocess, never in-process: that is how users run it, and a SIGKILL can
then prove that no state lives only in its memory.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from trainsmart.devcluster.agent.gpus import GPU_RESOURCE
from trainsmart.devcluster.controlplane import die_with_parent, free_port

Probe = Callable[[], bool]
"""True once the process serves what its users need; polled until then."""


def operator_argv(
    kubeconfig: Path,
    *,
    report_host: str,
    report_port: int,
    report_url: str,
    metrics: tuple[str, int] | None = None,
    extra_args: Sequence[str] = (),
    python: str = sys.executable,
) -> list[str]:
    """`trainsmart operator` as a module run by `python` (the venv's interpreter, so no PATH lookup).

    `metrics` is the (host, port) of /metrics; port 0 serves none (parallel runs cannot share a fixed
    port); None keeps the CLI's default (port 8000 on every address, as in a pod)."""
    metrics_flags = ["--metrics-host", metrics[0], "--metrics-port", str(metrics[1])] if metrics else []
    return [
        python, "-m", "trainsmart.cli", "operator",
        "--kubeconfig", str(kubeconfig),
        "--report-host", report_host,
        "--report-port", str(report_port),
        "--report-url", report_url,
        *metrics_flags,
        *extra_args,
    ]  # fmt: skip


def http_ok(url: str) -> Probe:
    """Ready when `url` answers 200 (the report endpoint's /healthz answers once Kopf's startup ran)."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - a URL the caller built
                return bool(response.status == 200)
        except OSError:
            return False

    return probe


def listening(host: str, port: int) -> Probe:
    """Ready when something accepts TCP connections on (host, port), for servers with no health URL."""

    def probe() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        return False

    return probe


def terminate(process: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM, so the process can finish what it does and clean up; SIGKILL after `timeout` seconds.
    Its exit code; a process that already exited is only reaped."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    return process.returncode


@dataclass
class OperatorProcess:
    """One operator subprocess, restartable (`start` again after `stop` or `kill`), output in `log_path`."""

    argv: Sequence[str]
    log_path: Path
    ready: Probe
    env: Mapping[str, str] | None = None
    """The whole environment of the process; None inherits this one's."""
    new_session: bool = False
    """A session of its own, so a Ctrl-C in the terminal reaches only the parent, which stops it in order."""
    report_base: str = ""
    """Where the report endpoint answers (http://host:port); "" when the process serves none."""
    metrics_base: str = ""
    """Where /metrics answers (http://host:port); "" when not served."""
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start it and wait until `ready`; raises (with the log's tail) when it exits or times out first."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=None if self.env is None else dict(self.env),
                start_new_session=self.new_session,
                preexec_fn=die_with_parent,  # a parent killed mid-run must not leave its operator behind
            )
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            if self.ready():
                self.check()  # another process on the port could answer for one that failed to bind it
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the operator was not ready within {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.1)

    def check(self) -> None:
        """Raise if the process has exited: a dead operator must not look like a slow one."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the operator exited with {self.process.returncode}:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as when its node dies or the OOM killer strikes."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 20.0) -> int | None:
        """`terminate` it (Kopf finishes its handlers on SIGTERM). The exit code; None if never started."""
        return None if self.process is None else terminate(self.process, timeout)

    def tail(self, lines: int = 60) -> str:
        """The end of its log, for failure messages."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> OperatorProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def trainsmart_operator(
    kubeconfig: Path,
    log_path: Path,
    *,
    report_host: str = "127.0.0.1",
    metrics: tuple[str, int] | None = None,
    extra_args: Sequence[str] = (),
    new_session: bool = False,
) -> OperatorProcess:
    """`trainsmart operator` with its report endpoint on a free port of `report_host`, ready when its
    /healthz answers. `report_host` is where pods reach it: loopback when no pod runs (pods then send
    nothing), the pods' gateway (`pod_gateway`) when the node agent runs them."""
    port = free_port(report_host)
    base = f"http://{report_host}:{port}"
    argv = operator_argv(
        kubeconfig,
        report_host=report_host,
        report_port=port,
        report_url=f"{base}/v1/reports",
        metrics=metrics,
        extra_args=extra_args,
    )
    metrics_base = f"http://{metrics[0]}:{metrics[1]}" if metrics and metrics[1] else ""
    return OperatorProcess(
        argv, log_path, http_ok(f"{base}/healthz"), new_session=new_session, report_base=base, metrics_base=metrics_base
    )


def pod_gateway(core: Any, node_names: Collection[str] | None = None) -> str:
    """Where the node agent's pods reach this host: its nodes' InternalIP, the pod bridge's gateway.

    `node_names` picks the agent's nodes; None takes any GPU node (a dev cluster's agent runs them all).
    `core` is a kubernetes CoreV1Api."""
    for node in core.list_node().items:
        if node_names is not None and node.metadata.name not in node_names:
            continue
        if node_names is None and GPU_RESOURCE not in (node.status.capacity or {}):
            continue
        for address in node.status.addresses or []:
            if address.type == "InternalIP" and address.address:
                return str(address.address)
    which = sorted(node_names) if node_names is not None else "GPU nodes"
    raise RuntimeError(f"no InternalIP on {which}: is the node agent running?")
