"""`trainsmart logs JOB [--rank N] [-f]`: a replica's trainer log.

Where it comes from: the local cluster's node agent has no kubelet server, so the API cannot serve its
logs (`kubectl logs` fails there); the agent writes each container's output to a file under its state
dir instead. So the pod is found through the API (its name, uid and attempt), then its log is read from
the local cluster's file when this machine has one for exactly that pod (same uid), else through the API
(`pods/log`, as kubectl does). Following a local file stops once the pod has finished and the file has
no more to give.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from trainsmart.api.common import TRAINER_CONTAINER_NAME
from trainsmart.console.access import EXIT_NOT_FOUND, Cluster, ConsoleError
from trainsmart.names import ATTEMPT_LABEL, JOB_NAME_LABEL, REPLICA_INDEX_LABEL

FOLLOW_POLL_SECONDS: Final = 0.5


def replica_pod(pods: Sequence[Mapping[str, Any]], rank: int) -> Mapping[str, Any] | None:
    """Replica `rank`'s pod of the newest attempt (older attempts' pods may still exist)."""
    candidates = [
        p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get(REPLICA_INDEX_LABEL) == str(rank)
    ]

    def attempt(pod: Mapping[str, Any]) -> tuple[int, str]:
        meta = pod.get("metadata") or {}
        label = (meta.get("labels") or {}).get(ATTEMPT_LABEL, "0")
        return (int(label) if str(label).isdigit() else 0, str(meta.get("creationTimestamp", "")))

    return max(candidates, key=attempt, default=None)


def local_log_file(agent_dir: Path | None, pod: Mapping[str, Any], container: str) -> Path | None:
    """The local cluster's log file of exactly this pod (namespace, name, uid), if this machine has it."""
    if agent_dir is None:
        return None
    from trainsmart.devcluster.agent.kubeio import agent_log_path

    meta = pod.get("metadata") or {}
    path = agent_log_path(agent_dir, str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid")), container)
    return path if path.is_file() else None


def _finished(cluster: Cluster, pod: Mapping[str, Any]) -> bool:
    meta = pod.get("metadata") or {}
    job = (meta.get("labels") or {}).get(JOB_NAME_LABEL, "")
    current = next(
        (p for p in cluster.pods(str(meta.get("namespace")), job) if p["metadata"]["uid"] == meta.get("uid")), None
    )
    return current is None or (current.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def _follow_file(cluster: Cluster, pod: Mapping[str, Any], path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while True:
            chunk = file.read(65536)
            if chunk:
                yield chunk
                continue
            if _finished(cluster, pod):
                if rest := file.read():
                    yield rest
                return
            time.sleep(FOLLOW_POLL_SECONDS)


def job_log(
    cluster: Cluster,
    namespace: str,
    job: str,
    *,
    rank: int = 0,
    follow: bool = False,
    container: str = TRAINER_CONTAINER_NAME,
    agent_dir: Path | None = None,
) -> Iterator[bytes]:
    """Replica `rank`'s container log, in chunks (the whole of it; with `follow`, until the pod ends)."""
    cluster.get("TrainingJob", job, namespace)  # a clear "no TrainingJob named ..." first
    pods = cluster.pods(namespace, job)
    pod = replica_pod(pods, rank)
    if pod is None:
        ranks = sorted({(p["metadata"].get("labels") or {}).get(REPLICA_INDEX_LABEL, "?") for p in pods})
        hint = f"it has replicas {', '.join(ranks)}" if ranks else "it has no pods (yet, or no longer)"
        raise ConsoleError(f"TrainingJob {job} has no pod for rank {rank}: {hint}", EXIT_NOT_FOUND)
    path = local_log_file(agent_dir, pod, container)
    if path is not None:
        return _follow_file(cluster, pod, path) if follow else iter([path.read_bytes()])
    return cluster.pod_log(namespace, pod["metadata"]["name"], container, follow=follow)
