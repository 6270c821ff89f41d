"""The chart's exec probe (`python -m subsecond.kit.health_probe`) against a real kit server with
mutual TLS on loopback, certificates of a throwaway CA: the probe passes only with the pod's own
certificate and only while the server reports SERVING."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from test_tls import _definition, _settings

from subsecond.kit.health_probe import check
from subsecond.kit.server import RunningServer, start_server
from subsecond_tools.stack.certificates import StackCertificates, write_certificates

PREFIX = "SUBSECOND_EMBEDDING_"


@pytest.fixture
def certificates(tmp_path: Path) -> StackCertificates:
    return write_certificates(tmp_path, ["embedding", "cache"])


@pytest.fixture
async def embedding(certificates: StackCertificates) -> AsyncIterator[RunningServer]:
    """An inner service with mutual TLS: the handshake itself requires a client certificate."""
    running = await start_server(_settings(certificates, "embedding"), _definition())
    yield running
    await running.stop(0)


def _pod_environment(certificates: StackCertificates, port: int) -> dict[str, str]:
    """What the chart gives the embedding container: its own certificate, the CA, its port."""
    return {**certificates.environment("embedding"), PREFIX + "PORT": str(port)}


async def test_the_probe_run_as_the_kubelet_does_passes_over_mutual_tls(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    environment = {**os.environ, **_pod_environment(certificates, embedding.port)}
    probe = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "subsecond.kit.health_probe", "embedding"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr


async def test_a_draining_server_fails_the_probe(certificates: StackCertificates, embedding: RunningServer) -> None:
    await embedding.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    problem = await asyncio.to_thread(check, "embedding", _pod_environment(certificates, embedding.port), 5.0)
    assert problem is not None and problem.endswith("NOT_SERVING")


async def test_without_the_pods_certificate_the_handshake_fails(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    """Why the probe must present the pod's certificate: the server asks for a client certificate."""
    environment = _pod_environment(certificates, embedding.port)
    del environment[PREFIX + "TLS_CERT_FILE"], environment[PREFIX + "TLS_KEY_FILE"]
    del environment[PREFIX + "TLS_CLIENT_CA_FILE"]
    problem = await asyncio.to_thread(check, "embedding", environment, 5.0)
    assert problem is not None and "UNAVAILABLE" in problem


async def test_a_plaintext_probe_cannot_check_a_tls_server(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    """Kubernetes' native gRPC probe is plaintext: this is what it would get."""
    problem = await asyncio.to_thread(check, "embedding", {PREFIX + "PORT": str(embedding.port)}, 5.0)
    assert problem is not None and "UNAVAILABLE" in problem


async def test_a_certificate_not_naming_the_identity_is_refused(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    """The probe checks the server's certificate against the service's identity, not loopback."""
    environment = {**_pod_environment(certificates, embedding.port), PREFIX + "IDENTITY": "somebody-else"}
    problem = await asyncio.to_thread(check, "embedding", environment, 5.0)
    assert problem is not None and "UNAVAILABLE" in problem


def test_missing_settings_are_reported_not_dialled(tmp_path: Path) -> None:
    problem = check("embedding", {PREFIX + "PORT": "1", PREFIX + "TLS_CA_FILE": str(tmp_path / "absent.pem")}, 1.0)
    assert problem is not None and "TLS_CA_FILE" in problem
