"""run.py's check for a router already running on the local stack's address: in plaintext, or over
TLS trusting the CA a running stack left behind (the local stack serves TLS by default). A real
gRPC health server on a loopback port; the certificates are trustme's."""

from collections.abc import AsyncIterator

import grpc
import pytest
import trustme
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from run import router_serving

CA = trustme.CA()


@pytest.fixture
async def tls_health() -> AsyncIterator[tuple[str, health.aio.HealthServicer]]:
    issued = CA.issue_cert("127.0.0.1", "localhost")
    credentials = grpc.ssl_server_credentials([(issued.private_key_pem.bytes(), issued.cert_chain_pems[0].bytes())])
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    yield f"127.0.0.1:{port}", servicer
    await server.stop(None)


async def test_a_tls_router_is_found_with_its_ca_only(tls_health: tuple[str, health.aio.HealthServicer]) -> None:
    address, servicer = tls_health
    assert await router_serving(address, CA.cert_pem.bytes())
    assert not await router_serving(address, None)  # plaintext to a TLS port
    assert not await router_serving(address, trustme.CA().cert_pem.bytes())  # a stale CA from another run
    await servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert not await router_serving(address, CA.cert_pem.bytes())


async def test_a_plaintext_router_is_found_without_a_ca() -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        assert await router_serving(f"127.0.0.1:{port}", None)
    finally:
        await server.stop(None)
