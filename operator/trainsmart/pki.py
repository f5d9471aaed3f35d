"""Certificates and keys: the local control plane's CA and serving certificates, and the CAs and serving
certificates the operator issues itself for its admission webhook and its report endpoint (both import this
one module; it sits below both, so production code never depends on the local-cluster tooling).

We issue our own CA and apiserver serving certificate instead of letting kube-apiserver self-sign into
`--cert-dir`, because we must control the subject alternative names: pods run by the node agent reach the
apiserver through the agent's bridge address, and in-cluster clients verify `kubernetes.default.svc`.
EC P-256 keys keep generation to milliseconds (RSA-2048 costs ~100 ms each), which matters for the
warm-start target; the apiserver accepts ECDSA for both TLS and service-account token signing.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class ControlPlanePKI:
    """Paths of the files the control-plane processes are started with."""

    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    sa_public_key: Path
    sa_private_key: Path


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    ips: Iterable[str],
    dns_names: Iterable[str],
    valid_days: int = 365,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A serving certificate for `ips` and `dns_names`, signed by the CA. Also used for webhooks."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def new_ca(common_name: str = "trainsmart-dev-ca") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def write_control_plane_pki(directory: Path, extra_ips: Iterable[str] = ()) -> ControlPlanePKI:
    """Create the CA, the apiserver's serving certificate (loopback, the first service IP, `extra_ips`)
    and the service-account signing key pair under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = new_ca()
    ips = ["127.0.0.1", "10.0.0.1", *extra_ips]
    serving, serving_key = issue_certificate(ca_cert, ca_key, "kube-apiserver", ips, DEFAULT_DNS_NAMES)
    sa_key = ec.generate_private_key(ec.SECP256R1())

    pki = ControlPlanePKI(
        ca_cert=directory / "ca.crt",
        serving_cert=directory / "apiserver.crt",
        serving_key=directory / "apiserver.key",
        sa_public_key=directory / "sa.pub",
        sa_private_key=directory / "sa.key",
    )
    pki.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, directory / "ca.key")
    pki.serving_cert.write_bytes(serving.public_bytes(serialization.Encoding.PEM))
    _write_key(serving_key, pki.serving_key)
    _write_key(sa_key, pki.sa_private_key)
    pki.sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return pki


# -- serving certificates the operator issues for itself ------------------------------------------------

SERVING_CERT_FILE = "tls.crt"
SERVING_KEY_FILE = "tls.key"
SERVING_CA_FILE = "ca.crt"
"""File names in a certificate directory: those of a kubernetes.io/tls Secret (as cert-manager writes it),
so the directory can be such a Secret mounted as a volume."""


@dataclass(frozen=True)
class ServingCertificates:
    """A serving certificate, its key and the CA bundle clients verify it with."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def ensure_serving_certificates(directory: Path, hosts: Sequence[str], ca_name: str) -> ServingCertificates:
    """The certificates in `directory` (tls.crt, tls.key, ca.crt); issued there by a new CA `ca_name` when
    absent.

    Files someone else put there (a Secret mounted as a volume) are used as they are. Files issued here
    earlier (their issuer is `ca_name`) are reissued when they do not cover `hosts`, so a restart never
    serves a certificate its clients would reject. The CA's key is never written: nothing can issue more.
    The same rules as the admission webhook's certificates (`admission.webhook.ensure_webhook_certificates`),
    here so that every layer may use them.
    """
    files = (directory / SERVING_CERT_FILE, directory / SERVING_KEY_FILE, directory / SERVING_CA_FILE)
    certs = ServingCertificates(*files)
    if all(path.exists() for path in (certs.cert_file, certs.key_file, certs.ca_file)):
        cert = x509.load_pem_x509_certificate(certs.cert_file.read_bytes())
        if cert.issuer != _name(ca_name) or covers(cert, hosts):
            return certs
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = new_ca(ca_name)
    ips = [host for host in hosts if _is_ip(host)]
    names = [host for host in hosts if not _is_ip(host)]
    cert, key = issue_certificate(ca_cert, ca_key, (names or ips or [ca_name])[0], ips, names)
    certs.key_file.touch(mode=0o600)
    certs.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    certs.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    certs.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return certs


def covers(cert: x509.Certificate, hosts: Sequence[str]) -> bool:
    """Whether the certificate's subject alternative names include every host (DNS name or IP)."""
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not hosts
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
    return all((str(ipaddress.ip_address(h)) in ips) if _is_ip(h) else (h in names) for h in hosts)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
