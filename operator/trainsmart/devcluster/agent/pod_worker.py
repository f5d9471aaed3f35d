"""One pod's life on a simulated node: the part of a kubelet that decides, not the part that isolates.

A `PodWorker` owns one pod from the moment it is bound to one of our nodes until its object is gone. Its
thread starts the containers through the sandbox (`pod_runtime_contract.py` is the whole contract), is
woken by their exits (`ContainerProcess.notify_exit`: no polling on a timer), applies the restart policy
with a growing back-off, writes status through the status subresource when (and only when) it changed
(a terminal status before the sandbox is torn down, as a kubelet does), and honours graceful deletion:
SIGTERM, SIGKILL after `deletionGracePeriodSeconds`, then the final delete with grace 0 and a UID
precondition, as a kubelet does. A pod that cannot run at all (devices unavailable, an agent bug) ends
`Failed` with a message instead of taking the agent down; devices still held by pods being torn down are
waited for briefly first (see `gpus.py`).

Limits, on purpose:
- images are ignored: commands run on the host's filesystem (inside the sandbox's namespaces), with the
  agent's venv `bin` first on PATH so `python` is the project's; a container needs a `command`;
- no probes: a running container is ready; no ephemeral containers;
- no `pods/log`, `exec`, `attach` or `port-forward`: there is no kubelet server. Logs are files,
  `<state>/logs/<ns>_<pod>_<uid>/<container>.log` (`agent_log_path`, or `pod_log_paths` by pod name),
  appended across restarts; that is what `trainsmart dev logs` should print.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from trainsmart.devcluster.agent import podstatus as ps
from trainsmart.devcluster.agent import termination_messages as termination
from trainsmart.devcluster.agent.gpus import GpuAllocator, GpuUnavailableError, gpu_env
from trainsmart.devcluster.agent.kubeio import PidJournal, PodApi, PodGoneError, agent_log_path
from trainsmart.devcluster.agent.pod_runtime_contract import (
    ContainerConfigError,
    ContainerLaunch,
    ContainerProcess,
    PodRuntime,
    PodSandbox,
)

log = logging.getLogger(__name__)

# Exits wake the worker (`notify_exit`); this is only the longest it sleeps without any other reason to
# wake (a back-off or deadline comes sooner), a safety net that costs nothing per pod under load.
IDLE_RECHECK_SECONDS = 2.0


@dataclass(frozen=True)
class WorkerSettings:
    state_dir: Path
    host_ips: Mapping[str, str]  # node name -> InternalIP
    pod_path: str  # PATH for containers: the agent's venv bin first
    backoff_initial: float = 0.5
    backoff_max: float = 20.0
    backoff_reset_after: float = 60.0
    shutdown_grace: float = 5.0
    # How long admission waits for GPUs still held by pods being torn down (see `gpus.py`).
    gpu_admission_wait: float = 5.0


@dataclass
class _Slot:
    """Mutable per-container bookkeeping around the immutable record that status is derived from."""

    spec: Mapping[str, Any]
    init: bool
    record: ps.ContainerRecord
    process: ContainerProcess | None = None
    ran_before: bool = False
    due_at: float = 0.0  # monotonic time of the next (re)start attempt
    backoff: float = 0.0
    started_mono: float = 0.0
    log_path: Path | None = None
    message_file: Path | None = None  # this run's termination message (see termination_messages.py)

    @property
    def startable(self) -> bool:
        return self.process is None and isinstance(self.record.state, ps.Waiting)


def terminate_all(processes: list[ContainerProcess], grace: float) -> list[int]:
    """Stop every process at once: each gets the full grace period, not what the previous one left."""
    if len(processes) <= 1:
        return [p.terminate(grace) for p in processes]
    with ThreadPoolExecutor(max_workers=len(processes), thread_name_prefix="terminate") as pool:
        return list(pool.map(lambda p: p.terminate(grace), processes))


def _newer(candidate: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """A relist can deliver an older snapshot than the last watch event; resourceVersions of one
    resource are etcd revisions, so they order (and where they do not parse, take the newcomer)."""
    try:
        return int(candidate["metadata"]["resourceVersion"]) >= int(current["metadata"]["resourceVersion"])
    except (KeyError, TypeError, ValueError):
        return True


class PodWorker:
    """Runs one pod. The agent's threads call `update`, `deleted` and `stop`; everything else happens
    on the worker's own thread, which exits while there is nothing to do (a finished pod costs no thread)
    and is started again by the next call that gives it work."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        *,
        api: PodApi,
        runtime: PodRuntime,
        gpus: GpuAllocator,
        journal: PidJournal,
        settings: WorkerSettings,
    ) -> None:
        self.uid: str = pod["metadata"]["uid"]
        self.node: str = pod["spec"]["nodeName"]
        self._pod = pod
        self._api, self._runtime, self._gpus, self._journal = api, runtime, gpus, journal
        self._settings = settings
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Below: touched only by the worker thread, or before it starts.
        self._stopping = self._gone = self._finalized = self._deletion_sent = self._crashed = False
        self._admitted = self._finished = self._dirty = False
        self._failure: tuple[str, str] | None = None
        self._slots: list[_Slot] = []
        self._sandbox: PodSandbox | None = None
        self._devices: Mapping[str, tuple[int, ...]] = {}
        self._pod_ip: str | None = None
        self._start_time: datetime | None = None
        self._deadline_at: float | None = None
        self._last_sent: dict[str, Any] | None = None

    # -- the agent's side ---------------------------------------------------------------------------

    @property
    def finalized(self) -> bool:
        """The object is gone and everything the pod held is released: the agent may forget it."""
        return self._finalized

    def update(self, pod: Mapping[str, Any]) -> None:
        with self._lock:
            if _newer(pod, self._pod):
                self._pod = pod
        self._kick()

    def deleted(self) -> None:
        """The object is gone. Said to the allocator here, on the agent's thread, so that a pod bound
        next (the scheduler already counts these GPUs as free) waits for them instead of failing."""
        self._gone = True
        self._gpus.mark_releasing(self.uid)
        self._gpus.wake()  # in case this worker itself waits for devices: it no longer needs them
        self._kick()

    def crash(self) -> None:
        """The node died: SIGKILL the processes, let go of what the pod held here, write nothing more (no
        status, no events, no deletion). The agent forgets the worker; `finalized` says when it is done."""
        self._crashed = True
        self._gpus.wake()
        self._kick()

    def stop(self) -> None:
        self._stopping = True
        self._gpus.wake()
        self._kick()

    def join(self, timeout: float | None = None) -> None:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _kick(self) -> None:
        with self._lock:
            self._wake.set()
            if self._thread is None and self._needs_thread():
                self._thread = threading.Thread(target=self._run, name=f"pod-{self.uid[:8]}", daemon=True)
                self._thread.start()

    def _needs_thread(self) -> bool:
        if self._finalized:
            return False
        if self._stopping or self._crashed:
            return self._sandbox is not None or any(s.process for s in self._slots)
        return (
            self._gone or not self._finished or self._dirty or (ps.is_deleting(self._pod) and not self._deletion_sent)
        )

    # -- the worker thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            try:
                self._step_until_idle()
            except Exception as exc:  # one bad pod must not take the agent down
                if self._crashed:
                    with contextlib.suppress(Exception):
                        self._stop_processes(0.0)
                        self._release()
                    self._finalized = True
                    with self._lock:
                        self._thread = None
                    return
                log.exception("pod %s failed in the node agent", self._name())
                self._fail_hard(exc)
                self._wake.wait(1.0)  # what failed may be retried (a delete, say): not in a hot loop
            with self._lock:
                if not self._needs_thread() or self._stopping:
                    self._thread = None
                    return

    def _current(self) -> Mapping[str, Any]:
        with self._lock:
            return self._pod

    def _name(self) -> str:
        meta = self._pod["metadata"]
        return f"{meta.get('namespace')}/{meta.get('name')}"

    def _step_until_idle(self) -> None:
        while True:
            pod = self._current()
            self._wake.clear()
            if self._crashed:
                self._stop_processes(0.0)  # a power cut: no SIGTERM, no grace
                self._release()
                self._runtime.release_pod(pod)
                self._finalized = True
                return
            if self._stopping:
                grace = min(ps.deletion_grace(pod), self._settings.shutdown_grace)
                self._stop_processes(grace)
                self._release()
                return
            if self._gone:
                self._stop_processes(ps.deletion_grace(pod))
                self._release()
                self._runtime.release_pod(pod)
                self._finalized = True
                return
            if ps.is_deleting(pod):
                if not self._deletion_sent:
                    self._finish_deletion(pod)
                return
            if not self._admitted:
                self._admit(pod)
            if not self._finished:
                self._advance(pod)
            self._report(pod)
            if self._finished:
                # After the report: the terminal status must not wait for the sandbox's teardown.
                self._release()
                if not self._dirty:
                    return
            self._wake.wait(1.0 if self._finished else self._next_timeout())  # finished: retry the write

    def _admit(self, pod: Mapping[str, Any]) -> None:
        """First sight: rebuild container records from the API status (a previous agent may have run
        this pod) and decide what is left to do. Devices and the sandbox are taken lazily, at the first
        launch, so a pod with nothing left to run holds neither."""
        self._admitted = True
        status, spec = pod.get("status") or {}, pod["spec"]
        if ps.is_terminal(pod):
            self._finished = True  # already decided, by us earlier or by someone else
            self._last_sent = dict(status)
            return
        now = ps.now_utc()
        for key, init in (("initContainers", True), ("containers", False)):
            previous = {c.get("name"): c for c in status.get(f"{key[:-1]}Statuses") or []}
            for container in spec.get(key) or []:
                before = previous.get(container["name"]) or {}
                record = ps.adopt_record(container, before, now)
                slot = _Slot(spec=container, init=init, record=record, ran_before="containerID" in before)
                if isinstance(record.state, ps.Terminated):
                    slot.ran_before = True
                    self._after_exit(pod, slot, record.state)
                self._slots.append(slot)
        self._start_time = ps.parse_time(status.get("startTime")) or now
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None:
            elapsed = (now - self._start_time).total_seconds()
            self._deadline_at = time.monotonic() + float(deadline) - elapsed

    def _advance(self, pod: Mapping[str, Any]) -> None:
        self._poll_exits(pod)
        if self._deadline_at is not None and time.monotonic() >= self._deadline_at and self._failure is None:
            self._stop_processes(ps.deletion_grace(pod))
            self._failure = ("DeadlineExceeded", "Pod was active on the node longer than the specified deadline")
        if self._failure is None:
            self._start_due(pod)
        if ps.derive_phase(self._view(pod)) in ps.TERMINAL_PHASES:
            self._gpus.release(self.uid)  # free the moment the processes are dead; the rest after the report
            self._finished = True

    def _poll_exits(self, pod: Mapping[str, Any]) -> None:
        for slot in self._slots:
            if slot.process is None:
                continue
            code = slot.process.poll()
            if code is None:
                continue
            slot.process = None
            started = slot.record.state.started_at if isinstance(slot.record.state, ps.Running) else None
            self._after_exit(pod, slot, ps.Terminated(code, started, ps.now_utc(), message=self._message(slot, code)))

    def _after_exit(self, pod: Mapping[str, Any], slot: _Slot, term: ps.Terminated) -> None:
        """Apply the restart policy to an exit: wait out a growing back-off, or stay terminated."""
        policy = pod["spec"].get("restartPolicy") or "Always"
        if not ps.should_restart(policy, term.exit_code, slot.init):
            slot.record = replace(slot.record, state=term)
            return
        if slot.started_mono and time.monotonic() - slot.started_mono >= self._settings.backoff_reset_after:
            slot.backoff = 0.0
        delay = self._next_backoff(slot)
        message = f"back-off {delay:g}s restarting failed container={slot.spec['name']} pod={pod['metadata']['name']}"
        slot.record = replace(slot.record, state=ps.Waiting("CrashLoopBackOff", message), last_terminated=term)
        slot.due_at = time.monotonic() + delay
        self._api.event(pod, slot.spec["name"], True, "BackOff", "Back-off restarting failed container")

    def _next_backoff(self, slot: _Slot) -> float:
        s = self._settings
        slot.backoff = s.backoff_initial if slot.backoff <= 0 else min(slot.backoff * 2, s.backoff_max)
        return slot.backoff

    def _start_due(self, pod: Mapping[str, Any]) -> None:
        """Init containers one at a time, in order; app containers all together once they are done."""
        now = time.monotonic()
        for slot in (s for s in self._slots if s.init and not s.record.succeeded):
            if slot.startable and slot.due_at <= now:
                self._launch(pod, slot)
            return
        for slot in self._slots:
            if not slot.init and slot.startable and slot.due_at <= now:
                self._launch(pod, slot)

    def _ensure_sandbox(self, pod: Mapping[str, Any]) -> PodSandbox:
        if self._sandbox is None:
            devices = self._gpus.allocate(
                self.node,
                self.uid,
                pod["spec"],
                wait=self._settings.gpu_admission_wait,
                give_up=lambda: self._gone or self._stopping,
            )
            self._devices = devices.per_container
            self._sandbox = self._runtime.open_sandbox(pod)
            self._pod_ip = self._sandbox.ip
        return self._sandbox

    def _launch(self, pod: Mapping[str, Any], slot: _Slot) -> None:
        meta, name = pod["metadata"], slot.spec["name"]
        log_path = agent_log_path(self._settings.state_dir, meta["namespace"], meta["name"], self.uid, name)
        hostname = pod["spec"].get("hostname") or meta["name"]
        defaults = {"PATH": self._settings.pod_path, "HOSTNAME": hostname}
        try:
            sandbox = self._ensure_sandbox(pod)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            launch = self._runtime.container_launch(
                pod,
                slot.spec,
                sandbox,
                defaults=defaults,
                overrides=gpu_env(self._devices.get(name, ())),
                log_path=log_path,
            )
        except GpuUnavailableError as exc:
            self._failure = ("UnexpectedAdmissionError", f"Allocate failed: {exc}")
            return
        except ContainerConfigError as exc:
            slot.record = replace(slot.record, state=ps.Waiting(exc.reason, str(exc)))
            slot.due_at = time.monotonic() + self._next_backoff(slot)
            self._api.event(pod, name, True, "Failed", f"Error: {exc}")
            return
        launch = self._with_message_file(slot, launch)
        restarts = slot.record.restart_count + (1 if slot.ran_before else 0)
        slot.ran_before = True
        slot.started_mono = time.monotonic()
        try:
            process = sandbox.launch(launch)
        except (OSError, ValueError) as exc:  # what a runtime reports as StartError (exit 128)
            slot.record = replace(slot.record, restart_count=restarts)
            term = ps.Terminated(128, None, ps.now_utc(), "StartError", f"failed to start container {name!r}: {exc}")
            self._after_exit(pod, slot, term)
            return
        slot.process = process
        slot.record = replace(slot.record, state=ps.Running(ps.now_utc()), restart_count=restarts, pid=process.pid)
        process.notify_exit(self._kick)
        self._api.event(pod, name, False, "Started", f"Started container {name}")
        self._journal.record(pod, {s.spec["name"]: s.process.pid for s in self._slots if s.process})

    def _next_timeout(self) -> float:
        """Until the next back-off or the deadline; exits wake the worker themselves."""
        timeout = IDLE_RECHECK_SECONDS
        now = time.monotonic()
        for slot in self._slots:
            if slot.startable and slot.due_at > now:
                timeout = min(timeout, slot.due_at - now)
        if self._deadline_at is not None:
            timeout = min(timeout, max(self._deadline_at - now, 0.0))
        return max(timeout, 0.005)

    def _stop_processes(self, grace: float) -> None:
        running = [s for s in self._slots if s.process is not None]
        codes = terminate_all([s.process for s in running if s.process is not None], grace)
        now = ps.now_utc()
        for slot, code in zip(running, codes, strict=True):
            started = slot.record.state.started_at if isinstance(slot.record.state, ps.Running) else None
            slot.record = replace(
                slot.record, state=ps.Terminated(code, started, now, message=self._message(slot, code))
            )
            slot.process = None

    @staticmethod
    def _message(slot: _Slot, exit_code: int) -> str:
        """The exited run's termination message (file, or log tail under FallbackToLogsOnError)."""
        spec = termination.message_spec(slot.spec)
        return termination.read_message(slot.message_file, spec, exit_code, slot.log_path)

    @staticmethod
    def _with_message_file(slot: _Slot, launch: ContainerLaunch) -> ContainerLaunch:
        """`launch` with this run's fresh termination message file (see `bind_message_file`); the slot
        remembers where to read the message back when the run exits."""
        slot.log_path = launch.log_path
        launch, slot.message_file = termination.bind_message_file(slot.spec, launch)
        return launch

    def _release(self) -> None:
        """Give back the devices, then the sandbox (processes are stopped by now); keep the pod IP in status
        as a kubelet does for finished pods. Devices first: they are free the moment the processes are dead,
        and a pod waiting for them should not also wait for the network and volume teardown. Idempotent."""
        self._gpus.release(self.uid)
        if self._sandbox is not None:
            sandbox, self._sandbox = self._sandbox, None
            sandbox.close()
            self._journal.forget(self.uid)

    def _view(self, pod: Mapping[str, Any]) -> ps.PodView:
        return ps.PodView(
            restart_policy=pod["spec"].get("restartPolicy") or "Always",
            init_containers=[s.record for s in self._slots if s.init],
            containers=[s.record for s in self._slots if not s.init],
            host_ip=self._settings.host_ips.get(self.node, "127.0.0.1"),
            pod_ip=self._pod_ip,
            start_time=self._start_time,
            failure=self._failure,
        )

    def _report(self, pod: Mapping[str, Any]) -> None:
        if self._crashed:
            return  # a dead node writes nothing
        if not self._slots and self._failure is None:
            return  # a pod first seen terminal: nothing of ours to say
        previous = (self._last_sent or pod.get("status") or {}).get("conditions") or []
        desired = ps.derive_pod_status(self._view(pod), previous, ps.now_utc())
        if ps.status_patch(self._last_sent, desired) is None:
            return
        try:
            self._api.patch_status(pod, desired)
        except PodGoneError:
            self._gone = True
            return
        except Exception:
            log.warning("status update for pod %s failed; will retry", self._name(), exc_info=True)
            self._dirty = True
            return
        self._last_sent, self._dirty = desired, False

    def _finish_deletion(self, pod: Mapping[str, Any]) -> None:
        for slot in self._slots:
            if slot.process is not None:
                self._api.event(pod, slot.spec["name"], False, "Killing", f"Stopping container {slot.spec['name']}")
        self._stop_processes(ps.deletion_grace(pod))
        self._release()
        self._finished = True
        self._report(pod)  # the final exit codes, for whoever watches the pod go
        with contextlib.suppress(PodGoneError):
            self._api.finish_deletion(pod)
        self._deletion_sent = True

    def _fail_hard(self, exc: BaseException) -> None:
        self._failure = ("AgentError", f"the trainsmart node agent could not run this pod: {exc}")
        try:
            self._stop_processes(ps.MIN_GRACE_SECONDS)
            self._release()
        except Exception:
            log.exception("cleaning up pod %s failed", self._name())
        self._finished = True
        self._report(self._current())
