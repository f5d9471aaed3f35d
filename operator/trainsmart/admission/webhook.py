"""The validating webhook's I/O side: the handler functions, the HTTPS server and its certificates.

`trainsmart.main` registers the handler functions with Kopf (with every other Kopf registration) and
calls `configure_webhook_server` at startup.

Kubernetes 1.20 has no CEL rules, so everything the CRD schema cannot say is enforced here, by the same
pure functions (`trainsmart.admission.rules`) the operator uses when it parses an object.

What the ValidatingWebhookConfiguration gets, and why (Kopf builds it from the handlers when
`settings.admission.managed` is set; `build_webhook_configuration` builds the same for a chart or tests):

* `operations: [CREATE, UPDATE]` only. Kopf's default is every operation; with `failurePolicy: Fail` an
  operator that is down would then also block `kubectl delete` of every TrainingJob.
* `failurePolicy: Fail`: an invalid spec must not slip in while the webhook restarts. The blast radius is
  small: only our two resources (not their `/status`), and Kopf removes its webhooks on a clean shutdown.
* `sideEffects: None`, so `kubectl apply --dry-run=server` is validated too; `admissionReviewVersions`
  v1 (and v1beta1, which Kopf also speaks).

Kopf's managed configuration cannot set a `namespaceSelector` and always uses 30 s timeouts; neither
matters for resources only this operator serves. Its stock `WebhookServer` can only advertise a `url`,
which an apiserver cannot resolve for an in-cluster Service name (nolar/kopf#1155), so
`ServiceWebhookServer` advertises `clientConfig.service` instead. Its body limit is aiohttp's 1 MiB
default, below what the apiserver sends (an UPDATE review carries the object twice): `AdmissionWebhookServer`
raises it to `MAX_REVIEW_BYTES` (issue 13).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import aiohttp.web
import kopf
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from trainsmart.admission.review_depth import may_be_too_deep, too_deep_denial
from trainsmart.admission.rules import (
    Problem,
    format_problems,
    trainingjob_warnings,
    validate_sweep,
    validate_trainingjob,
)
from trainsmart.api import GROUP, SWEEP_KIND, SWEEP_PLURAL, TRAININGJOB_KIND, TRAININGJOB_PLURAL, VERSION
from trainsmart.options import MANAGED_CONFIGURATION_NAME, ServiceRef, WebhookOptions
from trainsmart.pki import issue_certificate, new_ca

TRAININGJOB_WEBHOOK_ID: Final = "validate-trainingjob"
SWEEP_WEBHOOK_ID: Final = "validate-sweep"
WEBHOOKS: Final = ((TRAININGJOB_WEBHOOK_ID, TRAININGJOB_PLURAL), (SWEEP_WEBHOOK_ID, SWEEP_PLURAL))
OPERATIONS: Final[tuple[Literal["CREATE"], Literal["UPDATE"]]] = ("CREATE", "UPDATE")
# File names in the certificate directory: those of a kubernetes.io/tls Secret (as cert-manager writes
# it), so the directory can be such a Secret mounted as a volume.
CERT_FILE: Final = "tls.crt"
KEY_FILE: Final = "tls.key"
CA_FILE: Final = "ca.crt"
WEBHOOK_CA_NAME: Final = "trainsmart-webhook-ca"
INVALID_CODE: Final = 422

APISERVER_MAX_REQUEST_BYTES: Final = 3 * 1024 * 1024
"""The kube-apiserver's limit on a request body ("Request entity too large: limit is 3145728")."""
ETCD_MAX_OBJECT_BYTES: Final = 3 * 1024 * 1024 // 2
"""etcd's default `--max-request-bytes` (1.5 MiB): the largest object the apiserver can store."""
MAX_REVIEW_BYTES: Final = 8 * 1024 * 1024
"""The largest AdmissionReview the webhook reads; aiohttp's default is 1 MiB (issue 13).

The biggest review the apiserver sends is an UPDATE: `oldObject` is a stored object (at most
ETCD_MAX_OBJECT_BYTES) and `object` is the result of the request, at most a stored object plus a patch
of up to APISERVER_MAX_REQUEST_BYTES: 1.5 + 4.5 = 6 MiB, plus the envelope (userInfo, options, a few
KiB). 8 MiB covers it with room to spare, so any object the apiserver accepts reaches its own limits
(and their messages: etcd's "request is too large", the 3 MiB body limit) rather than an unexplained
413 from this server. Only strings of characters JSON escapes to 6 bytes (`<`, `>`, `&`) could make a
bigger review, and those objects are far beyond what etcd stores anyway. The limit is not an
allocation: a body is read as it arrives, so the bound only caps what one request can make us hold.
"""


def admit_trainingjob(*, body: kopf.Body, warnings: list[str], old: kopf.Body | None = None, **_: Any) -> None:
    """Refuse an invalid TrainingJob with every problem at once; add warnings for likely mistakes."""
    new, previous = _plain(body), _plain(old)
    status = previous.get("status") if previous else None
    _refuse(TRAININGJOB_KIND, new, validate_trainingjob(new, previous, status))
    warnings.extend(trainingjob_warnings(new))


def admit_sweep(*, body: kopf.Body, old: kopf.Body | None = None, **_: Any) -> None:
    """Refuse an invalid HyperparamSweep with every problem at once."""
    new, previous = _plain(body), _plain(old)
    status = previous.get("status") if previous else None
    _refuse(SWEEP_KIND, new, validate_sweep(new, previous, status))


def _refuse(kind: str, new: Mapping[str, Any], problems: Sequence[Problem]) -> None:
    if problems:
        name = new.get("metadata", {}).get("name")
        raise kopf.AdmissionError(format_problems(kind, name, problems), code=INVALID_CODE)


def _plain(body: Mapping[str, Any] | None) -> dict[str, Any]:
    # Kopf's Body is a read-only view; the rules want ordinary mappings all the way down.
    return {key: body[key] for key in body} if body is not None else {}


# -- the server ----------------------------------------------------------------------------------------


class AdmissionWebhookServer(kopf.WebhookServer):
    """A `kopf.WebhookServer` that reads AdmissionReviews of up to `MAX_REVIEW_BYTES`.

    Kopf builds its aiohttp Application inside `__call__` with the default `client_max_size` of 1 MiB and
    offers no setting for it; every request passes through `_serve`, so that is where the limit is
    raised, on a clone of the request made before its body is read (aiohttp applies the limit when the
    body is read). A unit test posts a review over 1 MiB through a real server, so a Kopf release that
    changes `_serve` fails the tests rather than the cluster.
    """

    @staticmethod
    async def _serve(fn: kopf.WebhookFn, request: aiohttp.web.Request) -> aiohttp.web.Response:
        # A staticmethod, like the Kopf method it extends: Kopf calls it as self._serve(fn, request).
        request = request.clone(client_max_size=MAX_REVIEW_BYTES)
        text = await request.text()  # kept by the request: Kopf's own read returns the same text
        if may_be_too_deep(text):
            # Python's decoder recurses per level: a review too deep for it is refused with a path here,
            # where Kopf would answer 500 (`admission/review_depth.py`).
            try:
                json.loads(text)
            except RecursionError:
                denial = too_deep_denial(text)
                if denial is not None:
                    return aiohttp.web.json_response(denial)
                raise aiohttp.web.HTTPBadRequest(reason="the review is nested too deeply to read") from None
            except ValueError:
                pass  # not JSON: Kopf answers that itself
        return await kopf.WebhookServer._serve(fn, request)


class ServiceWebhookServer(AdmissionWebhookServer):
    """A `kopf.WebhookServer` that advertises `clientConfig.service` instead of a URL.

    The apiserver reaches a Service reference through its own service resolver; a URL naming the same
    Service would need cluster DNS on the control-plane hosts, which managed clusters do not give.
    """

    def __init__(self, *, service: ServiceRef, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.service = service

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        async for config in super().__call__(fn):
            # Kopf appends the handler id to service.path, as it does to a URL.
            reference = kopf.WebhookClientConfigService(
                namespace=self.service.namespace, name=self.service.name, port=self.service.port
            )
            if self.path:
                reference["path"] = self.path.rstrip("/")
            client_config = kopf.WebhookClientConfig(service=reference)
            if config.get("caBundle"):
                client_config["caBundle"] = config["caBundle"]
            yield client_config


def configure_admission(
    settings: kopf.OperatorSettings,
    *,
    host: str = "0.0.0.0",  # noqa: S104 - in a pod the apiserver calls in from outside
    port: int,
    certfile: Path,
    pkeyfile: Path,
    cafile: Path | None = None,
    cadata: bytes | None = None,
    url_host: str | None = None,
    service: ServiceRef | None = None,
    managed: str | None = MANAGED_CONFIGURATION_NAME,
) -> kopf.WebhookServer:
    """Serve admission over TLS on `host:port` and let Kopf keep the webhook configuration `managed`.

    The apiserver is told to call `https://<url_host or host>:<port>/<handler id>`, or the `service` when
    given, trusting `cafile`/`cadata` (the CA that issued `certfile`). `managed=None` leaves the
    ValidatingWebhookConfiguration to someone else (a chart; see `build_webhook_configuration`).
    Call it from a `@kopf.on.startup` handler (`configure_webhook_server` does, for `trainsmart.main`).
    """
    options: dict[str, Any] = {
        "addr": host,
        "port": port,
        "host": url_host,
        "certfile": str(certfile),
        "pkeyfile": str(pkeyfile),
        "cafile": str(cafile) if cafile is not None else None,
        "cadata": cadata,
    }
    server = ServiceWebhookServer(service=service, **options) if service else AdmissionWebhookServer(**options)
    settings.admission.server = server
    settings.admission.managed = managed
    return server


def configure_webhook_server(settings: kopf.OperatorSettings, webhook: WebhookOptions) -> kopf.WebhookServer:
    """Make sure `webhook.cert_dir` holds a certificate for the address the apiserver calls, then serve
    admission with it (`configure_admission`). Run at startup, not at import, so a read-only or missing
    directory fails the operator's start visibly."""
    service = webhook.service
    if service is not None:
        hosts = [f"{service.name}.{service.namespace}.svc", f"{service.name}.{service.namespace}.svc.cluster.local"]
    else:
        hosts = [webhook.url_host or _reachable(webhook.host)]
    certs = ensure_webhook_certificates(webhook.cert_dir, hosts)
    return configure_admission(
        settings,
        host=webhook.host,
        port=webhook.port,
        certfile=certs.cert_file,
        pkeyfile=certs.key_file,
        cafile=certs.ca_file,
        url_host=webhook.url_host,
        service=service,
        managed=webhook.managed,
    )


def _reachable(host: str) -> str:
    """The address the apiserver calls for a listening address (a wildcard means loopback, as in Kopf)."""
    if host in ("", "0.0.0.0"):  # noqa: S104 - comparing, not binding
        return "127.0.0.1"
    return "::1" if host == "::" else host


# -- certificates --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookCertificates:
    """The serving certificate, its key and the CA bundle the apiserver verifies it with."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def ensure_webhook_certificates(directory: Path, hosts: Sequence[str]) -> WebhookCertificates:
    """The certificates in `directory` (tls.crt, tls.key, ca.crt); issued here when absent.

    Files someone else put there (a cert-manager Secret mounted as a volume) are used as they are. Files
    this function issued earlier are reissued when they do not cover `hosts` (the operator moved), so a
    restart never serves a certificate the apiserver would reject. Our own CA's key is never written.
    """
    certs = WebhookCertificates(directory / CERT_FILE, directory / KEY_FILE, directory / CA_FILE)
    if all(path.exists() for path in (certs.cert_file, certs.key_file, certs.ca_file)):
        cert = x509.load_pem_x509_certificate(certs.cert_file.read_bytes())
        if not _issued_here(cert) or _covers(cert, hosts):
            return certs
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = new_ca(WEBHOOK_CA_NAME)
    ips = [host for host in hosts if _is_ip(host)]
    names = [host for host in hosts if not _is_ip(host)]
    cert, key = issue_certificate(ca_cert, ca_key, (names or ips or ["trainsmart-webhook"])[0], ips, names)
    certs.key_file.touch(mode=0o600)
    certs.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    certs.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return certs


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _issued_here(cert: x509.Certificate) -> bool:
    return cert.issuer == x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, WEBHOOK_CA_NAME)])


def _covers(cert: x509.Certificate, hosts: Sequence[str]) -> bool:
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return all((str(ipaddress.ip_address(h)) in ips) if _is_ip(h) else (h in names) for h in hosts)


# -- a configuration for those who manage it themselves -----------------------------------------------


def build_webhook_configuration(
    name: str,
    client_config: Mapping[str, Any],
    *,
    namespace_selector: Mapping[str, Any] | None = None,
    failure_policy: str = "Fail",
    timeout_seconds: int = 10,
) -> dict[str, Any]:
    """A ValidatingWebhookConfiguration equivalent to Kopf's managed one, plus a namespace selector.

    For deployments where the operator may not write webhook configurations (`managed=None`: a chart
    ships this object, with a CA injected by cert-manager) and for tests that must scope the webhook to
    their own namespace. `client_config` is the base: `{url}` or `{service}`, with `caBundle`.
    """
    webhooks = []
    for webhook_id, plural in WEBHOOKS:
        config = {key: dict(value) if isinstance(value, Mapping) else value for key, value in client_config.items()}
        if "url" in config:
            config["url"] = f"{str(config['url']).rstrip('/')}/{webhook_id}"
        if "service" in config:
            config["service"]["path"] = f"{str(config['service'].get('path') or '').rstrip('/')}/{webhook_id}"
        webhook: dict[str, Any] = {
            "name": f"{webhook_id}.{GROUP}",
            "clientConfig": config,
            "rules": [
                {
                    "apiGroups": [GROUP],
                    "apiVersions": [VERSION],
                    "resources": [plural],
                    "operations": list(OPERATIONS),
                    "scope": "Namespaced",
                }
            ],
            "failurePolicy": failure_policy,
            "sideEffects": "None",
            "matchPolicy": "Equivalent",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": timeout_seconds,
        }
        if namespace_selector is not None:
            webhook["namespaceSelector"] = dict(namespace_selector)
        webhooks.append(webhook)
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": webhooks,
    }
