"""The whole stack on real engines: redis-server, tritonserver with SmolLM2, the ONNX embedding
model, Qdrant Edge, and the four services as real processes on loopback ports, secure as `subsecond
up` runs it: mutual TLS between the services (a throwaway CA per session), TLS on the router's port.
Tests reach the router as a client (trusting the CA) and the cache as the router (its certificate)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from stack_keys import ADMIN_KEY, API_KEYS

from subsecond.router.auth import hash_key
from subsecond.v1 import cache_pb2_grpc, router_pb2_grpc
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

pytestmark = pytest.mark.stack


@pytest.fixture(scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    run_dir: Path = tmp_path_factory.mktemp("stack")
    config = StackConfig(
        ports=Ports.free(),
        run_dir=run_dir,
        environment={
            "SUBSECOND_ROUTER_API_KEYS": ",".join(
                [
                    *(f"{hash_key(key)}={tenant}:generate+workflow" for key, tenant in API_KEYS.items()),
                    f"{hash_key(ADMIN_KEY)}=ops:admin",
                ]
            ),
            "SUBSECOND_ROUTER_SHUTDOWN_GRACE_SECONDS": "30",
        },
    )
    running = Stack(config)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="session")
async def router(stack: Stack) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    async with stack.channel("router", as_service=None) as channel:
        yield router_pb2_grpc.RouterStub(channel)


@pytest.fixture(scope="session")
async def cache(stack: Stack) -> AsyncIterator[cache_pb2_grpc.CacheStub]:
    async with stack.channel("cache") as channel:
        yield cache_pb2_grpc.CacheStub(channel)
