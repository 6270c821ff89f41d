"""The operator's own listeners: its Prometheus metrics, over HTTPS when it has a certificate, and
kopf's liveness endpoint, on loopback only.

With the chart's ``tls.enabled`` the operator gets a certificate as the services do (a cert-manager
Certificate or an existing Secret, mounted as a Secret volume that the kubelet swaps on renewal):
the metrics endpoint serves it, and loads the files again when they change (checked every 30 s);
with ``SUBSECOND_OPERATOR_METRICS_CLIENT_CA_FILE`` it serves only a scraper presenting a certificate
of that CA (the chart's `scraper`, which Prometheus presents).
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
from pathlib import Path
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
    (neither: plain HTTP), and ``_METRICS_CLIENT_CA_FILE``: the scrapers' CA (unset: any scraper).
    SettingsError when only one of the first two is set, or the third without them."""
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
    """Loads the certificate and key (and the scrapers' CA) into ``context`` again when a file changed
    since the last load."""

    def __init__(
        self, context: ssl.SSLContext, cert_file: Path, key_file: Path, client_ca_file: Path | None
    ) -> None:
        self._context = context
        self._cert_file = cert_file
        self._key_file = key_file
        self._client_ca_file = client_ca_file
        self._files = (cert_file, key_file, *([client_ca_file] if client_ca_file else []))
        self._stamps = self._read_stamps()

    def _read_stamps(self) -> tuple[tuple[int, int], ...]:
        return tuple((stat.st_mtime_ns, stat.st_ino) for stat in map(os.stat, self._files))

    def __call__(self) -> None:
        try:
            stamps = self._read_stamps()
            if stamps == self._stamps:
                return
            self._context.load_cert_chain(self._cert_file, self._key_file)
            if self._client_ca_file is not None:
                # Adds a renewed CA; one it replaced stays trusted until the operator restarts.
                self._context.load_verify_locations(cafile=self._client_ca_file)
        except (OSError, ssl.SSLError) as error:
            # Caught half-written: the previous certificate is served until the next check.
            log.warning("certificate files unreadable; serving the previous ones: %s", error)
            return
        self._stamps = stamps
        log.info("metrics certificate reloaded from %s", os.fspath(self._cert_file))


def serve_metrics(
    port: int,
    tls: TlsSettings,
    *,
    registry: CollectorRegistry = prometheus_client.REGISTRY,
    check_seconds: float = CERTIFICATE_CHECK_SECONDS,
) -> MetricsEndpoint:
    """Serves ``registry`` on ``port`` (every interface; 0 picks one): HTTPS with ``tls``'s certificate
    when it has one, reloaded every ``check_seconds`` when its files change; only to scrapers with a
    certificate of ``tls.metrics_client_ca_file`` when that is set, as the services' metrics."""
    if tls.cert_file is None or tls.key_file is None:
        http, _ = prometheus_client.start_http_server(port, registry=registry)
        return MetricsEndpoint(http)
    http, _ = prometheus_client.start_http_server(
        port,
        registry=registry,
        certfile=str(tls.cert_file),
        keyfile=str(tls.key_file),
        client_cafile=str(tls.metrics_client_ca_file) if tls.metrics_client_ca_file else None,
        client_auth_required=tls.metrics_client_ca_file is not None,
    )
    certificate = _FollowedCertificate(
        cast(ssl.SSLSocket, http.socket).context, tls.cert_file, tls.key_file, tls.metrics_client_ca_file
    )
    endpoint = MetricsEndpoint(http)

    def watch() -> None:
        while not endpoint.stopping.wait(check_seconds):
            certificate()

    threading.Thread(target=watch, name="metrics-certificates", daemon=True).start()
    log.info(
        "metrics served over HTTPS",
        extra={
            "port": endpoint.port,
            "certificate": str(tls.cert_file),
            "scrapers_ca": str(tls.metrics_client_ca_file or "any scraper"),
        },
    )
    return endpoint
