"""The node agent's I/O besides node registration: the writes a kubelet makes about a pod (status, the
final delete, Events), list+watch, the pid journal and the container log files in the state dir. Kept
apart from `agent.py` (wiring) and `pod_worker.py` (decisions); everything here is thin.

Requests go through the generated client with `_preload_content=False` and plain JSON dicts: the agent
reads and writes whole objects as the kubelet's status manager does, and skipping the client's model
(de)serialisation keeps the per-pod overhead to the milliseconds that pod-to-Running latency is made of.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from trainsmart.devcluster.agent.nodes import STRATEGIC
from trainsmart.devcluster.agent.podstatus import build_event

log = logging.getLogger(__name__)


# -- what a pod worker writes, and where its logs go --------------------------------------------------------


class PodApi(Protocol):
    """The writes a kubelet makes about a pod."""

    def patch_status(self, pod: Mapping[str, Any], status: Mapping[str, Any]) -> None: ...

    def finish_deletion(self, pod: Mapping[str, Any]) -> None: ...

    def event(self, pod: Mapping[str, Any], container: str, warning: bool, reason: str, message: str) -> None:
        """Best effort and asynchronous: `kubectl describe pod` context, never on the critical path."""


class PodGoneError(RuntimeError):
    """The pod object no longer exists (or was replaced by one with another UID)."""


def agent_log_path(state_dir: Path, namespace: str, pod_name: str, pod_uid: str, container: str) -> Path:
    """Where a container's stdout and stderr go (appended across restarts). The stand-in for
    `kubectl logs`, which needs a kubelet server this agent does not have."""
    return state_dir / "logs" / f"{namespace}_{pod_name}_{pod_uid}" / f"{container}.log"


def pod_log_paths(state_dir: Path, namespace: str, pod_name: str) -> dict[str, Path]:
    """Container name -> log file of the most recent pod of that name (pods are re-created under the same
    name with a new UID; the UID is what a user does not know)."""
    runs = sorted((state_dir / "logs").glob(f"{namespace}_{pod_name}_*"), key=lambda d: d.stat().st_mtime)
    runs = [d for d in runs if d.name.count("_") >= 2 and d.name.rsplit("_", 1)[0] == f"{namespace}_{pod_name}"]
    return {f.stem: f for f in sorted(runs[-1].glob("*.log"))} if runs else {}


class PidJournal(Protocol):
    """Where running pids are recorded, so the next agent instance can kill what this one leaves."""

    def record(self, pod: Mapping[str, Any], pids: Mapping[str, int]) -> None: ...

    def forget(self, pod_uid: str) -> None: ...


def api_client_from_kubeconfig(path: Path) -> client.ApiClient:
    """An API client with a connection pool sized for the agent: every pod worker may write at once, and
    the default pool (a handful of connections) would open and drop sockets under a burst of pods."""
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=str(path), client_configuration=configuration)
    configuration.connection_pool_maxsize = 64
    return client.ApiClient(configuration)


# -- state dir: pids of running containers ---------------------------------------------------------------


def _start_ticks(pid: int) -> str | None:
    """The process start time in clock ticks: with the pid, an identity that survives pid reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


class FileJournal:
    """One JSON file per pod under `<state>/pids/`, rewritten at each launch, removed at release."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir / "pids"
        self._dir.mkdir(parents=True, exist_ok=True)

    def record(self, pod: Mapping[str, Any], pids: Mapping[str, int]) -> None:
        meta = pod["metadata"]
        entry = {
            "namespace": meta.get("namespace"),
            "name": meta.get("name"),
            "uid": meta["uid"],
            "processes": {name: {"pid": pid, "start": _start_ticks(pid)} for name, pid in pids.items()},
        }
        tmp = self._dir / f"{meta['uid']}.json.tmp"
        tmp.write_text(json.dumps(entry))
        tmp.replace(self._dir / f"{meta['uid']}.json")

    def forget(self, pod_uid: str) -> None:
        (self._dir / f"{pod_uid}.json").unlink(missing_ok=True)

    def kill_leftovers(self) -> int:
        """SIGKILL every recorded process that is still the same process (and its process group, when it
        leads one); returns how many were killed."""
        killed = 0
        for path in sorted(self._dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError):
                for proc in json.loads(path.read_text())["processes"].values():
                    pid = int(proc["pid"])
                    if proc.get("start") is None or _start_ticks(pid) != proc["start"]:
                        continue
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        if os.getpgid(pid) == pid:
                            os.killpg(pid, signal.SIGKILL)
                        else:
                            os.kill(pid, signal.SIGKILL)
                        killed += 1
            path.unlink(missing_ok=True)
        return killed


# -- the two pod writes ------------------------------------------------------------------------------------


class KubePodApi:
    """Status patches and the final delete, both guarded by the pod's UID so that a pod re-created under
    the same name is never touched by the worker of its predecessor; Events from a background thread."""

    def __init__(self, api: client.ApiClient) -> None:
        self._core = client.CoreV1Api(api)
        self._events = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pod-events")

    def event(self, pod: Mapping[str, Any], container: str, warning: bool, reason: str, message: str) -> None:
        body = build_event(pod, container, warning, reason, message, datetime.now(UTC))
        with contextlib.suppress(RuntimeError):  # shut down: the agent is stopping
            self._events.submit(self._send_event, body)

    def _send_event(self, body: dict[str, Any]) -> None:
        try:
            self._core.create_namespaced_event(body["metadata"]["namespace"], body, _preload_content=False)
        except Exception as exc:  # best effort: a lost event must not disturb the pod
            log.debug("event %s not recorded: %s", body["reason"], exc)

    def close(self) -> None:
        self._events.shutdown(wait=True, cancel_futures=True)

    def patch_status(self, pod: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        body = {"metadata": {"uid": meta["uid"]}, "status": dict(status)}
        try:
            self._core.patch_namespaced_pod_status(
                meta["name"], meta["namespace"], body, _content_type=STRATEGIC, _preload_content=False
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                raise PodGoneError(f"pod {meta['namespace']}/{meta['name']} is gone") from exc
            raise

    def finish_deletion(self, pod: Mapping[str, Any]) -> None:
        meta = pod["metadata"]
        options = client.V1DeleteOptions(grace_period_seconds=0, preconditions=client.V1Preconditions(uid=meta["uid"]))
        try:
            self._core.delete_namespaced_pod(meta["name"], meta["namespace"], body=options, _preload_content=False)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise PodGoneError(f"pod {meta['namespace']}/{meta['name']} is gone") from exc
            raise


# -- list + watch ----------------------------------------------------------------------------------------


class _WatchExpiredError(Exception):
    """The watch's resourceVersion is too old (410 Gone): relist."""


def _iter_lines(resp: Any) -> Iterator[bytes]:
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield line


class ListWatch:
    """List, then watch from the list's resourceVersion until the server ends the stream (after
    `resync` seconds), then list again: every object is seen at least once per interval whatever
    happened to the events. `on_list` gets each full list, `on_event` each ADDED/MODIFIED/DELETED."""

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        on_list: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        resync: float,
        **selectors: str,
    ) -> None:
        self._name, self._list_fn, self._on_list, self._on_event = name, list_fn, on_list, on_event
        self._resync, self._selectors = max(int(resync), 1), selectors
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._resp: Any = None

    def start(self) -> None:
        """The first list happens here, so the caller's state is complete when this returns."""
        version = self.relist()
        self._thread = threading.Thread(target=self._loop, args=(version,), name=f"watch-{self._name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()  # unblocks the read in the watch thread
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def relist(self) -> str:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        while True:
            resp = self._list_fn(limit=500, _continue=cont, _preload_content=False, **self._selectors)
            page = json.loads(resp.data)
            items.extend(page.get("items") or [])
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                break
        self._on_list(items)
        return str(page["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> None:
        resp = self._list_fn(
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=version,
            timeout_seconds=self._resync,
            _preload_content=False,
            _request_timeout=(10, self._resync + 30),
            **self._selectors,
        )
        self._resp = resp
        try:
            for line in _iter_lines(resp):
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise _WatchExpiredError
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_event(kind, obj)
        finally:
            self._resp = None
            resp.release_conn()

    def _loop(self, version: str) -> None:
        failures, relist = 0, False
        while not self._stop.is_set():
            try:
                if relist:
                    version = self.relist()
                self._watch(version)
                relist, failures = True, 0
            except _WatchExpiredError:
                log.info("%s watch expired; relisting", self._name)
                relist = True
            except Exception:
                if self._stop.is_set():
                    return
                failures += 1
                log.warning("%s watch failed (%d in a row); relisting", self._name, failures, exc_info=failures == 1)
                relist = True
                self._stop.wait(min(0.2 * 2**failures, 5.0))


# -- the agent ---------------------------------------------------------------------------------------------
