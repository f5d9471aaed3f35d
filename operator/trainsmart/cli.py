"""The `trainsmart` command. Only argument parsing and output live here; the work is in the modules it
calls, so every command is also usable as a library function."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from trainsmart import __version__

if TYPE_CHECKING:
    from trainsmart.console.access import Cluster, Kind


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


# ---- the console: get, describe, watch, logs, report, tensorboard (trainsmart.console) ------------------

KIND_ALIASES = {
    **dict.fromkeys(("tj", "trainingjob", "trainingjobs", "job", "jobs"), "TrainingJob"),
    **dict.fromkeys(("hps", "sweep", "sweeps", "hyperparamsweep", "hyperparamsweeps"), "HyperparamSweep"),
    **dict.fromkeys(("all", "trainsmart"), None),
}


def _cluster(args: argparse.Namespace) -> Cluster:
    from trainsmart.console import Target, connect

    return connect(Target(args.kubeconfig, args.context), args.namespace)


def _console(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a console command; a `ConsoleError` becomes its message on stderr and its exit code."""

    def run(args: argparse.Namespace) -> int:
        from trainsmart.console import ConsoleError
        from trainsmart.console.report_html import ReportDependencyError

        try:
            return command(args)
        except ConsoleError as error:
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        except ReportDependencyError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130

    return run


def _kind_and_name(args: argparse.Namespace) -> tuple[Kind | None, str | None]:
    words = [w for w in (args.kind, args.name) if w]
    if words and words[0].lower() in KIND_ALIASES:
        return cast("Kind | None", KIND_ALIASES[words[0].lower()]), words[1] if len(words) > 1 else None
    if len(words) > 1:
        raise SystemExit(f"error: unknown kind {words[0]!r}: use tj (TrainingJob), hps (HyperparamSweep) or all")
    return None, words[0] if words else None


def _print_objects(objects: list[dict[str, Any]], output: str) -> None:
    import json

    import yaml

    body = {"apiVersion": "v1", "kind": "List", "items": objects}
    print(json.dumps(body, indent=2) if output == "json" else yaml.safe_dump(body, sort_keys=False), end="\n")


def _cmd_get(args: argparse.Namespace) -> int:
    from trainsmart.console import api
    from trainsmart.console.views import JOB_COLUMNS, JOB_WIDE_COLUMNS, SWEEP_COLUMNS, SWEEP_WIDE_COLUMNS, table

    cluster = _cluster(args)
    kind, name = _kind_and_name(args)
    if name is not None:
        obj = cluster.find(name, cluster.namespace, kind)
        kind, objects = cast("Kind", obj["kind"]), [obj]
    kinds: tuple[Kind, ...] = (kind,) if kind else ("TrainingJob", "HyperparamSweep")
    if args.output in ("json", "yaml"):
        if name is None:
            objects = [
                o for k in kinds for o in cluster.list_objects(k, None if args.all_namespaces else cluster.namespace)
            ]
        _print_objects(objects, args.output)
        return 0
    rows = api.get_rows(cluster, kinds, args.all_namespaces)
    if name is not None:
        rows = {k: [r for r in v if r["NAME"] == name] for k, v in rows.items()}
    printed = False
    for each_kind, each_rows in rows.items():
        if not each_rows:
            continue
        columns: tuple[str, ...] = JOB_COLUMNS if each_kind == "TrainingJob" else SWEEP_COLUMNS
        if args.output == "wide":
            columns += JOB_WIDE_COLUMNS if each_kind == "TrainingJob" else SWEEP_WIDE_COLUMNS
        if args.all_namespaces:
            columns = ("NAMESPACE", *columns)
        if printed:
            print()
        if len(rows) > 1:
            print(f"{each_kind}s:")
        print("\n".join(table(each_rows, columns)))
        printed = True
    if not printed:
        where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
        print(f"no TrainingJobs or HyperparamSweeps in {where}", file=sys.stderr)
    return 0


def _cmd_describe(args: argparse.Namespace) -> int:
    from trainsmart.console import api

    cluster = _cluster(args)
    kind, name = _kind_and_name(args)
    if name is None:
        raise SystemExit("error: describe needs a name: trainsmart describe [tj|hps] NAME")
    print("\n".join(api.describe_lines(cluster, name, kind)))
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    from trainsmart.console.watch import watch

    cluster = _cluster(args)
    obj = cluster.find(args.name, cluster.namespace)
    return watch(cluster, obj["kind"], args.name, cluster.namespace, timeout=args.timeout, tty=args.tty)


def _cmd_logs(args: argparse.Namespace) -> int:
    from trainsmart.console.logs import job_log

    cluster = _cluster(args)
    agent_dir = _state_dir(args) / "agent"
    chunks = job_log(
        cluster,
        cluster.namespace,
        args.name,
        rank=args.rank,
        follow=args.follow,
        container=args.container,
        agent_dir=agent_dir if agent_dir.is_dir() else None,
    )
    for chunk in chunks:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from trainsmart.console import api

    cluster = _cluster(args)
    report = api.report_data(cluster, args.name)
    for path in args.output:
        try:
            api.write_report(report, Path(path))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {path}")
    return 0


def _cmd_tensorboard(args: argparse.Namespace) -> int:
    from trainsmart.console.tensorboard import plan

    cluster = _cluster(args)
    found = plan(cluster, args.name, cluster.namespace, args.port)
    print("\n".join(found.lines()), flush=True)
    if found.command is None or args.print_only:
        return 0
    return subprocess.call(found.command)


def _add_console_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def add(
        name: str, help_text: str, func: Callable[[argparse.Namespace], int], description: str = ""
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=description or help_text)
        sub.add_argument("-n", "--namespace", default=None, help="namespace (default: the context's, else default)")
        sub.add_argument("--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)")
        sub.add_argument("--context", default=None, help="kubeconfig context (default: the current one)")
        sub.set_defaults(func=_console(func))
        return sub

    get = add("get", "list TrainingJobs and HyperparamSweeps (phase, progress, metric, ETA, best trial)", _cmd_get)
    get.add_argument("kind", nargs="?", help="tj | hps | all (default all), or a NAME")
    get.add_argument("name", nargs="?", help="only this object")
    get.add_argument("-A", "--all-namespaces", action="store_true", help="list every namespace")
    get.add_argument(
        "-o", "--output", choices=("wide", "json", "yaml"), default=None, help="more columns, or the objects"
    )

    describe = add(
        "describe",
        "a job or sweep in full: progress, objective, restarts, diagnostics, why it waits, Events",
        _cmd_describe,
    )
    describe.add_argument("kind", nargs="?", help="tj | hps (optional), then NAME")
    describe.add_argument("name", nargs="?", help="the object's name")

    watch = add(
        "watch",
        "live progress bars until the job or sweep ends",
        _cmd_watch,
        "Exit codes: 0 Succeeded, 1 Failed, 2 not found or bad usage, 3 cluster unreachable, 4 forbidden, "
        "5 Suspended, 6 deleted while watched, 7 --timeout reached.",
    )
    watch.add_argument("name", help="a TrainingJob or HyperparamSweep")
    watch.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (exit 7)")
    watch.add_argument(
        "--plain", dest="tty", action="store_const", const=False, default=None, help="plain lines, even on a terminal"
    )

    logs = add("logs", "a replica's trainer log (the API's, or the local cluster's files)", _cmd_logs)
    logs.add_argument("name", help="the TrainingJob")
    logs.add_argument("--rank", type=int, default=0, help="replica index (default 0, the master)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the replica ends")
    logs.add_argument("-c", "--container", default="trainer", help="container (default trainer)")
    logs.add_argument(
        "--state-dir", default=None, help="the local cluster's state dir (default: $XDG_STATE_HOME/trainsmart/dev)"
    )

    report = add(
        "report",
        "learning curves, objective by trial, parameters vs objective, importance: HTML, PNG or JSON",
        _cmd_report,
    )
    report.add_argument("name", help="a HyperparamSweep or TrainingJob")
    report.add_argument(
        "-o", "--output", action="append", required=True, help="report.html, report.png or data.json (repeatable)"
    )

    board = add(
        "tensorboard",
        "TensorBoard over a job's or a sweep's event files (on their checkpoint volumes)",
        _cmd_tensorboard,
    )
    board.add_argument("name", help="a TrainingJob or HyperparamSweep")
    board.add_argument("--port", type=int, default=6006, help="port (default 6006)")
    board.add_argument("--print-only", action="store_true", help="print the command and URL, do not start it")


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
    _add_console_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
