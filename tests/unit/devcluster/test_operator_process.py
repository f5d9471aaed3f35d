"""`devcluster.operator_process`: the one launcher of operator processes, on stand-in processes (no cluster).

Pins:
- `start` returns once the readiness probe holds, with the process running and its output in the log;
- a process that exits before it is ready, or is not ready in time, fails the start with the log's tail,
  and one that timed out is not left running;
- the process dies with its parent (PR_SET_PDEATHSIG): a parent killed with SIGKILL leaves no orphan;
- `stop` sends SIGTERM and gives it time, kills one that ignores it, returns the exit code, and is safe
  to call on a process never started or already gone; `kill` is immediate;
- a restart appends to the same log; `env` replaces the environment;
- `operator_argv` and `trainsmart_operator` build the `trainsmart operator` command line and the URLs tests
  use; /metrics flags only when asked for; `pod_gateway` picks the agent's nodes' InternalIP;
- `support.waiting.wait_for` returns the first truthy value and fails with what it waited for and the
  caller's diagnosis; a predicate's exception is not turned into a timeout.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from support.waiting import wait_for
from trainsmart.devcluster.operator_process import (
    OperatorProcess,
    http_ok,
    listening,
    operator_argv,
    pod_gateway,
    trainsmart_operator,
)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_start_waits_for_ready_and_logs_output(tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    argv = python(f"""
        import pathlib, time
        print("starting", flush=True)
        time.sleep(0.3)
        pathlib.Path({str(flag)!r}).touch()
        time.sleep(60)
    """)
    process = OperatorProcess(argv, tmp_path / "logs" / "op.log", flag.exists)
    process.start(timeout=20)
    try:
        assert flag.exists() and process.running
        assert wait_for(lambda: "starting" in process.tail(), 5, "the child's first line in the log")
    finally:
        assert process.stop(timeout=5) == -signal.SIGTERM
    assert not process.running


def test_a_process_that_exits_before_ready_fails_the_start(tmp_path: Path) -> None:
    process = OperatorProcess(python("print('bad flag'); raise SystemExit(3)"), tmp_path / "op.log", lambda: False)
    with pytest.raises(RuntimeError, match=r"exited with 3:\nbad flag"):
        process.start(timeout=20)


def test_a_process_not_ready_in_time_fails_and_is_stopped(tmp_path: Path) -> None:
    process = OperatorProcess(python("import time; time.sleep(60)"), tmp_path / "op.log", lambda: False)
    with pytest.raises(RuntimeError, match="not ready within 1 s"):
        process.start(timeout=1)
    assert process.process is not None and not process.running


def test_the_process_dies_with_its_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    parent = python(f"""
        import pathlib, sys, time
        from trainsmart.devcluster.operator_process import OperatorProcess
        child = OperatorProcess([sys.executable, "-c", "import time; time.sleep(60)"],
                                pathlib.Path({str(tmp_path / "child.log")!r}), lambda: True)
        child.start()
        pathlib.Path({str(pid_file)!r}).write_text(str(child.process.pid))
        time.sleep(60)
    """)
    process = subprocess.Popen(parent, stdin=subprocess.DEVNULL)
    try:
        pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text(), 30, "the child's pid"))
        assert not gone(pid)
    finally:
        process.kill()
        process.wait()
    wait_for(lambda: gone(pid), 10, f"the orphaned child {pid} to die")


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path: Path) -> None:
    argv = python("""
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("deaf", flush=True)
        time.sleep(60)
    """)
    log = tmp_path / "op.log"
    process = OperatorProcess(argv, log, lambda: log.exists() and "deaf" in log.read_text())
    process.start(timeout=20)
    began = time.monotonic()
    assert process.stop(timeout=0.5) == -signal.SIGKILL
    assert time.monotonic() - began >= 0.5


def test_stop_returns_the_exit_code_and_is_safe_to_repeat(tmp_path: Path) -> None:
    argv = python("""
        import signal, sys, time
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        print("armed", flush=True)
        time.sleep(60)
    """)
    never = OperatorProcess(argv, tmp_path / "never.log", lambda: True)
    assert never.stop() is None
    log = tmp_path / "op.log"
    process = OperatorProcess(argv, log, lambda: log.exists() and "armed" in log.read_text())
    process.start(timeout=20)
    assert process.stop(timeout=10) == 0
    assert process.stop(timeout=10) == 0
    process.kill()  # nothing left to kill: a no-op


def test_kill_is_immediate_and_a_restart_appends_to_the_log(tmp_path: Path) -> None:
    log = tmp_path / "op.log"
    argv = python("import time; print('run', flush=True); time.sleep(60)")
    process = OperatorProcess(argv, log, lambda: log.exists() and log.read_text().count("run") >= runs)
    runs = 1
    process.start(timeout=20)
    process.kill()
    assert process.process is not None and process.process.returncode == -signal.SIGKILL
    runs = 2
    process.start(timeout=20)
    try:
        assert log.read_text().splitlines() == ["run", "run"]
    finally:
        process.stop(timeout=5)


def test_env_replaces_the_environment(tmp_path: Path) -> None:
    log = tmp_path / "op.log"
    argv = python("import os; print(sorted(k for k in os.environ if k.startswith('TS_TEST')), flush=True)")
    process = OperatorProcess(argv, log, lambda: False, env={"TS_TEST_ONLY": "1"})
    with pytest.raises(RuntimeError, match="exited with 0"):
        process.start(timeout=20)
    assert log.read_text().strip() == "['TS_TEST_ONLY']"


def test_probes_answer_for_a_real_server(tmp_path: Path) -> None:
    from trainsmart.devcluster.controlplane import free_port

    port = free_port()
    assert not listening("127.0.0.1", port)() and not http_ok(f"http://127.0.0.1:{port}/")()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)]
    with OperatorProcess(argv, tmp_path / "server.log", http_ok(f"http://127.0.0.1:{port}/")) as server:
        assert server.running and listening("127.0.0.1", port)()
    assert not server.running


def test_argv_and_urls(tmp_path: Path) -> None:
    argv = operator_argv(
        tmp_path / "kc", report_host="10.0.0.1", report_port=8080, report_url="http://10.0.0.1:8080/v1/reports"
    )
    assert argv[:4] == [sys.executable, "-m", "trainsmart.cli", "operator"]
    assert argv[4:] == [
        "--kubeconfig", str(tmp_path / "kc"), "--report-host", "10.0.0.1", "--report-port", "8080",
        "--report-url", "http://10.0.0.1:8080/v1/reports",
    ]  # fmt: skip
    with_metrics = operator_argv(
        tmp_path / "kc", report_host="h", report_port=1, report_url="u", metrics=("127.0.0.1", 0), extra_args=["-v"]
    )
    assert with_metrics[-5:] == ["--metrics-host", "127.0.0.1", "--metrics-port", "0", "-v"]

    operator = trainsmart_operator(tmp_path / "kc", tmp_path / "op.log", metrics=("127.0.0.1", 9100))
    assert operator.report_base.startswith("http://127.0.0.1:") and operator.metrics_base == "http://127.0.0.1:9100"
    port = operator.report_base.rsplit(":", 1)[1]
    assert operator.argv[operator.argv.index("--report-port") + 1] == port
    assert operator.argv[operator.argv.index("--report-url") + 1] == f"{operator.report_base}/v1/reports"
    assert trainsmart_operator(tmp_path / "kc", tmp_path / "op.log", metrics=("127.0.0.1", 0)).metrics_base == ""
    assert operator.process is None  # built, not started


def _node(name: str, capacity: dict[str, str], address: str | None) -> Any:
    addresses = [SimpleNamespace(type="Hostname", address=name)]
    if address:
        addresses.append(SimpleNamespace(type="InternalIP", address=address))
    return SimpleNamespace(
        metadata=SimpleNamespace(name=name), status=SimpleNamespace(capacity=capacity, addresses=addresses)
    )


def test_pod_gateway_picks_the_agent_nodes_internal_ip() -> None:
    nodes = [
        _node("control", {"cpu": "2"}, "192.168.1.5"),
        _node("gpu-0", {"cpu": "8", "nvidia.com/gpu": "4"}, "10.240.0.1"),
    ]
    core = SimpleNamespace(list_node=lambda: SimpleNamespace(items=nodes))
    assert pod_gateway(core) == "10.240.0.1"
    assert pod_gateway(core, ["control"]) == "192.168.1.5"
    with pytest.raises(RuntimeError, match="no InternalIP on \\['other'\\]"):
        pod_gateway(core, ["other"])


def test_wait_for_returns_the_value_or_says_what_it_waited_for() -> None:
    answers = iter([None, 0, "", {"phase": "Running"}])
    assert wait_for(lambda: next(answers), 5, "a status", interval=0.01) == {"phase": "Running"}
    with pytest.raises(AssertionError, match=r"timed out after 0.05 s waiting for Godot\nstill empty"):
        wait_for(lambda: None, 0.05, "Godot", lambda: "still empty", interval=0.01)

    def broken() -> bool:
        raise KeyError("status")

    with pytest.raises(KeyError):
        wait_for(broken, 5, "a broken probe")
