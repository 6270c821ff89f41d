"""The operator's own listeners: its Prometheus metrics, over HTTPS when it has a certificate, and
kopf's liveness endpoint, on loopback only.

With the chart's ``tls.enabled`` the operator gets a certificate as the services do (a cert-manager
Certificate or an existing Secret, mounted as a Secret volume that the kubelet swaps on renewal):
the metrics endpoint serves it, and loads the files again when they change (checked every 30 s).
The kit's reloading certificates (kit.tls) are gRPC's: the operator's image has no gRPC, so the
check here is its own, on the same signs (a Secret volume swaps a symlinked directory, which changes
the files' inode even within the same second). The liveness endpoint is kopf's, which speaks plain HTTP only:
bound to 127.0.0.1, it is reached by the kubelet's exec probe inside the container and by no peer.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from wsgiref.simple_server import WSGIServer

import prometheus_client
from prometheus_client import CollectorRegistry

from subsecond.kit.settings import EnvReader, TlsSettings

log = logging.getLogger(__name__)

# How often the metrics endpoint checks its certificate files (no gRPC handshake does it here).
CERTIFICATE_CHECK_SECONDS = 30.0


def metrics_tls(environ: Mapping[str, str]) -> TlsSettings:
    """``SUBSECOND_OPERATOR_TLS_CERT_FILE`` and ``_TLS_KEY_FILE``: the metrics endpoint's certificate
    (neither: plain HTTP). SettingsError when only one is set."""
    env = EnvReader(environ, "SUBSECOND_OPERATOR_")
    tls = TlsSettings.read(env)
    env.done()
    return tls


def liveness_endpoint(port: int) -> str:
    """kopf's liveness URL, on loopback: the chart probes it with an exec probe in the container."""
    return f"http://127.0.0.1:{port}/healthz"


@dataclass
class MetricsEndpoint:
    http: WSGIServer
    stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def port(self) -> int:
        return self.http.server_port

    def close(self) -> None:
        self.stopping.set()
        self.http.shutdown()
        self.http.server_close()


class _FollowedCertificate:
    """Loads the certificate and key into ``context`` again when either file changed since the last load."""

    def __init__(self, context: ssl.SSLContext, cert_file: os.PathLike[str], key_file: os.PathLike[str]) -> None:
        self._context = context
        self._files = (cert_file, key_file)
        self._stamps = self._read_stamps()

    def _read_stamps(self) -> tuple[tuple[int, int], ...]:
        return tuple((stat.st_mtime_ns, stat.st_ino) for stat in map(os.stat, self._files))

    def __call__(self) -> None:
        try:
            stamps = self._read_stamps()
            if stamps == self._stamps:
                return
            self._context.load_cert_chain(*self._files)
        except (OSError, ssl.SSLError) as error:
            # Caught half-written: the previous certificate is served until the next check.
            log.warning("certificate files unreadable; serving the previous ones: %s", error)
            return
        self._stamps = stamps
        log.info("metrics certificate reloaded from %s", os.fspath(self._files[0]))


def serve_metrics(
    port: int,
    tls: TlsSettings,
    *,
    registry: CollectorRegistry = prometheus_client.REGISTRY,
    check_seconds: float = CERTIFICATE_CHECK_SECONDS,
) -> MetricsEndpoint:
    """Serves ``registry`` on ``port`` (every interface; 0 picks one): HTTPS with ``tls``'s certificate
    when it has one, reloaded every ``check_seconds`` when its files change. Server-authenticated only,
    as the services' metrics: Prometheus presents no certificate."""
    if tls.cert_file is None or tls.key_file is None:
        http, _ = prometheus_client.start_http_server(port, registry=registry)
        return MetricsEndpoint(http)
    http, _ = prometheus_client.start_http_server(
        port, registry=registry, certfile=str(tls.cert_file), keyfile=str(tls.key_file)
    )
    certificate = _FollowedCertificate(cast(ssl.SSLSocket, http.socket).context, tls.cert_file, tls.key_file)
    endpoint = MetricsEndpoint(http)

    def watch() -> None:
        while not endpoint.stopping.wait(check_seconds):
            certificate()

    threading.Thread(target=watch, name="metrics-certificates", daemon=True).start()
    log.info("metrics served over HTTPS", extra={"port": endpoint.port, "certificate": str(tls.cert_file)})
    return endpoint
