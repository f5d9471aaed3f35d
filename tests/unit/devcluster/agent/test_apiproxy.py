"""The node agent's `kubernetes` Service: how in-cluster clients in local pods reach the apiserver.

Pins: the forwarder copies bytes both ways and passes a half-close on (HTTP/1.1 request then response);
it serves several connections at once; `close()` cuts open connections (no thread keeps a pod's watch
alive after the agent stops); pods' hosts files map the `kubernetes` Service names to the forwarder;
those names are covered by the local apiserver's serving certificate (why pods get a name, not an IP).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from trainsmart.devcluster.agent.apiproxy import SERVICE_HOST_NAME, ApiserverProxy, kubernetes_service_names
from trainsmart.devcluster.agent.dns import PodRecord, build_hosts_text
from trainsmart.pki import DEFAULT_DNS_NAMES


def _echo_upper_server() -> tuple[socket.socket, threading.Thread]:
    """Upstream stand-in: reads until EOF, then answers the upper-cased bytes and closes."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            data = b""
            while chunk := conn.recv(4096):
                data += chunk
            conn.sendall(data.upper())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def proxy() -> Iterator[ApiserverProxy]:
    upstream, _ = _echo_upper_server()
    forwarder = ApiserverProxy(("127.0.0.1", 0), upstream.getsockname())
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.close()
        upstream.close()


def _roundtrip(address: tuple[str, int], payload: bytes) -> bytes:
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := conn.recv(4096):
            answer += chunk
        return answer


def test_bytes_flow_both_ways_and_a_half_close_is_passed_on(proxy: ApiserverProxy) -> None:
    payload = b"get /version http/1.1\r\n\r\n" * 5000  # larger than one chunk
    assert _roundtrip(proxy.address, payload) == payload.upper()


def test_connections_are_served_concurrently(proxy: ApiserverProxy) -> None:
    held = socket.create_connection(proxy.address, timeout=5)  # an idle watch, say
    try:
        assert _roundtrip(proxy.address, b"second") == b"SECOND"
    finally:
        held.close()


def test_close_cuts_open_connections_and_stops_listening(proxy: ApiserverProxy) -> None:
    address = proxy.address
    with socket.create_connection(address, timeout=5) as conn:
        conn.sendall(b"half a request")
        proxy.close()
        try:
            answer = conn.recv(10)
        except ConnectionResetError:
            answer = b""
        assert answer == b""  # cut (EOF or reset), not left hanging until the timeout
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(address, timeout=1).close()


def test_hosts_files_map_the_kubernetes_service_names_to_the_forwarder() -> None:
    owner = PodRecord(uid="u", namespace="ns", name="op", ip="10.244.0.7", hostname="op", subdomain=None)
    names = kubernetes_service_names("cluster.local")
    text = build_hosts_text(owner, [owner], [], extra={"10.244.0.1": names})
    assert "10.244.0.1\tkubernetes.default.svc.cluster.local kubernetes.default.svc kubernetes.default\n" in text
    assert "kubernetes" not in build_hosts_text(owner, [owner], [])


def test_the_name_pods_are_given_is_in_the_apiserver_certificate() -> None:
    assert SERVICE_HOST_NAME in DEFAULT_DNS_NAMES
    assert set(kubernetes_service_names("cluster.local")) <= set(DEFAULT_DNS_NAMES)
