"""`trainsmart operator`'s flags, and the same settings from the environment: both -> `OperatorOptions`.

One parser serves both ways to start the operator, so they cannot drift apart: `trainsmart operator
--webhook-port 9443` and `TRAINSMART_OPERATOR_WEBHOOK_PORT=9443 kopf run -m trainsmart.main` give equal
options. Every flag `--some-flag` has the variable `TRAINSMART_OPERATOR_SOME_FLAG` as its default (a flag
given on the command line wins); list flags take comma-separated values, switches `1`/`true`/`yes`/`on`.
The prefix keeps them apart from the `TRAINSMART_*` variables of the trainer contract.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import tempfile
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from trainsmart.options import (
    DEFAULT_METRICS_HOST,
    DEFAULT_METRICS_PORT,
    DEFAULT_REPORT_HOST,
    DEFAULT_REPORT_PORT,
    MANAGED_CONFIGURATION_NAME,
    ActiveLabelOptions,
    OperatorOptions,
    OwnPod,
    PeeringRef,
    ReportTLSOptions,
    ServiceRef,
    WebhookOptions,
)
from trainsmart.settings import (
    DEFAULT_CURRENCY,
    DEFAULT_LOST_NODE_FORCE_DELETE_AFTER_S,
    DEFAULT_PRICE_NODE_LABEL,
    GpuPricing,
    NamespaceMode,
    OperatorSettings,
)

ENV_PREFIX: Final = "TRAINSMART_OPERATOR_"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})


class OperatorConfigError(ValueError):
    """A flag or variable that makes no valid operator configuration (said as the user wrote it)."""


def add_operator_arguments(op: argparse.ArgumentParser) -> None:
    """The operator's flags (`trainsmart operator --help` lists them with their defaults)."""
    op.add_argument(
        "-n", "--namespace", action="append", help="watch this namespace (repeatable); default: all namespaces"
    )
    op.add_argument("--all-namespaces", action="store_true", help="watch every namespace (the default)")
    op.add_argument("--kubeconfig", default=None, help="kubeconfig file; default: in-cluster, then $KUBECONFIG")
    op.add_argument(
        "--no-controllers",
        dest="controllers",
        action="store_false",
        help="serve only the admission webhook: no reconciles, no report endpoint, no metrics",
    )
    op.add_argument(
        "--report-host", default=DEFAULT_REPORT_HOST, help=f"report endpoint address (default {DEFAULT_REPORT_HOST})"
    )
    op.add_argument("--report-port", type=int, default=DEFAULT_REPORT_PORT, help="report endpoint port; 0: no endpoint")
    op.add_argument(
        "--report-url",
        default=None,
        help="the endpoint's URL as pods reach it (injected into pods); its scheme decides the protocol served: "
        "https (TLS, the default) or http (plain HTTP, e.g. a local dev cluster; tokens then travel unencrypted); "
        "default: https from --report-host/--report-port when the host is an address pods can reach, else pods "
        "send no reports",
    )
    op.add_argument(
        "--report-cert-dir",
        default=str(Path(tempfile.gettempdir()) / "trainsmart-report"),
        help="directory with tls.crt, tls.key and ca.crt for the report endpoint's TLS (e.g. a mounted "
        "kubernetes.io/tls Secret); issued there by our own CA, for the report URL's host, when absent. Pods get "
        "ca.crt to verify the endpoint with",
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
    op.add_argument(
        "--lost-node-force-delete-after",
        type=int,
        default=DEFAULT_LOST_NODE_FORCE_DELETE_AFTER_S,
        help="force-delete a terminating replica pod once its node has not reported for this many seconds "
        f"(Ready Unknown), so the replica can start elsewhere (default {DEFAULT_LOST_NODE_FORCE_DELETE_AFTER_S}; "
        "-1: never). Needs get on nodes",
    )
    op.add_argument(
        "--mlflow-tracking-uri",
        default=None,
        help="MLflow tracking server (http:// or https://, no credentials in it) the operator logs every "
        "TrainingJob and sweep to unless its spec.tracking.mlflow names another; default: only objects that "
        "name one are tracked",
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
    _add_pricing_arguments(op)
    _add_webhook_arguments(op)


def _add_pricing_arguments(op: argparse.ArgumentParser) -> None:
    group = op.add_argument_group("estimated cost (status.estimatedCost, the Cost column, trainsmart_*_estimated_cost)")
    group.add_argument(
        "--price-per-gpu-hour",
        type=float,
        default=None,
        help="price of one GPU for one hour, for nodes without a price of their own; default: no cost is estimated",
    )
    group.add_argument(
        "--price-currency", default=DEFAULT_CURRENCY, help=f"ISO 4217 code of the prices (default {DEFAULT_CURRENCY})"
    )
    group.add_argument(
        "--price-node-label",
        default=DEFAULT_PRICE_NODE_LABEL,
        help=f"node label whose value picks a --price-by-label-value price (default {DEFAULT_PRICE_NODE_LABEL})",
    )
    group.add_argument(
        "--price-by-label-value",
        default="",
        metavar="VALUE=PRICE,...",
        help="price per GPU-hour on nodes whose --price-node-label has VALUE, e.g. "
        "NVIDIA-A100-SXM4-80GB=3.2,NVIDIA-H100-80GB-HBM3=6; needs --price-per-gpu-hour (the price elsewhere) "
        "and get on nodes",
    )


def _add_webhook_arguments(op: argparse.ArgumentParser) -> None:
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


def variable_name(action: argparse.Action) -> str:
    """`--some-flag` -> `TRAINSMART_OPERATOR_SOME_FLAG`."""
    return ENV_PREFIX + max(action.option_strings, key=len).lstrip("-").upper().replace("-", "_")


def apply_environment(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Make each `TRAINSMART_OPERATOR_<FLAG>` variable in `environ` the default of its flag."""
    defaults: dict[str, Any] = {}
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        name = variable_name(action)
        raw = environ.get(name)
        if raw is None:
            continue
        if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
            switched = raw.strip().lower() in _TRUE
            defaults[action.dest] = switched if isinstance(action, argparse._StoreTrueAction) else not switched
        elif isinstance(action, argparse._AppendAction):
            defaults[action.dest] = [item.strip() for item in raw.split(",") if item.strip()]
        elif action.type in (int, float):
            try:
                defaults[action.dest] = action.type(raw)
            except ValueError as error:
                raise OperatorConfigError(f"{name}={raw!r} is not a number") from error
        else:
            defaults[action.dest] = raw
    parser.set_defaults(**defaults)


def operator_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """A parser of the operator's flags alone, defaults taken from `environ` (the process's by default)."""
    parser = argparse.ArgumentParser(prog="trainsmart operator")
    add_operator_arguments(parser)
    apply_environment(parser, os.environ if environ is None else environ)
    return parser


def options_from_environment(environ: Mapping[str, str] | None = None) -> OperatorOptions:
    """The options `trainsmart operator` would run with, given no flags, in this environment."""
    return operator_options(operator_parser(environ).parse_args([]))


def peering_priority(args: argparse.Namespace) -> int | None:
    """The peering priority: given, or random when peering is on (equal priorities pause everyone)."""
    if args.peering_priority is not None:
        return int(args.peering_priority)
    return secrets.randbelow(2**31) + 1 if args.peering else None


def operator_options(args: argparse.Namespace, priority: int | None = None) -> OperatorOptions:
    """The options of parsed operator flags; `priority` is the peering priority chosen for this run (None:
    as `peering_priority` chooses). Raises OperatorConfigError for values that make no configuration."""
    namespaces = tuple(args.namespace or ())
    report_port = args.report_port or None
    report_url = args.report_url
    if report_url is None and report_port is not None and args.report_host not in ("0.0.0.0", "::", ""):  # noqa: S104
        host = f"[{args.report_host}]" if ":" in args.report_host else args.report_host
        report_url = f"https://{host}:{report_port}/v1/reports"
    trainer: dict[str, Any] = {}
    if args.trainer_image:
        trainer["trainer_image"] = args.trainer_image
    if args.trainer_command:
        trainer["trainer_command"] = tuple(shlex.split(args.trainer_command))
    try:
        settings = OperatorSettings(
            **trainer,
            report_url=report_url,
            lost_node_force_delete_after_seconds=(
                None if args.lost_node_force_delete_after < 0 else args.lost_node_force_delete_after
            ),
            namespace_mode=NamespaceMode.LIST if namespaces else NamespaceMode.ALL,
            namespaces=namespaces,
            pricing=_pricing(args),
        )
    except ValueError as error:
        raise OperatorConfigError(str(error)) from error
    priority = priority if priority is not None else peering_priority(args)
    active_label = None
    if priority is not None and args.peering and args.pod_name and args.pod_namespace:
        # Replicas share priorities across namespaces, so any watched namespace's peering object decides.
        peering = PeeringRef(args.peering, namespaces[0] if namespaces else None)
        active_label = ActiveLabelOptions(peering, OwnPod(args.pod_namespace, args.pod_name), priority)
    return OperatorOptions(
        mlflow_tracking_uri=_tracking_uri(args.mlflow_tracking_uri),
        settings=settings,
        kubeconfig=args.kubeconfig,
        controllers=args.controllers,
        report_host=args.report_host,
        report_port=report_port,
        report_tls=_report_tls_options(args, report_url),
        peering=args.peering,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port or None,
        webhook=_webhook_options(args),
        active_label=active_label,
    )


def _pricing(args: argparse.Namespace) -> GpuPricing | None:
    """The GPU price from the --price-* flags; None without --price-per-gpu-hour (no cost is estimated)."""
    by_value: dict[str, float] = {}
    for item in (part.strip() for part in args.price_by_label_value.split(",")):
        if not item:
            continue
        value, sign, price = item.rpartition("=")
        try:
            by_value[value] = float(price)
        except ValueError:
            sign = ""
        if not sign or not value:
            raise OperatorConfigError(f"--price-by-label-value {item!r}: write VALUE=PRICE, e.g. NVIDIA-A100=3.2")
    if args.price_per_gpu_hour is None:
        if by_value:
            raise OperatorConfigError("--price-by-label-value needs --price-per-gpu-hour, the price on other nodes")
        return None
    return GpuPricing(
        price_per_gpu_hour=args.price_per_gpu_hour,
        currency=args.price_currency,
        node_label=args.price_node_label,
        by_label_value=by_value,
    )


def _tracking_uri(uri: str | None) -> str | None:
    """The default MLflow URI, refused when it is no http(s) URL or carries credentials (the URI shows in
    status conditions and logs; credentials belong in a Secret)."""
    if not uri:
        return None
    parts = urllib.parse.urlsplit(uri)
    if "@" in parts.netloc:
        raise OperatorConfigError(
            "--mlflow-tracking-uri may not carry credentials; use spec.tracking.mlflow.credentialsSecret"
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OperatorConfigError(f"--mlflow-tracking-uri {uri!r}: write http://HOST[:PORT][/PATH] or https://...")
    return uri


def _report_tls_options(args: argparse.Namespace, report_url: str | None) -> ReportTLSOptions | None:
    """HTTPS unless the report URL pods are given is plain http: the URL is the one switch, so the protocol
    pods are told and the one served can never disagree. Without a URL (pods send nothing) still HTTPS."""
    if report_url is not None and urllib.parse.urlsplit(report_url).scheme == "http":
        return None
    host = urllib.parse.urlsplit(report_url).hostname if report_url else None
    hosts = (host,) if host else (_reachable(args.report_host),)
    return ReportTLSOptions(cert_dir=Path(args.report_cert_dir), hosts=hosts)


def _reachable(host: str) -> str:
    """A host a certificate can name for a listening address (a wildcard means loopback)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    return "::1" if host == "::" else host


def _webhook_options(args: argparse.Namespace) -> WebhookOptions | None:
    if not args.webhook_port:
        return None
    service = None
    if args.webhook_service:
        namespace, _, rest = args.webhook_service.partition("/")
        name, _, port = rest.partition(":")
        if not namespace or not name or (port and not port.isdigit()):
            raise OperatorConfigError(f"--webhook-service {args.webhook_service!r}: write NAMESPACE/NAME[:PORT]")
        service = ServiceRef(namespace, name, int(port) if port else 443)
    return WebhookOptions(
        port=args.webhook_port,
        host=args.webhook_host,
        cert_dir=Path(args.webhook_cert_dir),
        url_host=args.webhook_url_host,
        service=service,
        managed=args.webhook_configuration or None,
    )
