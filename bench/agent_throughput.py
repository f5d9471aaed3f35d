"""Node agent throughput under a burst of short pods (issue 13, "Local cluster throughput"), printed per burst:

- pods/s the agent starts: burst size / (last pod seen Running - first create call),
- pods/s the agent finishes: burst size / (last pod seen Succeeded - first process exit),
- exit -> Succeeded latency, p50/p95/max: from the moment a pod's command exited (it writes the time
  into its termination message as its last act) to the moment a watch saw the pod Succeeded,
- agent CPU seconds per pod (the agent process's own user+system time over the burst; the tools and
  containers it runs are children and not counted), and the most zombie children seen under the agent
  during the burst and after it.

Pods are bare (no operator), `restartPolicy: Never`, created directly through the API by a few threads
against a real control plane and one agent subprocess (CPU nodes, 110 pods each). Each pod runs
`sh -c 'sleep S; date +%s.%N >/dev/termination-log'`.

Usage: python bench/agent_throughput.py [--bursts 100 300] [--sleep 2] [--agent-cmd-extra ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config

from trainsmart.devcluster.controlplane import ControlPlane

CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def cpu_seconds(pid: int) -> float:
    """The process's own user + system time (all its threads), without its children's."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def zombie_children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] == "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def pod_body(name: str, sleep: float) -> dict[str, Any]:
    script = f"sleep {sleep}; date +%s.%N >/dev/termination-log"
    container = {"name": "main", "image": "busybox", "command": ["sh", "-c", script]}
    spec = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [container]}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": "burst"}}, "spec": spec}


class PodObserver:
    """One raw watch on the namespace: when each pod was first seen Running and Succeeded/Failed."""

    def __init__(self, core: client.CoreV1Api, ns: str) -> None:
        self.core, self.ns = core, ns
        self.running: dict[str, float] = {}
        self.finished: dict[str, tuple[float, str, str]] = {}  # name -> (seen, phase, termination message)
        self._resp: Any = None
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()

    def _loop(self) -> None:
        version = json.loads(self.core.list_namespaced_pod(self.ns, _preload_content=False).data)["metadata"][
            "resourceVersion"
        ]
        while True:
            resp = self.core.list_namespaced_pod(
                self.ns, watch=True, resource_version=version, timeout_seconds=600, _preload_content=False
            )
            self._resp = resp
            buffer = b""
            try:
                for chunk in resp.stream(amt=None, decode_content=False):
                    buffer += chunk
                    while b"\n" in buffer:
                        line, buffer = buffer.split(b"\n", 1)
                        if line.strip():
                            version = self._seen(json.loads(line)) or version
            except Exception:
                return

    def _seen(self, event: dict[str, Any]) -> str | None:
        now = time.time()
        pod = event.get("object") or {}
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        name, phase = str(meta.get("name")), status.get("phase")
        if phase in ("Running", "Succeeded", "Failed"):
            self.running.setdefault(name, now)
        if phase in ("Succeeded", "Failed") and name not in self.finished:
            states = [c.get("state") or {} for c in status.get("containerStatuses") or []]
            message = ((states[0].get("terminated") or {}).get("message") or "") if states else ""
            self.finished[name] = (now, phase, message.strip())
        return meta.get("resourceVersion")


def run_burst(core: client.CoreV1Api, agent_pid: int, count: int, sleep: float, tag: str) -> None:
    ns = f"burst-{tag}"
    core.create_namespace({"metadata": {"name": ns}})
    observer = PodObserver(core, ns)
    observer.start()
    time.sleep(0.5)
    cpu0 = cpu_seconds(agent_pid)
    zombies_max = 0
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(
            pool.map(
                lambda i: core.create_namespaced_pod(ns, pod_body(f"p{i:04d}", sleep), _preload_content=False),
                range(count),
            )
        )
    created_s = time.time() - t0
    deadline = time.monotonic() + 120 + count * 1.0
    while len(observer.finished) < count and time.monotonic() < deadline:
        zombies_max = max(zombies_max, len(zombie_children(agent_pid)))
        time.sleep(0.5)
    cpu = cpu_seconds(agent_pid) - cpu0
    wall = time.time() - t0
    time.sleep(1.0)
    zombies_after = len(zombie_children(agent_pid))
    observer.stop()

    done = observer.finished
    failed = sum(1 for _, phase, _ in done.values() if phase != "Succeeded")
    exits = {n: float(m) for n, (_, _, m) in done.items() if m.replace(".", "", 1).isdigit()}
    latency = [done[n][0] - exits[n] for n in exits]
    print(f"burst of {count} pods (sleep {sleep:g}s), created in {created_s:.1f}s, all done in {wall:.1f}s:")
    if len(observer.running) < count or len(done) < count:
        print(f"  INCOMPLETE: {len(observer.running)} seen running, {len(done)} finished within the deadline")
    if observer.running:
        start_rate = len(observer.running) / (max(observer.running.values()) - t0)
        print(f"  started (create -> Running):     {start_rate:6.1f} pods/s")
    if exits:
        finish_rate = len(exits) / (max(s for s, _, _ in done.values()) - min(exits.values()))
        print(f"  finished (exit -> Succeeded):    {finish_rate:6.1f} pods/s")
        print(
            f"  exit -> Succeeded seen:          p50 {percentile(latency, 50):.2f}s, "
            f"p95 {percentile(latency, 95):.2f}s, max {max(latency):.2f}s over {len(latency)} pods"
        )
    print(
        f"  agent CPU:                       {cpu:.1f}s ({cpu / count * 1000:.0f} ms/pod, {cpu / wall:.0%} of a core)"
    )
    print(f"  zombie children of the agent:    max {zombies_max} during, {zombies_after} after")
    print(f"  end to end:                      {count / wall:.2f} jobs/s" + (f", {failed} failed" if failed else ""))
    core.delete_namespace(ns)
    # Let the agent forget the pods before the next burst (namespace deletion removes them).
    gone_deadline = time.monotonic() + 120
    while time.monotonic() < gone_deadline:
        if not json.loads(core.list_namespaced_pod(ns, limit=1, _preload_content=False).data)["items"]:
            break
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bursts", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each pod's command sleeps")
    parser.add_argument("--nodes", type=int, default=4, help="CPU nodes (110 pods each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trainsmart-bench-") as tmp, ControlPlane() as cp:
        out = (Path(tmp) / "agent.out").open("wb")
        argv = [sys.executable, "-m", "trainsmart.devcluster.agent", "--kubeconfig", str(cp.admin_kubeconfig)]
        argv += ["--state-dir", str(Path(tmp) / "agent"), "--nodes", "0", "--cpu-nodes", str(args.nodes)]
        argv += ["--cpu-node-prefix", "bench-cpu"]
        agent = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        api = config.new_client_from_config(config_file=str(cp.admin_kubeconfig))
        api.configuration.connection_pool_maxsize = 16
        try:
            core = client.CoreV1Api(api)
            _wait_nodes(core, args.nodes)
            for i, count in enumerate(args.bursts):
                run_burst(core, agent.pid, count, args.sleep, f"{i}-{count}")
        finally:
            api.close()
            agent.terminate()
            agent.wait(60)
            out.close()
            warnings = [ln for ln in (Path(tmp) / "agent.out").read_text().splitlines() if " WARNING " in ln]
            if warnings:
                print(f"agent warnings ({len(warnings)}), first: {warnings[0]}")


def _wait_nodes(core: client.CoreV1Api, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        nodes = core.list_node().items
        ready = [n for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])]
        if len(ready) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError("nodes never became Ready")


if __name__ == "__main__":
    main()
