"""How one operator process runs: the typed result of `trainsmart operator`'s flags (or the same settings
from the environment, for `kopf run -m trainsmart.main`), handed to `main.register_operator`.

Plain frozen dataclasses with no behaviour, below every layer that reads them, so the wiring in
`main.py` and the runtime in `handlers/` take one value instead of reading flags or the environment
themselves. What pods get is the separate `OperatorSettings` (`settings.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from trainsmart.api import GROUP
from trainsmart.settings import OperatorSettings

DEFAULT_REPORT_HOST: Final = "0.0.0.0"  # noqa: S104 - in a cluster the endpoint must be reachable from pods
DEFAULT_REPORT_PORT: Final = 8080
DEFAULT_METRICS_HOST: Final = "0.0.0.0"  # noqa: S104 - Prometheus scrapes from another pod
DEFAULT_METRICS_PORT: Final = 8000
DEFAULT_MIN_RECONCILE_INTERVAL_S: Final = 1.0
DEFAULT_CRD_WAIT_S: Final = 120.0
MANAGED_CONFIGURATION_NAME: Final = GROUP
"""Name of the ValidatingWebhookConfiguration Kopf maintains by default (`settings.admission.managed`)."""


@dataclass(frozen=True)
class ServiceRef:
    """The Service in front of the operator's webhook port, as the apiserver should call it."""

    namespace: str
    name: str
    port: int = 443


@dataclass(frozen=True)
class WebhookOptions:
    """The validating admission webhook this process serves over TLS."""

    port: int
    host: str = "0.0.0.0"  # noqa: S104 - in a pod the apiserver calls in from outside
    cert_dir: Path = Path("/tmp/trainsmart-webhook")
    """tls.crt, tls.key and ca.crt (e.g. a mounted kubernetes.io/tls Secret); issued there when absent."""
    url_host: str | None = None
    """The host the apiserver calls (https://HOST:PORT/...); None: the listening address."""
    service: ServiceRef | None = None
    """In a cluster: the Service in front of the webhook port, called instead of a URL."""
    managed: str | None = MANAGED_CONFIGURATION_NAME
    """The ValidatingWebhookConfiguration Kopf keeps up to date; None: managed elsewhere (a chart)."""


@dataclass(frozen=True)
class ReportTLSOptions:
    """The report endpoint over TLS: the serving certificate's directory and the names it must cover."""

    cert_dir: Path
    """tls.crt, tls.key and ca.crt (e.g. a mounted kubernetes.io/tls Secret); issued there when absent."""
    hosts: tuple[str, ...] = ()
    """Host names or IPs pods reach the endpoint by (the report URL's host): a certificate issued here
    covers them."""


@dataclass(frozen=True)
class PeeringRef:
    """Where this replica's peers are: a ClusterKopfPeering, or the KopfPeering in `namespace`."""

    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class OwnPod:
    namespace: str
    name: str


@dataclass(frozen=True)
class ActiveLabelOptions:
    """Label our own pod while this replica is the acting peer (see `handlers/standby.py`)."""

    peering: PeeringRef
    pod: OwnPod
    priority: int


@dataclass(frozen=True)
class OperatorOptions:
    """How this operator process runs; what pods get is in `settings`."""

    settings: OperatorSettings = field(default_factory=OperatorSettings)
    kubeconfig: str | None = None
    controllers: bool = True
    """Reconcile TrainingJobs and sweeps (and serve reports and metrics); False: admission webhook only."""
    report_host: str = DEFAULT_REPORT_HOST
    report_port: int | None = DEFAULT_REPORT_PORT
    """None: no report endpoint in this process."""
    report_tls: ReportTLSOptions | None = None
    """HTTPS for the report endpoint; None: plain HTTP. The CLI's default is HTTPS (see `operator_config`);
    the library default is plain, so runtimes built in tests need no certificates."""
    peering: str | None = None
    """Kopf peering object name; None: standalone (one operator replica)."""
    min_reconcile_interval: float = DEFAULT_MIN_RECONCILE_INTERVAL_S
    """Seconds between two reconciles of one job: bounds status patches per job (reports can be frequent)."""
    crd_wait_timeout: float = DEFAULT_CRD_WAIT_S
    """Seconds to wait at startup for API discovery to serve the CRDs before giving up."""
    metrics_host: str = DEFAULT_METRICS_HOST
    metrics_port: int | None = None
    """Prometheus /metrics port; None: not served (the metrics are still kept). The CLI's default is
    DEFAULT_METRICS_PORT; the library default is off, so runtimes built in tests bind nothing."""
    webhook: WebhookOptions | None = None
    """None: no admission webhook in this process."""
    active_label: ActiveLabelOptions | None = None
    """None: the pod is not labelled (standalone, or not running in a pod)."""
    mlflow_tracking_uri: str | None = None
    """MLflow tracking server for objects whose spec.tracking names none (issue 14); None: only those that
    name one are tracked."""
