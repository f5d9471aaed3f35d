"""The node agent under a burst of short pods (issue 13, "Local cluster throughput"): it must not be what a
load test waits on.

Pins, for a burst of BURST bare pods through the real apiserver and scheduler onto an agent of the test's
own (two CPU nodes, so other tests' pods do not count):
- every pod reaches Succeeded;
- each pod is reported terminated promptly after its process exited: the pod writes the time of its
  last act into its termination message, and the watch sees Succeeded within EXIT_REPORT_BOUND of it
  (generous on purpose: this is about queueing behind other pods' work, not about speed);
- exited container processes are reaped promptly: no zombie child of the agent is seen for longer than
  ZOMBIE_BOUND while the burst runs, and none is left afterwards.

The figures (pods/s, latencies, CPU per pod) are `bench/agent_throughput.py`'s business.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client

if TYPE_CHECKING:
    from tests.e2e.conftest import AgentStarter

pytestmark = pytest.mark.e2e

# Big enough that work proportional to the pods on the node, done per pod start or finish (a hosts-file
# refresh of every pod under the sandbox manager's lock, a zombie waiting for its worker's next poll),
# shows: before the fix, the later pods of a 120-pod burst were reported 15-25 s after their exit.
BURST = 120
EXIT_REPORT_BOUND = 10.0  # seconds from a pod's process exit to Succeeded seen through a watch
ZOMBIE_BOUND = 3.0  # seconds an exited child of the agent may stay unreaped


def zombie_children(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] == "Z" and int(fields[1]) == pid:
                    found.add(int(entry))
    return found


class ZombieWatch:
    """Samples the agent's zombie children; remembers how long each one was seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.first_seen: dict[int, float] = {}
        self.longest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ZombieWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            zombies = zombie_children(self.pid)
            self.first_seen = {z: self.first_seen.get(z, now) for z in zombies}
            self.longest = max([self.longest, *(now - t for t in self.first_seen.values())])


def burst_pod(name: str, nodes: tuple[str, ...]) -> dict[str, Any]:
    script = "sleep 0.2; date +%s.%N >/dev/termination-log"
    container = {"name": "main", "image": "busybox", "command": ["sh", "-c", script]}
    on_nodes = {"key": "kubernetes.io/hostname", "operator": "In", "values": list(nodes)}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [on_nodes]}
    ]}}}  # fmt: skip
    spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "affinity": affinity,
        "containers": [container],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def watch_until_finished(core: client.CoreV1Api, ns: str, count: int, timeout: float) -> dict[str, tuple[float, Any]]:
    """Name -> (wall time the watch saw it Succeeded/Failed, that pod), until `count` pods finished."""
    finished: dict[str, tuple[float, Any]] = {}
    version = json.loads(core.list_namespaced_pod(ns, _preload_content=False).data)["metadata"]["resourceVersion"]
    deadline = time.monotonic() + timeout
    while len(finished) < count and time.monotonic() < deadline:
        resp = core.list_namespaced_pod(
            ns, watch=True, resource_version=version, timeout_seconds=10, _preload_content=False
        )
        try:
            for line in resp:
                if not line.strip():
                    continue
                event = json.loads(line)
                pod = event["object"]
                version = pod["metadata"]["resourceVersion"]
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    finished.setdefault(pod["metadata"]["name"], (time.time(), pod))
                if len(finished) >= count:
                    break
        finally:
            resp.release_conn()
    return finished


def test_a_burst_of_short_pods_is_reported_and_reaped_promptly(
    start_node_agent: AgentStarter, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    core = client.CoreV1Api(api_client)
    agent = start_node_agent(tmp_path / "agent", nodes=0, cpu_nodes=2, prefix=f"burst-{uuid.uuid4().hex[:6]}")
    nodes = agent.node_names
    try:
        with ZombieWatch(agent.process.pid) as zombies:
            watcher = ThreadPoolExecutor(max_workers=1)
            finished_f = watcher.submit(watch_until_finished, core, namespace, BURST, 240.0)
            time.sleep(0.5)  # the watch is open before the first create
            with ThreadPoolExecutor(max_workers=4) as pool:
                names = [f"b{i:03d}" for i in range(BURST)]
                list(pool.map(lambda n: core.create_namespaced_pod(namespace, burst_pod(n, nodes)), names))
            finished = finished_f.result()
            watcher.shutdown()
            time.sleep(1.0)  # any straggling zombie would be seen by now
        left = zombie_children(agent.process.pid)

        phases = {name: pod["status"]["phase"] for name, (_, pod) in finished.items()}
        assert len(phases) == BURST, f"only {len(phases)} of {BURST} pods finished:\n{agent.tail()}"
        assert set(phases.values()) == {"Succeeded"}, phases
        delays = {}
        late = {}
        for name, (seen, pod) in finished.items():
            (status,) = pod["status"]["containerStatuses"]
            exited = float(status["state"]["terminated"]["message"])
            delays[name] = seen - exited
            if seen - exited > EXIT_REPORT_BOUND:
                late[name] = round(seen - exited, 1)
        print(f"exit -> Succeeded seen: max {max(delays.values()):.2f}s; longest zombie {zombies.longest:.2f}s")
        assert not late, f"pods seen Succeeded more than {EXIT_REPORT_BOUND}s after their process exited: {late}"
        assert zombies.longest <= ZOMBIE_BOUND, f"a zombie child of the agent lived {zombies.longest:.1f}s"
        assert not left, f"zombie children left under the agent: {sorted(left)}"
    finally:
        assert agent.stop() == 0, agent.tail()
        for node in nodes:
            core.delete_node(node)
