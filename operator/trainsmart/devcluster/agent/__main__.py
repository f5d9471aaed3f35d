"""`python -m trainsmart.devcluster.agent`: run the node agent until SIGTERM or SIGINT.

Example: `python -m trainsmart.devcluster.agent --kubeconfig K --nodes 2 --gpus-per-node 4 --state-dir D`.
On SIGTERM it stops cleanly: every pod's processes get SIGTERM (then SIGKILL after a short grace), sandboxes
are released, and the exit code is 0. Container logs stay under `<state-dir>/logs/`.

GPU nodes carry the `nvidia.com/gpu=present:NoSchedule` taint, so pods need the matching toleration;
`--cpu-nodes` adds untainted nodes without GPUs for everything else. Images are ignored: commands run on
the host's filesystem (see `pod_worker.py` for the limits of the simulation).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from trainsmart.devcluster.agent.agent import (
    AgentConfig,
    NodeAgent,
    api_client_from_kubeconfig,
    build_default_runtime,
)
from trainsmart.devcluster.agent.nodes import HEARTBEAT_INTERVAL, node_configs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m trainsmart.devcluster.agent",
        description="Register simulated GPU nodes and run the pods bound to them as local processes.",
    )
    parser.add_argument("--kubeconfig", required=True, type=Path, help="admin kubeconfig of the cluster")
    parser.add_argument("--state-dir", required=True, type=Path, help="logs, pids and the lock live here")
    parser.add_argument("--nodes", type=int, default=2, help="how many nodes to register (default 2)")
    parser.add_argument("--gpus-per-node", type=int, default=4, help="nvidia.com/gpu per node (default 4)")
    parser.add_argument("--cpu-nodes", type=int, default=0, help="extra nodes without GPUs or taint (default 0)")
    parser.add_argument("--node-prefix", default="trainsmart-gpu", help="GPU nodes are <prefix>-<i>")
    parser.add_argument("--cpu-node-prefix", default="trainsmart-cpu", help="CPU nodes are <prefix>-<i>")
    parser.add_argument("--cpu", default="16", help="cpu capacity per node (default 16)")
    parser.add_argument("--memory", default="64Gi", help="memory capacity per node (default 64Gi)")
    parser.add_argument("--gpu-product", default="NVIDIA-A100-SXM4-40GB", help="nvidia.com/gpu.product label")
    parser.add_argument("--gpu-memory-mib", type=int, default=40960, help="nvidia.com/gpu.memory label")
    parser.add_argument("--resync-interval", type=float, default=30.0, help="seconds between full relists")
    parser.add_argument(
        "--heartbeat-interval",
        type=float,
        default=HEARTBEAT_INTERVAL,
        help=f"seconds between Lease renewals (default {HEARTBEAT_INTERVAL:g})",
    )
    parser.add_argument(
        "--no-provisioner",
        action="store_true",
        help="do not provision PersistentVolumes for claims (another agent or provisioner does)",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    api = api_client_from_kubeconfig(args.kubeconfig)
    runtime = build_default_runtime(args.state_dir, api)
    shape = {"cpu": args.cpu, "memory": args.memory}
    gpu = {"gpu_product": args.gpu_product, "gpu_memory_mib": args.gpu_memory_mib}
    nodes = node_configs(args.node_prefix, args.nodes, args.gpus_per_node, **shape, **gpu)
    nodes += node_configs(args.cpu_node_prefix, args.cpu_nodes, 0, **shape)
    agent = NodeAgent(
        api,
        AgentConfig(
            state_dir=args.state_dir,
            nodes=nodes,
            heartbeat_interval=args.heartbeat_interval,
            resync_interval=args.resync_interval,
            provision_volumes=not args.no_provisioner,
        ),
        runtime,
    )
    agent.start()  # undoes itself and raises when it cannot finish
    logging.getLogger(__name__).info("node agent ready: nodes %s", ", ".join(sorted(agent.node_names)))
    try:
        stop.wait()
    finally:
        agent.stop()
        api.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
