"""TLS, mutual TLS and caller checks of the kit's server shell and channels: real handshakes
between real gRPC servers and channels on loopback, with certificates of a throwaway CA.

The servicer is a stand-in Embedder (it answers one fixed vector): what is tested is the shell
around it, which treats every service's RPCs alike."""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import grpc
import prometheus_client
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_server import Prometheus

from subsecond.kit.callers import ServiceToken
from subsecond.kit.channels import open_channel
from subsecond.kit.server import RunningServer, ServiceDefinition, start_server
from subsecond.kit.settings import CallerSettings, EnvReader, ServerSettings, SettingsError, TlsSettings
from subsecond.kit.tls import ReloadingServerCertificates
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc, generation_pb2, generation_pb2_grpc
from subsecond_tools.stack.certificates import ServiceCertificate, StackCertificates, issue, write_certificates

EMBEDDER = embedding_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
PLAIN = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_seconds=1, log_level="INFO")


class FixedEmbedder(embedding_pb2_grpc.EmbedderServicer):
    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        return embedding_pb2.EmbedResponse(embeddings=[embedding_pb2.Embedding(values=[1.0])], model="fixed")


def _definition() -> ServiceDefinition:
    return ServiceDefinition.for_servicer(
        embedding_pb2.DESCRIPTOR.services_by_name["Embedder"],
        embedding_pb2_grpc.add_EmbedderServicer_to_server,
        FixedEmbedder(),
    )


@pytest.fixture
def certificates(tmp_path: Path) -> StackCertificates:
    return write_certificates(tmp_path, ["embedding", "cache", "router", "generation"])


def _settings(certificates: StackCertificates, service: str, *, mutual: bool = True) -> ServerSettings:
    """A service's server settings read from the environment the stack gives it."""
    env = EnvReader(certificates.environment(service, mutual=mutual), f"SUBSECOND_{service.upper()}_")
    settings = ServerSettings.read(env, default_port=0, default_metrics_port=0)
    env.done()
    return settings


@pytest.fixture
async def embedding(certificates: StackCertificates) -> AsyncIterator[RunningServer]:
    """An inner service with mutual TLS that accepts only the cache (as the stack's embedding does)."""
    running = await start_server(_settings(certificates, "embedding"), _definition())
    yield running
    await running.stop(0)


async def _embed(port: int, caller: ServerSettings | None) -> embedding_pb2.EmbedResponse:
    channel = open_channel(f"127.0.0.1:{port}", [EMBEDDER], caller)
    try:
        return await embedding_pb2_grpc.EmbedderStub(channel).Embed(embedding_pb2.EmbedRequest(texts=["a"]), timeout=5)
    finally:
        await channel.close()


async def test_the_allowed_caller_is_served_over_mutual_tls(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    response = await _embed(embedding.port, _settings(certificates, "cache"))
    assert response.model == "fixed"


async def test_a_client_without_a_certificate_is_refused_in_the_handshake(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    cache = _settings(certificates, "cache")
    # Trusts the server's CA, presents no certificate and no token.
    anonymous = dataclasses.replace(
        cache, tls=TlsSettings(ca_file=certificates.ca_file), callers=CallerSettings(identity="cache")
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _embed(embedding.port, anonymous)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_plaintext_client_cannot_reach_a_tls_server(embedding: RunningServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _embed(embedding.port, None)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_a_certificate_of_another_service_is_permission_denied(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    """Generation's certificate is genuine, but only the cache and the router may embed."""
    generation = _settings(certificates, "generation")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _embed(embedding.port, dataclasses.replace(generation, callers=CallerSettings(identity="generation")))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_certificate_of_another_ca_is_refused(
    certificates: StackCertificates, embedding: RunningServer, tmp_path: Path
) -> None:
    (tmp_path / "stranger").mkdir()
    stranger = issue(trustme.CA(), tmp_path / "stranger", "cache")
    cache = _settings(certificates, "cache")
    forged = dataclasses.replace(
        cache,
        tls=dataclasses.replace(cache.tls, cert_file=stranger.cert_file, key_file=stranger.key_file),
        callers=CallerSettings(identity="cache"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _embed(embedding.port, forged)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_checks_need_no_identity_but_tls(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    """Probes reach health without a client identity... only over TLS with a certificate here, since
    the handshake itself asks for one; what they skip is the caller check."""
    router = _settings(certificates, "router")
    channel = open_channel(f"127.0.0.1:{embedding.port}", ["grpc.health.v1.Health"], router)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        await channel.close()
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_rotated_server_certificate_is_served_to_the_next_connection(
    certificates: StackCertificates, tmp_path: Path
) -> None:
    """The server's files are replaced by a certificate of a new CA: a client trusting only the new
    CA is refused before and served after, without a restart."""
    running = await start_server(_settings(certificates, "embedding", mutual=False), _definition())
    try:
        new_ca = trustme.CA()
        new_ca_file = tmp_path / "new-ca.pem"
        new_ca.cert_pem.write_to_path(str(new_ca_file))
        # Without client certificates (mutual=False), the cache is identified by its token.
        trusting_new = dataclasses.replace(
            PLAIN,
            tls=TlsSettings(ca_file=new_ca_file),
            callers=CallerSettings(identity="cache", token_file=certificates.token_file),
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await _embed(running.port, trusting_new)
        issue(new_ca, tmp_path, "embedding")  # the same files the server was started with
        assert (await _embed(running.port, trusting_new)).model == "fixed"
    finally:
        await running.stop(0)


async def test_without_tls_a_signed_service_token_identifies_the_caller(
    certificates: StackCertificates, tmp_path: Path
) -> None:
    """The local stack without TLS: the cache's token is accepted, the router's is denied, no
    token or a token signed with another secret is unauthenticated."""
    inner = dataclasses.replace(
        PLAIN, callers=CallerSettings(identity="embedding", allowed=("cache",), token_file=certificates.token_file)
    )
    running = await start_server(inner, _definition())
    other_secret = tmp_path / "other-secret"
    other_secret.write_text("x" * 32)
    try:

        def caller(identity: str, token_file: Path) -> ServerSettings:
            return dataclasses.replace(PLAIN, callers=CallerSettings(identity=identity, token_file=token_file))

        assert (await _embed(running.port, caller("cache", certificates.token_file))).model == "fixed"
        outcomes = {}
        for name, settings in {
            "router": caller("router", certificates.token_file),
            "forged": caller("cache", other_secret),
            "none": None,
        }.items():
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await _embed(running.port, settings)
            outcomes[name] = refused.value.code()
    finally:
        await running.stop(0)
    assert outcomes == {
        "router": grpc.StatusCode.PERMISSION_DENIED,
        "forged": grpc.StatusCode.UNAUTHENTICATED,
        "none": grpc.StatusCode.UNAUTHENTICATED,
    }


class OneChunkGenerator(generation_pb2_grpc.GeneratorServicer):
    """A streaming RPC (unary request, streamed answer), as the router calls generation."""

    async def Generate(
        self, request: generation_pb2.GenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        yield generation_pb2.GenerationChunk(text="ok")


async def test_without_tls_a_streaming_call_carries_the_token_too(certificates: StackCertificates) -> None:
    """grpc.aio files a client interceptor under the first call kind it implements: the token must reach
    a unary-stream call (the router's Generate on generation) as it reaches a unary one."""
    generator = ServiceDefinition.for_servicer(
        generation_pb2.DESCRIPTOR.services_by_name["Generator"],
        generation_pb2_grpc.add_GeneratorServicer_to_server,
        OneChunkGenerator(),
    )
    inner = dataclasses.replace(
        PLAIN, callers=CallerSettings(identity="generation", allowed=("router",), token_file=certificates.token_file)
    )
    running = await start_server(inner, generator)
    router = dataclasses.replace(PLAIN, callers=CallerSettings(identity="router", token_file=certificates.token_file))
    channel = open_channel(f"127.0.0.1:{running.port}", [generator.names[0]], router)
    try:
        stream = generation_pb2_grpc.GeneratorStub(channel).Generate(generation_pb2.GenerationRequest(), timeout=5)
        assert [chunk.text async for chunk in stream] == ["ok"]
    finally:
        await channel.close()
        await running.stop(0)


def test_a_service_token_is_bound_to_its_name_time_and_secret() -> None:
    token = ServiceToken(b"s" * 32)
    signed = token.sign("cache.ns", now=1000)
    assert token.verify(signed, now=1000) == "cache.ns"
    assert token.verify(signed, now=1000 + 301) is None
    assert token.verify(signed.replace("cache.ns", "router"), now=1000) is None
    assert ServiceToken(b"t" * 32).verify(signed, now=1000) is None
    assert token.verify("garbage", now=1000) is None


def test_allowed_callers_without_a_way_to_identify_them_is_a_settings_error() -> None:
    env = EnvReader({"SUBSECOND_CACHE_ALLOWED_CALLERS": "router"}, "SUBSECOND_CACHE_")
    ServerSettings.read(env, default_port=0, default_metrics_port=0)
    with pytest.raises(SettingsError, match="ALLOWED_CALLERS needs"):
        env.done()


def test_a_missing_certificate_file_is_a_settings_error(tmp_path: Path) -> None:
    env = EnvReader({"SUBSECOND_CACHE_TLS_CERT_FILE": str(tmp_path / "absent.pem")}, "SUBSECOND_CACHE_")
    ServerSettings.read(env, default_port=0, default_metrics_port=0)
    with pytest.raises(SettingsError, match="TLS_CERT_FILE"):
        env.done()


def _scrape(port: int, context: ssl.SSLContext | None) -> str:
    scheme = "https" if context is not None else "http"
    with urllib.request.urlopen(f"{scheme}://localhost:{port}/metrics", timeout=5, context=context) as reply:
        return str(reply.read().decode())


def _trusting(ca_file: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file))


async def test_metrics_are_served_over_https_with_the_services_certificate(
    certificates: StackCertificates, embedding: RunningServer
) -> None:
    """A scraper trusting the CA reads the metrics without a client certificate; a plaintext
    request gets no metrics, and a scraper trusting another CA is refused in the handshake."""
    scraped = await asyncio.to_thread(_scrape, embedding.metrics_port, _trusting(certificates.ca_file))
    assert "python_info" in scraped
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        await asyncio.to_thread(_scrape, embedding.metrics_port, None)
    stranger = ssl.create_default_context(cadata=trustme.CA().cert_pem.bytes().decode())
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        await asyncio.to_thread(_scrape, embedding.metrics_port, stranger)


async def test_metrics_follow_a_rotated_certificate(certificates: StackCertificates, tmp_path: Path) -> None:
    """The metrics endpoint serves the new certificate once the gRPC port has reloaded it (at its
    next handshake), without a restart."""
    running = await start_server(_settings(certificates, "embedding", mutual=False), _definition())
    try:
        new_ca = trustme.CA()
        new_ca_file = tmp_path / "new-ca.pem"
        new_ca.cert_pem.write_to_path(str(new_ca_file))
        with pytest.raises(urllib.error.URLError):
            await asyncio.to_thread(_scrape, running.metrics_port, _trusting(new_ca_file))
        issue(new_ca, certificates.ca_file.parent, "embedding")
        trusting_new = dataclasses.replace(
            PLAIN,
            tls=TlsSettings(ca_file=new_ca_file),
            callers=CallerSettings(identity="cache", token_file=certificates.token_file),
        )
        assert (await _embed(running.port, trusting_new)).model == "fixed"
        assert "python_info" in await asyncio.to_thread(_scrape, running.metrics_port, _trusting(new_ca_file))
    finally:
        await running.stop(0)


async def test_a_watched_certificate_is_reloaded_without_a_grpc_handshake(
    certificates: StackCertificates, tmp_path: Path
) -> None:
    """A supervisor of workers serves only the metrics endpoint: watch() checks the files itself."""
    tls = _settings(certificates, "embedding", mutual=False).tls
    watched = ReloadingServerCertificates(tls)
    http, _ = prometheus_client.start_http_server(
        0, addr="127.0.0.1", certfile=str(tls.cert_file), keyfile=str(tls.key_file)
    )
    watched.follow(cast(ssl.SSLSocket, http.socket).context)
    watching = asyncio.ensure_future(watched.watch(0.05))
    try:
        new_ca = trustme.CA()
        new_ca_file = tmp_path / "new-ca.pem"
        new_ca.cert_pem.write_to_path(str(new_ca_file))
        issue(new_ca, certificates.ca_file.parent, "embedding")
        await asyncio.sleep(0.3)
        assert "python_info" in await asyncio.to_thread(_scrape, http.server_port, _trusting(new_ca_file))
    finally:
        watching.cancel()
        await asyncio.to_thread(http.shutdown)
        http.server_close()


def _scraped_by_certificate(certificates: StackCertificates) -> ServerSettings:
    """The embedding stand-in's settings as the chart gives them: mutual TLS, and its metrics only to a
    scraper with a certificate of the same CA."""
    scrapers_ca = {"SUBSECOND_EMBEDDING_METRICS_CLIENT_CA_FILE": str(certificates.ca_file)}
    env = EnvReader(certificates.environment("embedding") | scrapers_ca, "SUBSECOND_EMBEDDING_")
    settings = ServerSettings.read(env, default_port=0, default_metrics_port=0)
    env.done()
    return settings


def _presenting(ca_file: Path, certificate: ServiceCertificate) -> ssl.SSLContext:
    context = _trusting(ca_file)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    return context


async def test_metrics_need_a_scrapers_certificate_of_the_ca_when_one_is_set(tmp_path: Path) -> None:
    """With METRICS_CLIENT_CA_FILE (as the chart sets it) the metrics endpoint serves only a scraper
    presenting a certificate of that CA: none, or one of another CA, fails the handshake."""
    certificates = write_certificates(tmp_path, ["embedding", "scraper"])
    running = await start_server(_scraped_by_certificate(certificates), _definition())
    try:
        scraper = _presenting(certificates.ca_file, certificates.services["scraper"])
        assert "python_info" in await asyncio.to_thread(_scrape, running.metrics_port, scraper)
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            await asyncio.to_thread(_scrape, running.metrics_port, _trusting(certificates.ca_file))
        (tmp_path / "stranger").mkdir()
        stranger = issue(trustme.CA(), tmp_path / "stranger", "scraper")
        with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
            await asyncio.to_thread(_scrape, running.metrics_port, _presenting(certificates.ca_file, stranger))
    finally:
        await running.stop(0)


def test_a_scrapers_ca_without_a_certificate_is_a_settings_error(tmp_path: Path) -> None:
    env = EnvReader({"SUBSECOND_CACHE_METRICS_CLIENT_CA_FILE": str(tmp_path)}, "SUBSECOND_CACHE_")
    ServerSettings.read(env, default_port=0, default_metrics_port=0)
    with pytest.raises(SettingsError, match="METRICS_CLIENT_CA_FILE"):
        env.done()


async def test_prometheus_scrapes_the_metrics_with_the_scrapers_certificate_and_not_without(tmp_path: Path) -> None:
    """The real Prometheus, configured as the chart's ServiceMonitor tells the Prometheus Operator to
    (https, the CA, the service's name, the `scraper` certificate), scrapes the metrics; the same job
    without the certificate is down. A few seconds."""
    certificates = write_certificates(tmp_path / "certificates", ["embedding", "scraper"])
    running = await start_server(_scraped_by_certificate(certificates), _definition())
    scraper = certificates.services["scraper"]
    checked = {"ca_file": str(certificates.ca_file), "server_name": "embedding"}
    target = [{"targets": [f"127.0.0.1:{running.metrics_port}"]}]
    jobs = [
        {
            "job_name": "with-certificate",
            "scheme": "https",
            "tls_config": checked | {"cert_file": str(scraper.cert_file), "key_file": str(scraper.key_file)},
            "static_configs": target,
        },
        {"job_name": "without-certificate", "scheme": "https", "tls_config": checked, "static_configs": target},
    ]
    (tmp_path / "prometheus").mkdir()
    prometheus = await asyncio.to_thread(Prometheus, tmp_path / "prometheus", jobs)
    try:
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            health = {t["labels"]["job"]: t for t in await asyncio.to_thread(prometheus.targets)}
            if all(t["health"] != "unknown" for t in health.values()) and len(health) == 2:
                break
            assert asyncio.get_running_loop().time() < deadline, health
            await asyncio.sleep(0.5)
        assert health["with-certificate"]["health"] == "up", health["with-certificate"]["lastError"]
        assert health["without-certificate"]["health"] == "down"
        assert "certificate" in health["without-certificate"]["lastError"].lower()
    finally:
        await asyncio.to_thread(prometheus.stop)
        await running.stop(0)
