"""The `trainsmart` command. Only argument parsing and output live here; the work is in the modules it
calls, so every command is also usable as a library function."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

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
    if args.dev_command == "down":
        print("dev cluster stopped" if devenv.down(state_dir) else "no dev cluster was running")
        return 0
    raise AssertionError(args.dev_command)


def _cmd_operator(args: argparse.Namespace) -> int:
    import kopf

    import trainsmart.main  # noqa: F401 - registers the Kopf handlers
    from trainsmart.handlers import OperatorOptions
    from trainsmart.settings import NamespaceMode, OperatorSettings

    namespaces = tuple(args.namespace or ())
    report_port = args.report_port or None
    report_url = args.report_url
    if report_url is None and report_port is not None and args.report_host not in ("0.0.0.0", "::", ""):  # noqa: S104
        report_url = f"http://{args.report_host}:{report_port}/v1/reports"
    try:
        trainer: dict[str, Any] = {}
        if args.trainer_image:
            trainer["trainer_image"] = args.trainer_image
        if args.trainer_command:
            trainer["trainer_command"] = tuple(shlex.split(args.trainer_command))
        settings = OperatorSettings(
            **trainer,
            report_url=report_url,
            namespace_mode=NamespaceMode.LIST if namespaces else NamespaceMode.ALL,
            namespaces=namespaces,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    options = OperatorOptions(
        settings=settings,
        kubeconfig=args.kubeconfig,
        report_host=args.report_host,
        report_port=report_port,
        peering=args.peering,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port or None,
    )
    if args.webhook_port:
        _enable_webhook(args)
    priority = _peering_priority(args)
    if priority is not None and args.pod_name and args.pod_namespace:
        _enable_active_label(args, namespaces, priority)
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.PLAIN)
    kopf.run(
        clusterwide=not namespaces,
        namespaces=namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
        memo=kopf.Memo(options=options),
    )
    return 0


def _enable_active_label(args: argparse.Namespace, namespaces: tuple[str, ...], priority: int) -> None:
    """Label our own pod while this replica acts, so the chart's report Service reaches only it."""
    from trainsmart.handlers.standby import OwnPod, PeeringRef, enable_active_pod_label

    # Replicas share priorities across namespaces, so any watched namespace's peering object decides.
    peering = PeeringRef(args.peering, namespaces[0] if namespaces else None)
    enable_active_pod_label(peering, OwnPod(args.pod_namespace, args.pod_name), priority, kubeconfig=args.kubeconfig)


def _peering_priority(args: argparse.Namespace) -> int | None:
    """The peering priority: given, or random when peering is on (equal priorities pause everyone)."""
    import secrets

    if args.peering_priority is not None:
        return int(args.peering_priority)
    return secrets.randbelow(2**31) + 1 if args.peering else None


def _add_operator_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from trainsmart.handlers.runtime import (
        DEFAULT_METRICS_HOST,
        DEFAULT_METRICS_PORT,
        DEFAULT_REPORT_HOST,
        DEFAULT_REPORT_PORT,
    )

    op = commands.add_parser("operator", help="run the operator (TrainingJob controller and report endpoint)")
    op.add_argument(
        "-n", "--namespace", action="append", help="watch this namespace (repeatable); default: all namespaces"
    )
    op.add_argument("--all-namespaces", action="store_true", help="watch every namespace (the default)")
    op.add_argument("--kubeconfig", default=None, help="kubeconfig file; default: in-cluster, then $KUBECONFIG")
    op.add_argument(
        "--report-host", default=DEFAULT_REPORT_HOST, help=f"report endpoint address (default {DEFAULT_REPORT_HOST})"
    )
    op.add_argument("--report-port", type=int, default=DEFAULT_REPORT_PORT, help="report endpoint port; 0: no endpoint")
    op.add_argument(
        "--report-url",
        default=None,
        help="the endpoint's URL as pods reach it (injected into pods); default: from --report-host/--report-port "
        "when the host is an address pods can reach, else pods send no reports",
    )
    op.add_argument(
        "--metrics-host",
        default=DEFAULT_METRICS_HOST,
        help=f"Prometheus /metrics address (default {DEFAULT_METRICS_HOST})",
    )
    op.add_argument(
        "--metrics-port",
        type=int,
        default=DEFAULT_METRICS_PORT,
        help=f"Prometheus /metrics port (default {DEFAULT_METRICS_PORT}); 0: not served",
    )
    op.add_argument(
        "--trainer-image",
        default=None,
        help="image for jobs that leave spec.trainer.image unset (e.g. a mirror in an air-gapped registry); "
        "default: the packaged trainer image of this release",
    )
    op.add_argument(
        "--trainer-command",
        default=None,
        help="command for jobs that leave spec.trainer.command unset, as one shell-quoted string; "
        "default: python -m trainsmart_trainer",
    )
    op.add_argument("--peering", default=None, help="Kopf peering name (HA standby); default: standalone")
    op.add_argument(
        "--peering-priority",
        type=int,
        default=None,
        help="this replica's peering priority (the highest live one acts, the others stand by); default: random, "
        "so that replicas started from one template never tie (Kopf pauses every replica on a tie)",
    )
    op.add_argument(
        "--pod-name",
        default=os.environ.get("POD_NAME"),
        help="this operator's pod (default $POD_NAME); with --peering and --pod-namespace, the pod is labelled "
        "trainsmart.dev/peering-active=true while this replica acts (the chart's report Service selects it)",
    )
    op.add_argument(
        "--pod-namespace", default=os.environ.get("POD_NAMESPACE"), help="its namespace (default $POD_NAMESPACE)"
    )
    op.add_argument(
        "--liveness-port", type=int, default=0, help="serve Kopf's liveness probe on 0.0.0.0:PORT/healthz; 0: off"
    )
    op.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    _add_webhook_arguments(op)
    op.set_defaults(func=_cmd_operator)


def _add_webhook_arguments(op: argparse.ArgumentParser) -> None:
    import tempfile

    from trainsmart.admission import MANAGED_CONFIGURATION_NAME

    group = op.add_argument_group("admission webhook (validates TrainingJobs and HyperparamSweeps on create/update)")
    group.add_argument("--webhook-port", type=int, default=0, help="HTTPS port of the webhook; 0 (default): no webhook")
    group.add_argument("--webhook-host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")  # noqa: S104
    group.add_argument(
        "--webhook-cert-dir",
        default=str(Path(tempfile.gettempdir()) / "trainsmart-webhook"),
        help="directory with tls.crt, tls.key and ca.crt (e.g. a mounted kubernetes.io/tls Secret); issued there by "
        "our own CA when absent",
    )
    group.add_argument(
        "--webhook-url-host",
        default=None,
        help="host the apiserver calls, https://HOST:PORT/...; default: the listening address, loopback for 0.0.0.0",
    )
    group.add_argument(
        "--webhook-service",
        default=None,
        metavar="NAMESPACE/NAME[:PORT]",
        help="in a cluster: the Service in front of the webhook port, called instead of a URL (port default 443)",
    )
    group.add_argument(
        "--webhook-configuration",
        default=MANAGED_CONFIGURATION_NAME,
        help=f"ValidatingWebhookConfiguration the operator keeps up to date (default {MANAGED_CONFIGURATION_NAME}); "
        "empty: managed elsewhere (needs create/patch on validatingwebhookconfigurations otherwise)",
    )


def _enable_webhook(args: argparse.Namespace) -> None:
    from trainsmart.admission import ServiceRef, enable_admission

    service = None
    if args.webhook_service:
        namespace, _, rest = args.webhook_service.partition("/")
        name, _, port = rest.partition(":")
        if not namespace or not name:
            raise SystemExit(f"error: --webhook-service {args.webhook_service!r}: write NAMESPACE/NAME[:PORT]")
        service = ServiceRef(namespace, name, int(port) if port else 443)
    enable_admission(
        host=args.webhook_host,
        port=args.webhook_port,
        cert_dir=Path(args.webhook_cert_dir),
        url_host=args.webhook_url_host,
        service=service,
        managed=args.webhook_configuration or None,
    )


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
    dev.set_defaults(func=_cmd_dev)
    _add_operator_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
