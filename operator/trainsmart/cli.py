"""The `trainsmart` command. Only argument parsing and output live here; the work is in the modules it
calls, so every command is also usable as a library function."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from trainsmart import __version__


def _state_dir(args: argparse.Namespace) -> Path:
    """--state-dir, else the default, computed only now: the default needs a home directory, which an
    operator container (a uid without a passwd entry, no HOME) does not have, and never needs."""
    from trainsmart.devcluster.devenv import default_state_dir

    return Path(args.state_dir) if args.state_dir else default_state_dir()


def _dev_options(args: argparse.Namespace) -> object:
    from trainsmart.devcluster.devenv import DevOptions

    return DevOptions(
        state_dir=_state_dir(args), nodes=args.nodes, gpus_per_node=args.gpus_per_node, cpu_nodes=args.cpu_nodes
    )


def _cmd_dev(args: argparse.Namespace) -> int:
    from trainsmart.devcluster import devenv
    from trainsmart.devcluster.binaries import ensure_binaries

    state_dir = _state_dir(args)
    if args.dev_command == "provision":
        found = ensure_binaries(lambda msg: print(msg, flush=True))
        print(f"control-plane binaries ({found.source}):")
        for name in ("etcd", "kube_apiserver", "kube_scheduler", "kube_controller_manager"):
            print(f"  {name.replace('_', '-'):<24} {getattr(found, name)}")
        return 0
    if args.dev_command == "up":
        try:
            state = devenv.up(_dev_options(args))  # type: ignore[arg-type]
        except RuntimeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"dev cluster running at {state['server']} with {state['nodes']} nodes x {state['gpusPerNode']} GPUs")
        print(f"kubeconfig: {state['kubeconfig']}")
        print(f"export KUBECONFIG={state['kubeconfig']}")
        return 0
    if args.dev_command == "serve":
        return devenv.serve(_dev_options(args))  # type: ignore[arg-type]
    if args.dev_command == "status":
        print("\n".join(devenv.status_lines(state_dir)))
        return 0 if devenv.read_state(state_dir) is not None else 3
    if args.dev_command == "logs":
        files = devenv.log_files(state_dir, args.namespace, args.pod)
        if not files:
            print(f"no logs for pod {args.namespace}/{args.pod}", file=sys.stderr)
            return 1
        if args.container is None and len(files) > 1:
            print(f"pod has several containers, choose one with -c: {', '.join(files)}", file=sys.stderr)
            return 1
        path = files[args.container] if args.container else next(iter(files.values()))
        sys.stdout.write(path.read_text(errors="replace"))
        return 0
    if args.dev_command == "node":
        if devenv.read_state(state_dir) is None:
            print("no dev cluster is running", file=sys.stderr)
            return 1
        try:
            devenv.set_node_down(state_dir, args.node, args.action == "down")
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        what = "down: heartbeats stop, its pods' processes are killed" if args.action == "down" else "up (rebooted)"
        print(f"node {args.node} {what}")
        return 0
    if args.dev_command == "down":
        print("dev cluster stopped" if devenv.down(state_dir) else "no dev cluster was running")
        return 0
    raise AssertionError(args.dev_command)


def _cmd_operator(args: argparse.Namespace) -> int:
    from trainsmart.malloc_arenas import cap_malloc_arenas

    cap_malloc_arenas()  # first, before any import or the event loop starts a thread
    import kopf

    from trainsmart.main import register_operator
    from trainsmart.operator_config import OperatorConfigError, operator_options, peering_priority

    priority = peering_priority(args)
    try:
        options = operator_options(args, priority)
    except OperatorConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    registry = kopf.OperatorRegistry()
    register_operator(registry, options)
    namespaces = options.settings.namespaces
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    kopf.run(
        registry=registry,
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
    )
    return 0


def _add_operator_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from trainsmart.operator_config import add_operator_arguments, apply_environment

    op = commands.add_parser(
        "operator",
        help="run the operator (controllers, report endpoint, admission webhook)",
        description="Every flag --some-flag also reads TRAINSMART_OPERATOR_SOME_FLAG from the environment; "
        "a flag given here wins.",
    )
    add_operator_arguments(op)
    apply_environment(op, os.environ)
    op.set_defaults(func=_cmd_operator)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainsmart", description=__doc__)
    parser.add_argument("--version", action="version", version=f"trainsmart {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="a local cluster with simulated GPU nodes")
    dev_commands = dev.add_subparsers(dest="dev_command", required=True)
    for name, help_text in (
        ("provision", "find or build the control-plane binaries and print where they are"),
        ("up", "start the local cluster (control plane + node agent) in the background"),
        ("serve", "run the local cluster in the foreground (what `up` starts)"),
        ("status", "show the running local cluster and its GPU nodes"),
        ("logs", "print a pod's container log (the stand-in for kubectl logs)"),
        ("node", "take a simulated node down (as a machine that fails) or bring it up (rebooted)"),
        ("down", "stop the local cluster"),
    ):
        sub = dev_commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--state-dir",
            default=None,
            help="where the cluster keeps its state (default: $XDG_STATE_HOME/trainsmart/dev)",
        )
        if name in ("up", "serve"):
            sub.add_argument("--nodes", type=int, default=2, help="simulated GPU nodes (default 2)")
            sub.add_argument("--gpus-per-node", type=int, default=4, help="nvidia.com/gpu per node (default 4)")
            sub.add_argument("--cpu-nodes", type=int, default=1, help="untainted nodes without GPUs (default 1)")
        if name == "logs":
            sub.add_argument("pod", help="pod name")
            sub.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
            sub.add_argument("-c", "--container", default=None, help="container name")
        if name == "node":
            sub.add_argument("action", choices=("down", "up"), help="down: heartbeats stop, pods die; up: reboot")
            sub.add_argument("node", help="node name, e.g. trainsmart-gpu-1")
    dev.set_defaults(func=_cmd_dev)
    _add_operator_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
