"""TLS for the kit's servers and channels, from certificate files that may be rotated in place.

A server reads its certificate, key and client CA again when one of the files changes: gRPC asks
for the current configuration at each new handshake, and a rotation (cert-manager renewing a
Secret, which the kubelet then swaps in the pod's volume) is picked up by the next connection
without a restart; connections already open keep the certificate they were made with. A file
caught half-written is retried at the next handshake with the previous configuration still served.

A channel reads its files once, when it is opened: gRPC's Python API has no credentials that
change under an open channel. A renewed certificate is issued well before the old one expires
(cert-manager renews at two thirds of its life), so the certificate a channel presents stays valid
until the pod restarts or the channel is opened again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import grpc

from subsecond.kit.settings import TlsSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    stamps: tuple[tuple[int, int], ...]
    configuration: grpc.ServerCertificateConfiguration


class ReloadingServerCertificates:
    """The fetcher gRPC calls at each handshake: a new configuration when a file changed, else None."""

    def __init__(self, tls: TlsSettings) -> None:
        if tls.cert_file is None or tls.key_file is None:
            raise ValueError("a TLS server needs TLS_CERT_FILE and TLS_KEY_FILE")
        watched = (tls.cert_file, tls.key_file, tls.client_ca_file, tls.metrics_client_ca_file)
        self._files = tuple(path for path in watched if path is not None)
        self._cert_file = tls.cert_file
        self._key_file = tls.key_file
        self._client_ca_file = tls.client_ca_file
        self._metrics_client_ca_file = tls.metrics_client_ca_file
        self._followers: list[ssl.SSLContext] = []
        self.current = self._load()

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        # The modification time and inode: a Secret volume swaps a symlinked directory, which
        # changes the inode even when the time is the same second.
        return tuple((stat.st_mtime_ns, stat.st_ino) for stat in (os.stat(path) for path in self._files))

    def _load(self) -> _Loaded:
        stamps = self._stamps()
        configuration = grpc.ssl_server_certificate_configuration(
            [(self._key_file.read_bytes(), self._cert_file.read_bytes())],
            root_certificates=self._client_ca_file.read_bytes() if self._client_ca_file else None,
        )
        return _Loaded(stamps, configuration)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            if self._stamps() == self.current.stamps:
                return None
            self.current = self._load()
            for context in self._followers:
                context.load_cert_chain(self._cert_file, self._key_file)
                if self._metrics_client_ca_file is not None:
                    # Adds a renewed CA; one it replaced stays trusted here until the process restarts.
                    context.load_verify_locations(cafile=self._metrics_client_ca_file)
        except (OSError, ValueError, ssl.SSLError) as error:
            log.warning("certificate files unreadable; serving the previous ones: %s", error)
            return None
        log.info("certificates reloaded from %s", self._cert_file.parent)
        return self.current.configuration

    def follow(self, context: ssl.SSLContext) -> None:
        """Loads the certificate (and the scrapers' CA) into ``context`` again whenever this fetcher
        reloads it: the metrics endpoint's context, which thus changes certificate at the first gRPC handshake after a
        rotation (probes and callers connect every few seconds; connections are recycled every minute)."""
        self._followers.append(context)

    async def watch(self, every_seconds: float) -> None:
        """Checks the files every ``every_seconds`` (until cancelled), for a process that serves only
        the metrics endpoint (a supervisor of workers, kit.workers): no gRPC handshake calls it there."""
        while True:
            await asyncio.sleep(every_seconds)
            self()

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.dynamic_ssl_server_credentials(
            self.current.configuration, self, require_client_authentication=self._client_ca_file is not None
        )


def server_certificates(tls: TlsSettings) -> ReloadingServerCertificates | None:
    """A server's certificates (its credentials require client certificates when a client CA is
    set), or None when the service has no certificate and listens in plaintext."""
    return ReloadingServerCertificates(tls) if tls.serves_tls else None


def channel_credentials(tls: TlsSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials for a channel, presenting the service's own certificate when it has one, or
    None for a plaintext channel (no ``TLS_CA_FILE``)."""
    if tls.ca_file is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=tls.ca_file.read_bytes(),
        private_key=_read(tls.key_file),
        certificate_chain=_read(tls.cert_file),
    )


def _read(path: Path | None) -> bytes | None:
    return path.read_bytes() if path is not None else None
