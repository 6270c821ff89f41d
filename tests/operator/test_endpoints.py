"""The operator's own listeners (endpoints): its metrics over HTTPS with a certificate as the chart
mounts it (a throwaway CA standing in for cert-manager), refused in plaintext and to a scraper of
another CA, and with a scrapers' CA only to a scraper presenting its certificate, following a renewed
certificate without a restart; plain HTTP without one; kopf's liveness endpoint on loopback; and none
of it needs gRPC, which the operator's image lacks. Seconds."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from subsecond.kit.settings import SettingsError, TlsSettings
from subsecond_operator.endpoints import MetricsEndpoint, liveness_endpoint, metrics_tls, serve_metrics

NAME = "release-subsecond-operator"


def issue(authority: trustme.CA, directory: Path) -> None:
    """Writes a certificate for the operator's Service name as the kubelet updates a Secret volume: new
    files swapped in by a rename, never rewritten in place."""
    issued = authority.issue_cert(NAME)
    staging = directory / "staging"
    staging.mkdir(exist_ok=True)
    issued.cert_chain_pems[0].write_to_path(str(staging / "tls.crt"))
    issued.private_key_pem.write_to_path(str(staging / "tls.key"))
    for name in ("tls.crt", "tls.key"):
        os.replace(staging / name, directory / name)


def trusting(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    authority.configure_trust(context)
    return context


def scrape(port: int, context: ssl.SSLContext | None) -> str:
    """GET /metrics: in plain HTTP without ``context``, else over TLS checking that the certificate
    names the operator's Service (the ServiceMonitor's serverName), whatever address is dialled."""
    if context is None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=NAME) as connection,
    ):
        connection.sendall(b"GET /metrics HTTP/1.0\r\nHost: " + NAME.encode() + b"\r\n\r\n")
        answer = b"".join(iter(lambda: connection.recv(65536), b""))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head
    return body.decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[trustme.CA, MetricsEndpoint, Path]]:
    authority = trustme.CA()
    issue(authority, tmp_path)
    endpoint = serve_metrics(
        0, TlsSettings(cert_file=tmp_path / "tls.crt", key_file=tmp_path / "tls.key"), check_seconds=0.05
    )
    yield authority, endpoint, tmp_path
    endpoint.close()


def test_metrics_are_served_over_https_with_the_operators_certificate(
    served: tuple[trustme.CA, MetricsEndpoint, Path],
) -> None:
    authority, endpoint, _ = served
    assert "python_info" in scrape(endpoint.port, trusting(authority))
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        scrape(endpoint.port, None)
    with pytest.raises(ssl.SSLCertVerificationError):
        scrape(endpoint.port, trusting(trustme.CA()))


def test_a_renewed_certificate_is_served_without_a_restart(served: tuple[trustme.CA, MetricsEndpoint, Path]) -> None:
    authority, endpoint, directory = served
    renewed = trustme.CA()
    issue(renewed, directory)
    deadline = time.monotonic() + 5
    while True:
        try:
            assert "python_info" in scrape(endpoint.port, trusting(renewed))
            break
        except ssl.SSLCertVerificationError:
            assert time.monotonic() < deadline, "the renewed certificate was never served"
            time.sleep(0.05)
    with pytest.raises(ssl.SSLCertVerificationError):
        scrape(endpoint.port, trusting(authority))


def test_a_half_written_certificate_keeps_the_previous_one_served(
    served: tuple[trustme.CA, MetricsEndpoint, Path],
) -> None:
    authority, endpoint, directory = served
    (directory / "tls.key").write_text("-----BEGIN PRIVATE KEY-----\ntruncated")
    time.sleep(0.3)
    assert "python_info" in scrape(endpoint.port, trusting(authority))


def test_with_a_scrapers_ca_only_a_scraper_of_that_ca_is_served(tmp_path: Path) -> None:
    """``SUBSECOND_OPERATOR_METRICS_CLIENT_CA_FILE``, as the chart sets it: the scraper's certificate
    (Prometheus's) is required; none, or one of another CA, fails the handshake."""
    authority = trustme.CA()
    issue(authority, tmp_path)
    ca_file = tmp_path / "ca.crt"
    authority.cert_pem.write_to_path(str(ca_file))
    tls = metrics_tls(
        {
            "SUBSECOND_OPERATOR_TLS_CERT_FILE": str(tmp_path / "tls.crt"),
            "SUBSECOND_OPERATOR_TLS_KEY_FILE": str(tmp_path / "tls.key"),
            "SUBSECOND_OPERATOR_METRICS_CLIENT_CA_FILE": str(ca_file),
        }
    )
    endpoint = serve_metrics(0, tls)
    try:
        scraper = trusting(authority)
        authority.issue_cert("release-subsecond-scraper").configure_cert(scraper)
        assert "python_info" in scrape(endpoint.port, scraper)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            scrape(endpoint.port, trusting(authority))
        stranger = trusting(authority)
        trustme.CA().issue_cert("release-subsecond-scraper").configure_cert(stranger)
        with pytest.raises((ssl.SSLError, ConnectionError)):
            scrape(endpoint.port, stranger)
    finally:
        endpoint.close()


def test_without_a_certificate_metrics_are_plain_http() -> None:
    endpoint = serve_metrics(0, TlsSettings())
    try:
        assert "python_info" in scrape(endpoint.port, None)
    finally:
        endpoint.close()


def test_the_certificate_comes_from_the_operators_settings(tmp_path: Path) -> None:
    issue(trustme.CA(), tmp_path)
    tls = metrics_tls(
        {
            "SUBSECOND_OPERATOR_TLS_CERT_FILE": str(tmp_path / "tls.crt"),
            "SUBSECOND_OPERATOR_TLS_KEY_FILE": str(tmp_path / "tls.key"),
        }
    )
    assert (tls.cert_file, tls.key_file) == (tmp_path / "tls.crt", tmp_path / "tls.key")
    assert metrics_tls({}) == TlsSettings()
    with pytest.raises(SettingsError, match="together"):
        metrics_tls({"SUBSECOND_OPERATOR_TLS_CERT_FILE": str(tmp_path / "tls.crt")})


def test_kopfs_liveness_endpoint_is_on_loopback() -> None:
    assert liveness_endpoint(8080) == "http://127.0.0.1:8080/healthz"


def test_the_operator_starts_without_grpc() -> None:
    """The operator's image installs the kit without the services' serving dependencies."""
    blocked = "import sys; sys.modules['grpc'] = None; import subsecond_operator.main"
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
