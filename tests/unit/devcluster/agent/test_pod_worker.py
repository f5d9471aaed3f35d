"""The pod worker's lifecycle against an in-file fake sandbox (plain subprocesses on the host network)
and a fake API that records writes. The real sandbox and API are covered by tests/e2e.

Pins:
- a pod runs to Succeeded, its output lands in the agent log file, its env carries GPU indices, the
  simulated-GPU marker and the agent's PATH;
- exit code 3 under Never -> Failed with exitCode 3; a missing executable -> StartError (128);
- OnFailure restarts with back-off and counts restarts, then succeeds;
- init containers run one after the other before the app containers; a failed one fails a Never pod;
- status is written only when it changed;
- exits wake the worker (`notify_exit`), and the terminal status is written before the sandbox is torn
  down: a slow teardown (other pods' work on the shared network) never keeps a finished pod Running;
- deletion: SIGTERM first (the process traps it), then the final delete; devices are freed;
- a pod deleted before it ever ran is just deleted;
- a config error waits (CreateContainerConfigError) and retries; no free GPU -> Failed
  (UnexpectedAdmissionError), but GPUs still held by a pod whose object is gone are waited for; a
  sandbox that blows up -> Failed (AgentError), the worker survives;
- agent shutdown stops processes without writing to the API; a DELETED object releases the pod;
- a crash (the node taken down): SIGKILL without SIGTERM, nothing written, everything let go;
- a pod a previous agent ran: Never -> Failed (killed), OnFailure -> restarted with restartCount + 1;
- the pid journal kills leftovers of a previous instance, never a process that reused the pid;
- logs are found by pod name: the newest pod of that name wins;
- termination messages: what a run writes to its message file lands in state.terminated.message (at most
  4096 bytes); FallbackToLogsOnError uses the log tail only for an empty file and a non-zero exit; every
  run gets a fresh file, so a restarted container's lastState keeps the earlier run's message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from trainsmart.devcluster.agent.gpus import GpuAllocator
from trainsmart.devcluster.agent.kubeio import FileJournal, PodGoneError, agent_log_path, pod_log_paths
from trainsmart.devcluster.agent.pod_runtime_contract import ContainerConfigError, ContainerLaunch, PodSandbox
from trainsmart.devcluster.agent.pod_worker import PodWorker, WorkerSettings

NODE = "node-0"


class FakeProcess:
    """A plain subprocess; a thread per process waits for the exit and calls `notify_exit`'s callbacks."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []
        self._exited = False
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        self._popen.wait()
        with self._lock:
            self._exited = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def notify_exit(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._exited:
                self._callbacks.append(callback)
                return
        callback()

    @staticmethod
    def _code(raw: int) -> int:
        return 128 - raw if raw < 0 else raw

    def poll(self) -> int | None:
        raw = self._popen.poll()
        return None if raw is None else self._code(raw)

    def terminate(self, grace_seconds: float) -> int:
        if self._popen.poll() is None:
            if grace_seconds > 0:  # no grace: SIGKILL alone (the contract)
                os.killpg(self._popen.pid, signal.SIGTERM)
            try:
                self._popen.wait(grace_seconds)
            except subprocess.TimeoutExpired:
                os.killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait()
        return self._code(self._popen.returncode)


class FakeSandbox:
    ip = "127.0.0.1"

    def __init__(self, may_close: threading.Event | None = None) -> None:
        self.closed = False
        self._may_close = may_close

    def launch(self, launch: ContainerLaunch) -> FakeProcess:
        env = dict(launch.env)
        if launch.termination_message is not None:  # no mount namespace here: tell the script where it is
            env["MESSAGE_FILE"] = str(launch.termination_message.host_path)
        with launch.log_path.open("ab") as log:
            popen = subprocess.Popen(launch.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return FakeProcess(popen)

    def close(self) -> None:
        if self._may_close is not None:
            assert self._may_close.wait(10)
        self.closed = True


class FakeRuntime:
    def __init__(self) -> None:
        self.sandboxes: list[FakeSandbox] = []
        self.released: list[str] = []
        self.config_error: str | None = None
        self.sandbox_error: Exception | None = None
        self.may_close: threading.Event | None = None

    def open_sandbox(self, pod: Mapping[str, Any]) -> PodSandbox:
        if self.sandbox_error is not None:
            raise self.sandbox_error
        self.sandboxes.append(FakeSandbox(self.may_close))
        return self.sandboxes[-1]

    def container_launch(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        sandbox: PodSandbox,
        *,
        defaults: Mapping[str, str],
        overrides: Mapping[str, str],
        log_path: Path,
    ) -> ContainerLaunch:
        if self.config_error is not None:
            raise ContainerConfigError(self.config_error)
        env = dict(defaults) | {e["name"]: e["value"] for e in container.get("env") or []} | dict(overrides)
        meta = pod["metadata"]
        argv = [*container.get("command", []), *container.get("args", [])]
        return ContainerLaunch(meta["uid"], meta["namespace"], meta["name"], container["name"], argv, env, log_path)

    def release_pod(self, pod: Mapping[str, Any]) -> None:
        self.released.append(pod["metadata"]["uid"])

    def start(self) -> None:
        pass

    @property
    def host_ip(self) -> str:
        return "10.9.0.1"

    def cluster_changed(self, pods: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]]) -> None:
        pass

    def close(self) -> None:
        pass


class FakeApi:
    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.deleted: list[str] = []
        self.events: list[str] = []
        self.lock = threading.Lock()

    def patch_status(self, pod: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        with self.lock:
            self.statuses.append(dict(status))

    def finish_deletion(self, pod: Mapping[str, Any]) -> None:
        self.deleted.append(pod["metadata"]["uid"])
        raise PodGoneError("already gone")  # tolerated: the object may vanish first

    def event(self, pod: Mapping[str, Any], container: str, warning: bool, reason: str, message: str) -> None:
        with self.lock:
            self.events.append(reason)

    @property
    def last(self) -> dict[str, Any]:
        with self.lock:
            return self.statuses[-1] if self.statuses else {}


def make_pod(
    script: str, *, policy: str = "Never", gpus: int = 0, status: dict[str, Any] | None = None, rv: int = 1
) -> dict[str, Any]:
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": str(uuid.uuid4()), "resourceVersion": str(rv)},
        "spec": {
            "nodeName": NODE,
            "restartPolicy": policy,
            "terminationGracePeriodSeconds": 10,
            "containers": [{"name": "main", "image": "img", "command": ["sh", "-c", script], "resources": resources}],
        },
        "status": status or {"phase": "Pending"},
    }


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.api = FakeApi()
        self.runtime = FakeRuntime()
        self.gpus = GpuAllocator({NODE: 2})
        self.journal = FileJournal(tmp_path)
        self.settings = WorkerSettings(
            state_dir=tmp_path,
            host_ips={NODE: "10.9.0.1"},
            pod_path="/agent/venv/bin:/usr/bin:/bin",
            backoff_initial=0.05,
            backoff_max=0.2,
        )
        self.workers: list[PodWorker] = []

    def run(self, pod: dict[str, Any]) -> PodWorker:
        worker = PodWorker(
            pod, api=self.api, runtime=self.runtime, gpus=self.gpus, journal=self.journal, settings=self.settings
        )
        self.workers.append(worker)
        worker.update(pod)
        return worker


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    for worker in h.workers:
        worker.stop()
        worker.join(10)


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


def phase(h: Harness) -> str | None:
    return h.api.last.get("phase")


def main_status(h: Harness) -> dict[str, Any]:
    statuses: list[dict[str, Any]] = h.api.last["containerStatuses"]
    return statuses[0]


def test_success_with_log_and_env(harness: Harness, tmp_path: Path) -> None:
    pod = make_pod('echo "gpus=$CUDA_VISIBLE_DEVICES sim=$TRAINSMART_SIMULATED_GPUS path=$PATH"', gpus=2)
    harness.run(pod)
    wait_for(lambda: phase(harness) == "Succeeded")
    status = main_status(harness)
    assert status["state"]["terminated"]["exitCode"] == 0
    assert status["state"]["terminated"]["reason"] == "Completed"
    assert status["containerID"].startswith("trainsmart://")
    assert harness.api.last["hostIP"] == "10.9.0.1"
    log = tmp_path / "logs" / f"ns_p_{pod['metadata']['uid']}" / "main.log"
    assert log.read_text() == "gpus=0,1 sim=1 path=/agent/venv/bin:/usr/bin:/bin\n"
    assert harness.gpus.in_use(NODE) == ()  # devices go before the report; the sandbox right after it
    wait_for(lambda: harness.runtime.sandboxes[0].closed and not list((tmp_path / "pids").iterdir()))


def test_exit_code_fails_the_pod(harness: Harness) -> None:
    harness.run(make_pod("exit 3"))
    wait_for(lambda: phase(harness) == "Failed")
    terminated = main_status(harness)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")


def test_missing_executable_is_a_start_error(harness: Harness) -> None:
    pod = make_pod("")
    pod["spec"]["containers"][0]["command"] = ["/nonexistent/binary"]
    harness.run(pod)
    wait_for(lambda: phase(harness) == "Failed")
    terminated = main_status(harness)["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (128, "StartError")


def test_on_failure_restarts_then_succeeds(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    harness.run(make_pod(f"test -e {marker} && exit 0; touch {marker}; exit 1", policy="OnFailure"))
    wait_for(lambda: phase(harness) == "Succeeded")
    status = main_status(harness)
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 1
    waiting = [s for s in harness.api.statuses if "waiting" in s["containerStatuses"][0]["state"]]
    assert waiting[0]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert all(s["phase"] != "Failed" for s in harness.api.statuses)
    assert harness.api.events == ["Started", "BackOff", "Started"]


def test_init_containers_run_first_in_order(harness: Harness, tmp_path: Path) -> None:
    trace = tmp_path / "trace"
    pod = make_pod(f"echo main >> {trace}")
    pod["spec"]["initContainers"] = [
        {"name": f"init{i}", "image": "img", "command": ["sh", "-c", f"sleep 0.1; echo init{i} >> {trace}"]}
        for i in (1, 2)
    ]
    harness.run(pod)
    wait_for(lambda: phase(harness) == "Succeeded")
    assert trace.read_text().split() == ["init1", "init2", "main"]
    assert [s["state"]["terminated"]["reason"] for s in harness.api.last["initContainerStatuses"]] == [
        "Completed",
        "Completed",
    ]
    assert harness.api.statuses[0]["phase"] == "Pending"  # while the init containers ran


def test_failed_init_container_fails_a_never_pod(harness: Harness) -> None:
    pod = make_pod("true")
    pod["spec"]["initContainers"] = [{"name": "init", "image": "img", "command": ["sh", "-c", "exit 2"]}]
    harness.run(pod)
    wait_for(lambda: phase(harness) == "Failed")
    assert "waiting" in main_status(harness)["state"]


def test_status_written_only_on_change(harness: Harness) -> None:
    harness.run(make_pod("sleep 0.6"))
    wait_for(lambda: phase(harness) == "Succeeded")
    assert [s["phase"] for s in harness.api.statuses] == ["Running", "Succeeded"]


def test_finished_pod_is_reported_before_its_sandbox_is_torn_down(harness: Harness) -> None:
    harness.runtime.may_close = threading.Event()
    harness.run(make_pod("sleep 0.1"))
    try:
        wait_for(lambda: phase(harness) == "Succeeded", timeout=5)
        assert not harness.runtime.sandboxes[0].closed
        assert harness.gpus.in_use(NODE) == ()
    finally:
        harness.runtime.may_close.set()
    wait_for(lambda: harness.runtime.sandboxes[0].closed)


def test_graceful_deletion_sends_sigterm_then_deletes(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    pod = make_pod(f"trap 'echo term > {marker}; exit 0' TERM; sleep 60 & wait", gpus=1)
    worker = harness.run(pod)
    wait_for(lambda: phase(harness) == "Running")
    time.sleep(0.1)  # let the shell install its trap
    deleting = {**pod, "metadata": {**pod["metadata"], "deletionTimestamp": "x", "resourceVersion": "2"}}
    deleting["metadata"]["deletionGracePeriodSeconds"] = 5
    started = time.monotonic()
    worker.update(deleting)
    wait_for(lambda: harness.api.deleted == [pod["metadata"]["uid"]])
    assert time.monotonic() - started < 3
    assert harness.api.events == ["Started", "Killing"]
    assert marker.read_text() == "term\n"
    assert harness.gpus.in_use(NODE) == ()
    worker.deleted()
    wait_for(lambda: worker.finalized)
    assert harness.runtime.released == [pod["metadata"]["uid"]]


def test_deleted_before_running_is_just_deleted(harness: Harness) -> None:
    pod = make_pod("sleep 60")
    pod["metadata"]["deletionTimestamp"] = "x"
    harness.run(pod)
    wait_for(lambda: harness.api.deleted == [pod["metadata"]["uid"]])
    assert harness.runtime.sandboxes == []


def test_config_error_waits_and_retries(harness: Harness) -> None:
    harness.runtime.config_error = 'secret "s" not found'
    harness.run(make_pod("true"))
    wait_for(lambda: phase(harness) == "Pending")
    waiting = main_status(harness)["state"]["waiting"]
    assert waiting == {"reason": "CreateContainerConfigError", "message": 'secret "s" not found'}
    harness.runtime.config_error = None
    wait_for(lambda: phase(harness) == "Succeeded")


def test_no_free_gpu_fails_the_pod(harness: Harness) -> None:
    harness.run(make_pod("true", gpus=3))
    wait_for(lambda: phase(harness) == "Failed")
    assert harness.api.last["reason"] == "UnexpectedAdmissionError"
    assert "requested 3 nvidia.com/gpu" in harness.api.last["message"]


def test_gpus_of_a_vanished_pod_are_waited_for(harness: Harness, tmp_path: Path) -> None:
    """A force-deleted pod disappears from the API while its processes still run (here: half a second
    of SIGTERM handling); the pod the scheduler binds to its GPUs right away must get them, not fail."""
    old = make_pod("trap 'sleep 0.5; exit 0' TERM; sleep 60 & wait", gpus=2)
    gone = harness.run(old)
    wait_for(lambda: phase(harness) == "Running")
    time.sleep(0.1)  # let the shell install its trap
    gone.deleted()
    new = make_pod('echo "gpus=$CUDA_VISIBLE_DEVICES"', gpus=2)
    harness.run(new)
    wait_for(lambda: phase(harness) in ("Succeeded", "Failed"))
    assert phase(harness) == "Succeeded", harness.api.last.get("message")
    meta = new["metadata"]
    log = agent_log_path(harness.settings.state_dir, meta["namespace"], meta["name"], meta["uid"], "main")
    assert log.read_text() == "gpus=0,1\n"
    wait_for(lambda: gone.finalized)


def test_sandbox_error_fails_only_that_pod(harness: Harness) -> None:
    harness.runtime.sandbox_error = RuntimeError("bridge on fire")
    harness.run(make_pod("true"))
    wait_for(lambda: phase(harness) == "Failed")
    assert harness.api.last["reason"] == "AgentError"
    assert "bridge on fire" in harness.api.last["message"]
    harness.runtime.sandbox_error = None
    harness.run(make_pod("true"))
    wait_for(lambda: phase(harness) == "Succeeded")


def test_stop_kills_processes_without_api_writes(harness: Harness) -> None:
    worker = harness.run(make_pod("sleep 60"))
    wait_for(lambda: phase(harness) == "Running")
    pid = int(main_status(harness)["containerID"].removeprefix("trainsmart://"))
    writes = len(harness.api.statuses)
    worker.stop()
    worker.join(10)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped: it is gone
    assert len(harness.api.statuses) == writes
    assert harness.runtime.sandboxes[0].closed


def test_object_deleted_releases_the_pod(harness: Harness) -> None:
    worker = harness.run(make_pod("sleep 60"))
    wait_for(lambda: phase(harness) == "Running")
    worker.deleted()
    wait_for(lambda: worker.finalized)
    assert harness.runtime.sandboxes[0].closed
    assert len(harness.runtime.released) == 1


PREVIOUS_RUNNING = {
    "phase": "Running",
    "startTime": "2024-05-01T12:00:00Z",
    "containerStatuses": [
        {"name": "main", "restartCount": 1, "state": {"running": {"startedAt": "2024-05-01T12:00:00Z"}}}
    ],
}


def test_adopted_never_pod_fails_as_killed(harness: Harness) -> None:
    harness.run(make_pod("true", status=PREVIOUS_RUNNING))
    wait_for(lambda: phase(harness) == "Failed")
    terminated = main_status(harness)["state"]["terminated"]
    assert terminated["exitCode"] == 137
    assert "restarted" in terminated["message"]
    assert harness.runtime.sandboxes == []


def test_adopted_on_failure_pod_restarts(harness: Harness) -> None:
    harness.run(make_pod("true", policy="OnFailure", status=PREVIOUS_RUNNING))
    wait_for(lambda: phase(harness) == "Succeeded")
    assert main_status(harness)["restartCount"] == 2
    assert harness.api.last["startTime"] == "2024-05-01T12:00:00Z"


def test_journal_kills_leftovers_but_not_reused_pids(tmp_path: Path) -> None:
    journal = FileJournal(tmp_path)
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        journal.record({"metadata": {"uid": "u1", "name": "a", "namespace": "n"}}, {"main": leftover.pid})
        (tmp_path / "pids" / "u2.json").write_text(
            json.dumps({"uid": "u2", "processes": {"main": {"pid": bystander.pid, "start": "1"}}})
        )
        assert journal.kill_leftovers() == 1
        assert leftover.wait(5) == -signal.SIGKILL
        assert bystander.poll() is None
        assert not list((tmp_path / "pids").iterdir())
    finally:
        for proc in (leftover, bystander):
            proc.kill()
            proc.wait()


def test_pod_log_paths_finds_the_newest_pod_of_a_name(tmp_path: Path) -> None:
    old = agent_log_path(tmp_path, "ns", "web", "uid-1", "main")
    new = agent_log_path(tmp_path, "ns", "web", "uid-2", "main")
    other = agent_log_path(tmp_path, "ns", "web_x", "uid-3", "main")
    for path in (old, other, new):
        path.parent.mkdir(parents=True)
        path.write_text(path.parent.name)
        time.sleep(0.01)
    os.utime(new.parent, (time.time() + 5, time.time() + 5))
    assert pod_log_paths(tmp_path, "ns", "web") == {"main": new}
    assert pod_log_paths(tmp_path, "ns", "absent") == {}


def test_termination_message_file_lands_in_terminated_state(harness: Harness) -> None:
    pod = make_pod('test "$(cat "$MESSAGE_FILE")" = "" && printf \'{"status":"succeeded"}\' > "$MESSAGE_FILE"')
    pod["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    harness.run(pod)
    wait_for(lambda: phase(harness) == "Succeeded")
    assert main_status(harness)["state"]["terminated"]["message"] == '{"status":"succeeded"}'


def test_termination_message_is_cut_at_4096_bytes(harness: Harness) -> None:
    harness.run(make_pod('head -c 5000 /dev/zero | tr "\\0" x > "$MESSAGE_FILE"'))
    wait_for(lambda: phase(harness) == "Succeeded")
    assert main_status(harness)["state"]["terminated"]["message"] == "x" * 4096


@pytest.mark.parametrize(
    ("policy", "script", "expected"),
    [
        ("FallbackToLogsOnError", "echo first; echo boom; exit 3", "first\nboom"),
        ("FallbackToLogsOnError", 'echo boom; echo -n reason > "$MESSAGE_FILE"; exit 3', "reason"),
        ("FallbackToLogsOnError", "echo fine", None),
        ("File", "echo boom; exit 3", None),
    ],
)
def test_fallback_to_logs_only_for_an_empty_file_and_a_failure(
    harness: Harness, policy: str, script: str, expected: str | None
) -> None:
    pod = make_pod(script)
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = policy
    harness.run(pod)
    wait_for(lambda: phase(harness) in ("Succeeded", "Failed"))
    assert main_status(harness)["state"]["terminated"].get("message") == expected


def test_each_run_gets_a_fresh_message_file(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = (
        f'test -s "$MESSAGE_FILE" && exit 9; if [ -e {marker} ]; then echo -n second > "$MESSAGE_FILE"; '
        f'else touch {marker}; echo -n first > "$MESSAGE_FILE"; exit 1; fi'
    )
    harness.run(make_pod(script, policy="OnFailure"))
    wait_for(lambda: phase(harness) == "Succeeded")
    status = main_status(harness)
    assert status["state"]["terminated"]["message"] == "second"
    assert status["lastState"]["terminated"]["message"] == "first"


def test_crash_sigkills_and_writes_nothing(harness: Harness, tmp_path: Path) -> None:
    """A node that goes down (`node_control.py`): no SIGTERM (the trap would write a file), no status, no
    event, no deletion; devices and the sandbox are let go and the worker is finalized."""
    marker = tmp_path / "got-sigterm"
    worker = harness.run(make_pod(f"trap 'touch {marker}' TERM; sleep 60 & wait", gpus=1))
    wait_for(lambda: phase(harness) == "Running")
    pid = int(main_status(harness)["containerID"].removeprefix("trainsmart://"))
    writes, events = len(harness.api.statuses), len(harness.api.events)
    worker.crash()
    wait_for(lambda: worker.finalized)
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert not marker.exists()
    assert len(harness.api.statuses) == writes and len(harness.api.events) == events
    assert harness.api.deleted == []
    assert harness.runtime.sandboxes[0].closed and len(harness.runtime.released) == 1
    both = {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "2"}}}]}
    assert harness.gpus.allocate(NODE, "next", both)  # the crashed pod's GPU is free again
