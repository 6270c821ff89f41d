"""Channels between services, against real gRPC servers on loopback."""

from grpc_health.v1 import health_pb2, health_pb2_grpc

from subsecond.kit.channels import open_channel
from subsecond.kit.server import ServiceDefinition, start_server
from subsecond.kit.settings import ServerSettings

SETTINGS = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_seconds=1, log_level="INFO")
HEALTH = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


async def test_calls_are_spread_over_every_address_of_the_target() -> None:
    """Two replicas behind one target (as a headless Service's name resolves in a cluster): each is
    told apart by the status it reports for a probe name, and both must answer."""
    replicas = [
        await start_server(SETTINGS, ServiceDefinition(names=[], register=lambda server: None)) for _ in range(2)
    ]
    try:
        await replicas[0].health.set("probe", health_pb2.HealthCheckResponse.SERVING)
        await replicas[1].health.set("probe", health_pb2.HealthCheckResponse.NOT_SERVING)
        target = "ipv4:" + ",".join(f"127.0.0.1:{replica.port}" for replica in replicas)
        channel = open_channel(target, [HEALTH])
        try:
            stub = health_pb2_grpc.HealthStub(channel)
            await channel.channel_ready()
            seen = {
                (await stub.Check(health_pb2.HealthCheckRequest(service="probe"), timeout=5)).status for _ in range(20)
            }
        finally:
            await channel.close()
    finally:
        for replica in replicas:
            await replica.stop(0)
    assert seen == {health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING}
