"""The report endpoint over TLS (issue 13): reports carry a bearer token, so no plain HTTP unless asked for.

Pins:
- `trainsmart operator` serves HTTPS by default: a report URL it derives is https, an explicit https URL
  keeps TLS, and only an explicit http URL (the local dev cluster's launcher gives one) serves plain
  HTTP; the certificate covers the URL's host (a name, an IPv4 or IPv6 address);
- the certificates: issued into an empty directory by our own CA for the hosts asked for; kept across
  restarts while they cover them (the CA pods trust stays the same); reissued when the host changed;
  files someone else put there (a mounted Secret) used as they are;
- the real endpoint and the real client sender over a loopback socket: a report sent trusting the
  operator's CA is accepted (202), one sent without trusting it fails the handshake with "certificate
  verify failed" (and is retried, not dropped: the operator may be mid-rotation), and plain HTTP to the
  TLS port gets no answer.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.error
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from cryptography import x509

from trainsmart.devcluster.controlplane import free_port
from trainsmart.handlers.operator_runtime import REPORT_CA_NAME, report_certificates
from trainsmart.operator_config import operator_options, operator_parser
from trainsmart.options import OperatorOptions, ReportTLSOptions
from trainsmart.pki import ensure_serving_certificates, issue_certificate, new_ca
from trainsmart.report_endpoint import (
    REPORT_PATH,
    JobKey,
    ReportInbox,
    TokenVerifier,
    build_report_app,
    server_ssl_context,
    start_report_server,
)
from trainsmart_client.sender import RejectedError, urllib_post

JOB = JobKey("ml", "digits")
TOKEN = "token-of-digits"


def options(*argv: str) -> OperatorOptions:
    return operator_options(operator_parser({}).parse_args(list(argv)), priority=1)


# -- which protocol, which names ----------------------------------------------------------------------


def test_a_derived_report_url_is_https_and_served_over_tls(tmp_path: Path) -> None:
    opts = options("--report-host", "10.1.2.3", "--report-port", "8080", "--report-cert-dir", str(tmp_path))
    assert opts.settings.report_url == "https://10.1.2.3:8080/v1/reports"
    assert opts.report_tls == ReportTLSOptions(cert_dir=tmp_path, hosts=("10.1.2.3",))


def test_an_explicit_https_url_names_the_certificate_host() -> None:
    opts = options("--report-url", "https://trainsmart-report.ops.svc:8080/v1/reports")
    assert opts.report_tls is not None and opts.report_tls.hosts == ("trainsmart-report.ops.svc",)
    v6 = options("--report-host", "fd00::5", "--report-port", "8080")
    assert v6.settings.report_url == "https://[fd00::5]:8080/v1/reports"
    assert v6.report_tls is not None and v6.report_tls.hosts == ("fd00::5",)


def test_plain_http_only_for_an_explicit_http_url() -> None:
    opts = options("--report-url", "http://10.0.0.1:8080/v1/reports")
    assert opts.report_tls is None
    env = operator_parser({"TRAINSMART_OPERATOR_REPORT_URL": "http://10.0.0.1:8080/v1/reports"}).parse_args([])
    assert operator_options(env, priority=1).report_tls is None
    assert options().report_tls is not None  # no URL (pods send nothing): still TLS


def test_the_library_default_and_plain_http_issue_no_certificates(tmp_path: Path) -> None:
    assert report_certificates(OperatorOptions()) is None
    tls = ReportTLSOptions(cert_dir=tmp_path / "certs", hosts=("127.0.0.1",))
    assert report_certificates(OperatorOptions(report_tls=tls, report_port=None)) is None
    certs = report_certificates(OperatorOptions(report_tls=tls))
    assert certs is not None and certs.ca_file.exists()


# -- certificates ---------------------------------------------------------------------------------------


def sans(path: Path) -> list[str]:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(value) for value in names.get_values_for_type(x509.DNSName)] + [
        str(value) for value in names.get_values_for_type(x509.IPAddress)
    ]


def test_certificates_are_issued_kept_and_reissued_when_the_host_changes(tmp_path: Path) -> None:
    first = ensure_serving_certificates(tmp_path, ["report.ops.svc", "10.0.0.7"], REPORT_CA_NAME)
    assert sorted(sans(first.cert_file)) == ["10.0.0.7", "report.ops.svc"]
    assert first.key_file.stat().st_mode & 0o077 == 0
    ca = first.ca_file.read_bytes()
    again = ensure_serving_certificates(tmp_path, ["report.ops.svc"], REPORT_CA_NAME)
    assert again.ca_file.read_bytes() == ca  # a restart keeps the CA running pods trust
    moved = ensure_serving_certificates(tmp_path, ["report.other.svc"], REPORT_CA_NAME)
    assert sans(moved.cert_file) == ["report.other.svc"] and moved.ca_file.read_bytes() != ca


def test_certificates_someone_else_put_there_are_used_as_they_are(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    ca_cert, ca_key = new_ca("their-ca")
    cert, key = issue_certificate(ca_cert, ca_key, "theirs", [], ["theirs.example"])
    (tmp_path / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "tls.key").write_bytes(pem)
    (tmp_path / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs = ensure_serving_certificates(tmp_path, ["report.ops.svc"], REPORT_CA_NAME)
    assert sans(certs.cert_file) == ["theirs.example"]


# -- the real server and the real client over a socket -------------------------------------------------


@pytest_asyncio.fixture
async def tls_endpoint(tmp_path: Path) -> AsyncIterator[tuple[str, Path, list[JobKey]]]:
    certs = ensure_serving_certificates(tmp_path, ["127.0.0.1"], REPORT_CA_NAME)

    async def read_token(namespace: str, name: str) -> str | None:
        return TOKEN if JobKey(namespace, name) == JOB else None

    triggered: list[JobKey] = []
    app = build_report_app(TokenVerifier(read_token), ReportInbox(), triggered.append)
    port = free_port("127.0.0.1")
    context = server_ssl_context(certs.cert_file, certs.key_file)
    runner = await start_report_server(app, "127.0.0.1", port, ssl_context=context)
    try:
        yield f"https://127.0.0.1:{port}{REPORT_PATH}/{JOB.namespace}/{JOB.name}", certs.ca_file, triggered
    finally:
        await runner.cleanup()


def report() -> bytes:
    body: dict[str, Any] = {
        "kind": "epoch",
        "time": "2025-01-01T12:00:00+00:00",
        "epoch": 1,
        "totalEpochs": 3,
        "device": {"type": "cpu"},
        "job": {"namespace": JOB.namespace, "name": JOB.name},
    }
    return json.dumps(body).encode()


HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


@pytest.mark.asyncio
async def test_a_report_trusting_the_operators_ca_is_accepted(tls_endpoint: tuple[str, Path, list[JobKey]]) -> None:
    url, ca_file, triggered = tls_endpoint
    post = urllib_post(str(ca_file))
    await asyncio.to_thread(post, url, report(), HEADERS, 5.0)  # raises on anything but 2xx
    assert triggered == [JOB]


@pytest.mark.asyncio
async def test_a_report_not_trusting_the_ca_fails_certificate_verification(
    tls_endpoint: tuple[str, Path, list[JobKey]],
) -> None:
    url, _, triggered = tls_endpoint
    with pytest.raises(urllib.error.URLError) as failure:
        await asyncio.to_thread(urllib_post(None), url, report(), HEADERS, 5.0)
    assert not isinstance(failure.value, RejectedError)  # a transient failure for the sender: retried
    assert isinstance(failure.value.reason, ssl.SSLCertVerificationError)
    assert "certificate verify failed" in str(failure.value.reason)
    assert triggered == []


@pytest.mark.asyncio
async def test_plain_http_to_the_tls_port_gets_no_answer(tls_endpoint: tuple[str, Path, list[JobKey]]) -> None:
    url, _, triggered = tls_endpoint
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(urllib_post(None), url.replace("https://", "http://"), report(), HEADERS, 5.0)
    assert triggered == []
