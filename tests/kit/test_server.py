"""The server shell, on real servers on loopback."""

import pytest

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
