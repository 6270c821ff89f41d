"""The admin RPCs end to end: the router in-process (fake generation service of
test_router_service.py) over the real cache service, redis-server and Qdrant Edge, so that an
invalidation is seen to remove what a Generate call stored, and a new revision to miss it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from redis_server import RedisServer
from test_router_service import FakeGenerator, _serve

from subsecond.cache.service import definition as cache_definition
from subsecond.cache.settings import CacheSettings
from subsecond.kit.server import start_server
from subsecond.router.auth import hash_key
from subsecond.router.service import definition
from subsecond.router.settings import RouterSettings
from subsecond.v1 import generation_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2

KEYS = f"{hash_key('ops')}=ops:admin,{hash_key('blue')}=blue:generate,{hash_key('green')}=green:generate"


@asynccontextmanager
async def routers(tmp_path: Path, redis: RedisServer, revision: str) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    cache_settings = CacheSettings.from_env(
        {
            "SUBSECOND_CACHE_PORT": "0",
            "SUBSECOND_CACHE_METRICS_PORT": "0",
            "SUBSECOND_CACHE_REDIS_URL": redis.url,
            "SUBSECOND_CACHE_SEMANTIC_ENABLED": "false",  # no embedding service: the exact tier is enough here
            "SUBSECOND_CACHE_VECTOR_PATH": str(tmp_path / "vectors"),
        }
    )
    cache = await start_server(cache_settings.server, cache_definition(cache_settings))
    generation, generation_port = await _serve(
        lambda s: generation_pb2_grpc.add_GeneratorServicer_to_server(FakeGenerator(), s)
    )
    settings = RouterSettings.from_env(
        {
            "SUBSECOND_ROUTER_PORT": "0",
            "SUBSECOND_ROUTER_METRICS_PORT": "0",
            "SUBSECOND_ROUTER_SHUTDOWN_GRACE_SECONDS": "1",
            "SUBSECOND_ROUTER_CACHE_URL": f"127.0.0.1:{cache.port}",
            "SUBSECOND_ROUTER_GENERATION_URL": f"127.0.0.1:{generation_port}",
            "SUBSECOND_ROUTER_API_KEYS": KEYS,
            "SUBSECOND_ROUTER_TIER_REVISIONS": f"small={revision}",
            "SUBSECOND_ROUTER_NEAR_CACHE_ENTRIES": "0",  # every lookup reaches the cache service
        }
    )
    router = await start_server(settings.server, definition(settings))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{router.port}") as channel:
            yield router_pb2_grpc.RouterStub(channel)
    finally:
        await router.stop(0)
        await generation.stop(0)
        await cache.stop(0)


async def served_by(router: router_pb2_grpc.RouterStub, key: str, prompt: str) -> int:
    request = router_pb2.GenerateRequest(prompt=prompt, model="small")
    responses = [response async for response in router.Generate(request, metadata=(("x-api-key", key),))]
    return responses[-1].done.served_by


async def until_cached(router: router_pb2_grpc.RouterStub, key: str, prompt: str) -> None:
    """The write-through runs after the answer: waits until a lookup finds it."""
    for _ in range(200):
        if await served_by(router, key, prompt) == types_pb2.SERVED_BY_EXACT:
            return
    pytest.fail(f"{prompt!r} was never cached")


@pytest.fixture
async def router(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    async with routers(tmp_path, redis_server, "m.1") as stub:
        yield stub


async def test_an_admin_invalidates_one_prompt_then_a_tenant_and_nothing_of_another(
    router: router_pb2_grpc.RouterStub,
) -> None:
    admin = (("x-api-key", "ops"),)
    for key, prompt in (("blue", "one"), ("blue", "two"), ("green", "one")):
        await served_by(router, key, prompt)
        await until_cached(router, key, prompt)
    one = router_pb2.InvalidateCacheRequest(tenant="blue", model="small", prompt="one")
    assert (await router.InvalidateCache(one, metadata=admin)).removed == 1
    assert await served_by(router, "blue", "one") == types_pb2.SERVED_BY_GENERATED
    assert await served_by(router, "blue", "two") == types_pb2.SERVED_BY_EXACT
    await until_cached(router, "blue", "one")
    tenant = router_pb2.InvalidateCacheRequest(tenant="blue")
    assert (await router.InvalidateCache(tenant, metadata=admin)).removed == 2
    assert await served_by(router, "green", "one") == types_pb2.SERVED_BY_EXACT
    stats = await router.CacheStats(router_pb2.CacheStatsRequest(), metadata=admin)
    assert stats.revisions["small"] == "m.1.e0"


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (router_pb2.InvalidateCacheRequest(tenant="*"), "tenant"),
        (router_pb2.InvalidateCacheRequest(tenant="nobody"), "tenant"),
        (router_pb2.InvalidateCacheRequest(tenant="blue", model="huge"), "model"),
        (router_pb2.InvalidateCacheRequest(tenant="blue", prompt="one"), "model"),
    ],
)
async def test_an_invalidation_names_a_known_tenant_and_tier(
    router: router_pb2_grpc.RouterStub, request_: router_pb2.InvalidateCacheRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await router.InvalidateCache(request_, metadata=(("x-api-key", "ops"),))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.details() or "").startswith(field + ":")


async def test_a_new_revision_misses_the_answers_of_the_old(tmp_path: Path, redis_server: RedisServer) -> None:
    async with routers(tmp_path / "old", redis_server, "m.1") as old:
        await until_cached(old, "blue", "one")
    async with routers(tmp_path / "new", redis_server, "m.2") as new:
        assert await served_by(new, "blue", "one") == types_pb2.SERVED_BY_GENERATED
