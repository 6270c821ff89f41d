"""The embedding cache against a real redis-server: concurrent reads share MGETs, each caller gets
its own keys' vectors, queued writes all land, and Redis failing is a miss, never an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import numpy as np
import pytest

from subsecond.embedding.embedding_cache import EmbeddingCache
from subsecond.kit.redis_client import RedisClient, connect

if TYPE_CHECKING:
    from redis_server import RedisServer  # tests/redis_server.py, loaded by conftest

TTL_SECONDS = 60


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    redis = connect(redis_server.url, timeout_seconds=0.5)
    try:
        yield redis
    finally:
        await redis.aclose()


def vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(384).astype(np.float32)


async def mget_calls(redis: RedisClient) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_mget", {}).get("calls", 0))


async def test_concurrent_reads_share_mgets_and_each_caller_gets_its_own_vectors(client: RedisClient) -> None:
    for i in range(0, 20, 2):  # the even keys are cached
        await client.set(f"k{i}", vector(i).tobytes())
    cache = EmbeddingCache(client, ttl_seconds=TTL_SECONDS, on_bypass=lambda: None)
    before = await mget_calls(client)

    # The first read goes at once; the nine started while it is in flight wait and go as one MGET.
    results = await asyncio.gather(*(cache.get("t", [f"k{2 * i}", f"k{2 * i + 1}"]) for i in range(10)))

    assert await mget_calls(client) - before == 2
    for i, (cached, missing) in enumerate(results):
        assert cached is not None
        np.testing.assert_array_equal(cached, vector(2 * i))
        assert missing is None


async def test_reads_of_different_tenants_never_share_an_mget(client: RedisClient) -> None:
    """A tenant's keys share a hash tag (one slot of a Redis Cluster, which refuses an MGET over two);
    so each tenant's reads coalesce apart: five concurrent reads of each, one MGET at once and one
    for the four queued behind it, per tenant."""
    await client.set("{a}:1", vector(1).tobytes())
    await client.set("{b}:1", vector(2).tobytes())
    cache = EmbeddingCache(client, ttl_seconds=TTL_SECONDS, on_bypass=lambda: None)
    before = await mget_calls(client)

    results = await asyncio.gather(*(cache.get(tenant, [f"{{{tenant}}}:1"]) for _ in range(5) for tenant in "ab"))

    assert await mget_calls(client) - before == 4
    for (found,), expected in zip(results, [vector(1), vector(2)] * 5, strict=True):
        assert found is not None
        np.testing.assert_array_equal(found, expected)


async def test_a_caller_that_gives_up_while_queued_leaves_the_others_their_answers(client: RedisClient) -> None:
    await client.set("kept", vector(1).tobytes())
    cache = EmbeddingCache(client, ttl_seconds=TTL_SECONDS, on_bypass=lambda: None)
    first = asyncio.create_task(cache.get("t", ["kept"]))
    abandoned = asyncio.create_task(cache.get("t", ["kept"]))
    waiting = asyncio.create_task(cache.get("t", ["kept"]))
    await asyncio.sleep(0)  # all three have started: the first's MGET is in flight, two are queued
    abandoned.cancel()

    for task in (first, waiting):
        (found,) = await task
        assert found is not None
        np.testing.assert_array_equal(found, vector(1))
    assert abandoned.cancelled()


async def test_writes_queued_while_one_is_in_flight_all_land_with_the_ttl(client: RedisClient) -> None:
    cache = EmbeddingCache(client, ttl_seconds=TTL_SECONDS, on_bypass=lambda: None)
    for i in range(10):
        cache.put([f"w{i}a", f"w{i}b"], np.stack([vector(2 * i), vector(2 * i + 1)]))
    await cache.close()

    for i in range(10):
        first, second = await client.mget([f"w{i}a", f"w{i}b"])
        assert isinstance(first, bytes) and isinstance(second, bytes)
        np.testing.assert_array_equal(np.frombuffer(first, dtype=np.float32), vector(2 * i))
        np.testing.assert_array_equal(np.frombuffer(second, dtype=np.float32), vector(2 * i + 1))
        assert 0 < await client.ttl(f"w{i}a") <= TTL_SECONDS


async def test_with_redis_down_reads_find_nothing_and_writes_are_dropped(
    client: RedisClient, redis_server: RedisServer
) -> None:
    bypasses: list[None] = []
    cache = EmbeddingCache(client, ttl_seconds=TTL_SECONDS, on_bypass=lambda: bypasses.append(None))
    redis_server.stop()

    found = await asyncio.gather(cache.get("t", ["a"]), cache.get("t", ["b", "c"]))
    cache.put(["a"], vector(0)[None, :])
    await cache.close()

    assert found == [[None], [None, None]]
    assert bypasses  # the failure opened the breaker; the reads after it were skipped
