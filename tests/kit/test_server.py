"""The server shell, on real servers on loopback."""

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from subsecond.kit.errors import InvalidArgument
from subsecond.kit.interceptors import WrappingRegistry
from subsecond.kit.server import ServiceDefinition, start_server
from subsecond.kit.settings import ServerSettings

SETTINGS = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_seconds=1, log_level="INFO")


async def test_a_service_that_fails_to_warm_up_releases_its_port() -> None:
    async def refuse() -> None:
        raise RuntimeError("model not ready")

    taken = await start_server(SETTINGS, ServiceDefinition(names=[], register=lambda server: None))
    port = taken.port
    await taken.stop(0)
    settings = ServerSettings(host="127.0.0.1", port=port, metrics_port=0, shutdown_grace_seconds=1, log_level="INFO")
    for _ in range(2):  # the second bind succeeds only if the first failed start let the port go
        with pytest.raises(RuntimeError, match="model not ready"):
            await start_server(settings, ServiceDefinition(names=[], register=lambda server: None, warm_up=refuse))


async def test_servicers_health_and_reflection_are_served_through_the_wrapping_registry() -> None:
    """The shell registers every servicer through kit.interceptors' registry, not gRPC interceptors:
    the service's errors still end with their status, and health and reflection (registered the same
    way; reflection's servicer chosen for grpc.aio) still answer."""
    service = "test.Wrapped"

    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        raise InvalidArgument("prompt: must not be blank")

    def register(registry: WrappingRegistry) -> None:
        handlers = {"Refuse": grpc.unary_unary_rpc_method_handler(refuse)}
        registry.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, handlers)])

    running = await start_server(SETTINGS, ServiceDefinition(names=[service], register=register))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary(f"/{service}/Refuse")(b"", timeout=5)
            assert (refused.value.code(), refused.value.details()) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "prompt: must not be blank",
            )
            health = health_pb2_grpc.HealthStub(channel)
            checked = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert checked.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            listing = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
            names = {s.name async for answer in listing for s in answer.list_services_response.service}
            assert names == {service, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    finally:
        await running.stop(0)
