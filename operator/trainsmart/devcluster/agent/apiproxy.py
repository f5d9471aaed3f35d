"""The `kubernetes` Service for pods of the local cluster: a TCP forwarder from the pod network to the apiserver.

Why: a kubelet gives every pod `KUBERNETES_SERVICE_HOST/PORT`, and kube-proxy makes that address reach the
apiserver; in-cluster clients (the operator deployed by its Helm chart, any controller) depend on it. Here
the apiserver usually listens on the host's loopback, which a pod in its own network namespace cannot
reach. So the agent listens on the pod bridge's address (the gateway every pod routes to), port 443, and
forwards each connection byte for byte to the apiserver: TLS stays end to end between the pod and the
apiserver, and the pod authenticates with its own service-account token, so RBAC sees the pod's identity.

Pods are told to call `kubernetes.default.svc` (their hosts file maps it to the gateway) rather than the
gateway's IP, because the apiserver's serving certificate names `kubernetes.default.svc` but not the
bridge's address; the name is what `ca.crt` from `kube-root-ca.crt` can verify.

Limits: one listener per agent (its own bridge address, so agents side by side do not collide); no
Endpoints watching (the apiserver address is fixed for the agent's lifetime).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Final

log = logging.getLogger(__name__)

SERVICE_PORT: Final = 443
SERVICE_HOST_NAME: Final = "kubernetes.default.svc"
"""What pods get as KUBERNETES_SERVICE_HOST: a name the apiserver's certificate covers."""
_CHUNK: Final = 64 * 1024


def kubernetes_service_names(domain: str) -> tuple[str, ...]:
    """Every name a pod may use for the `kubernetes` Service (the bare `kubernetes` is the default namespace's
    short form; it is listed too because cluster DNS search paths make it work from `default`)."""
    return (f"kubernetes.default.svc.{domain}", SERVICE_HOST_NAME, "kubernetes.default")


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy until EOF, then half-close the other side so request/response streams end properly."""
    try:
        while data := source.recv(_CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


class ApiserverProxy:
    """Listens on `listen` and forwards every connection to `upstream`; `start()` then `close()`."""

    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listen = listen
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when 0 was asked for)."""
        if self._server is None:
            raise RuntimeError("ApiserverProxy.start() was not called")
        host, port = self._server.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            server.bind(self._listen)
            server.listen(128)
        except OSError:
            server.close()
            raise
        self._server = server
        threading.Thread(target=self._accept_loop, name="apiserver-proxy", daemon=True).start()
        log.info("forwarding %s:%d to the apiserver at %s:%d", *self.address, *self.upstream)

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), name="apiserver-proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=10)
        except OSError as exc:
            log.warning("apiserver proxy: cannot reach %s:%d: %s", *self.upstream, exc)
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            if self._closed.is_set():
                client.close()
                upstream.close()
                return
            self._conns.update((client, upstream))
        back = threading.Thread(target=_pump, args=(upstream, client), name="apiserver-proxy-back", daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        with self._lock:
            self._conns.difference_update((client, upstream))
        for sock in (client, upstream):
            sock.close()

    def close(self) -> None:
        """Stop listening and cut every forwarded connection (clients reconnect to the next agent)."""
        self._closed.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        with self._lock:
            conns: Sequence[socket.socket] = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
