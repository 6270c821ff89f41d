"""The Cache servicer on a real Redis Cluster and a real Sentinel group (tests/redis_cluster.py).

The servicer runs in process as in test_cache_service.py (whose request helpers it uses), with the
semantic tier off: only the exact tier is on Redis. Tenants' answers land on
different primaries and are read and invalidated there; a tenant's keys share one slot. A primary
killed with SIGKILL is replaced by its replica: meanwhile lookups keep answering, as misses that name
the bypassed backend (never errors), and once the replica is promoted the answers stored before the
crash are hits again. Each failover's time (from the kill to the first hit) is measured and printed
(``pytest -s``), with the slowest lookup meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from fake_embedder import FakeEmbedder
from redis_cluster import RedisCluster, RedisProcess, RedisSentinel, cli, redis_cluster, redis_sentinel
from test_cache_service import lookup, serving, settings, store

from subsecond.cache.service import definition
from subsecond.v1 import cache_pb2, cache_pb2_grpc

__all__ = ["redis_cluster", "redis_sentinel"]  # fixtures

TENANTS = [f"tenant-{index}" for index in range(12)]
# A failover must be over in this long: detection (a node timeout of 1 s, a sentinel's 0.5 s), the
# election and the client finding the new primary, on a busy two-core machine.
FAILOVER_LIMIT_SECONDS = 20.0
# Lookups answered (as misses) while the primary is gone, 50 ms apart: a failover takes seconds, so a
# service that kept answering made several; one whose first lookup waited the failover out (redis-py's
# cluster retries did, 3.4 s) made none.
LEAST_ANSWERED_MEANWHILE = 3


@pytest.fixture
async def cluster_cache(
    redis_cluster: RedisCluster, fake_embedder: FakeEmbedder, tmp_path: Path
) -> AsyncIterator[cache_pb2_grpc.CacheStub]:
    cache_settings = settings(redis_cluster.url, fake_embedder, tmp_path, SEMANTIC_ENABLED="false")
    async with serving(cache_settings, definition(cache_settings)) as stub:
        yield stub


@pytest.fixture
async def sentinel_cache(
    redis_sentinel: RedisSentinel, fake_embedder: FakeEmbedder, tmp_path: Path
) -> AsyncIterator[cache_pb2_grpc.CacheStub]:
    cache_settings = settings(redis_sentinel.url, fake_embedder, tmp_path, SEMANTIC_ENABLED="false")
    async with serving(cache_settings, definition(cache_settings)) as stub:
        yield stub


async def test_tenants_answers_spread_over_the_primaries_and_each_tenant_stays_on_one_slot(
    cluster_cache: cache_pb2_grpc.CacheStub, redis_cluster: RedisCluster
) -> None:
    keys: dict[str, list[str]] = {}
    for tenant in TENANTS:
        for model in ("small", "large"):
            request = store("What is the capital of France?", "Paris.", tenant=tenant, model=model)
            keys.setdefault(tenant, []).append((await cluster_cache.Store(request)).key)

    primaries = {redis_cluster.primary_of(tenant_keys[0]).port for tenant_keys in keys.values()}
    assert len(primaries) >= 2  # twelve tenants over three primaries: not all on one
    port = next(iter(redis_cluster.nodes))
    for tenant_keys in keys.values():
        assert len({cli(port, "cluster", "keyslot", key) for key in tenant_keys}) == 1
    for tenant in TENANTS:
        hit = await cluster_cache.Lookup(lookup("What is the capital of France?", tenant=tenant, model="large"))
        assert hit.tier == cache_pb2.CACHE_TIER_EXACT and not hit.bypassed


async def test_invalidation_finds_a_tenants_keys_on_whichever_primary_holds_them(
    cluster_cache: cache_pb2_grpc.CacheStub,
) -> None:
    for tenant in TENANTS:
        for prompt in ("One?", "Two?", "Three?"):
            await cluster_cache.Store(store(prompt, "An answer.", tenant=tenant))

    removed = [
        (await cluster_cache.Invalidate(cache_pb2.InvalidateRequest(query=cache_pb2.CacheQuery(tenant=tenant)))).removed
        for tenant in TENANTS[:6]
    ]

    assert removed == [3] * 6
    assert not (await cluster_cache.Lookup(lookup("Two?", tenant=TENANTS[0], semantic=False))).hit
    assert (await cluster_cache.Lookup(lookup("Two?", tenant=TENANTS[6], semantic=False))).hit


@pytest.mark.stack
@pytest.mark.long  # a failover: the cluster's node timeout, or Sentinel's down-after, then a promotion
async def test_a_killed_cluster_primary_is_replaced_and_its_answers_are_served_again(
    cluster_cache: cache_pb2_grpc.CacheStub, redis_cluster: RedisCluster
) -> None:
    stored = await cluster_cache.Store(store("Which ocean is the largest?", "The Pacific."))
    primary = redis_cluster.primary_of(stored.key)
    await _replicated(primary)

    await _failover("Redis Cluster", cluster_cache, primary, "Which ocean is the largest?")

    assert redis_cluster.primary_of(stored.key).port != primary.port
    await _writes_again(cluster_cache)


@pytest.mark.stack
@pytest.mark.long  # a failover: the cluster's node timeout, or Sentinel's down-after, then a promotion
async def test_a_killed_sentinel_primary_is_followed_to_the_promoted_replica(
    sentinel_cache: cache_pb2_grpc.CacheStub, redis_sentinel: RedisSentinel
) -> None:
    await sentinel_cache.Store(store("Which ocean is the largest?", "The Pacific."))
    await _replicated(redis_sentinel.primary)

    await _failover("Sentinel", sentinel_cache, redis_sentinel.primary, "Which ocean is the largest?")

    assert redis_sentinel.primary_port() == redis_sentinel.replica.port
    await _writes_again(sentinel_cache)


async def _replicated(primary: RedisProcess) -> None:
    """Waits until the primary's replica has every write so far (Redis replicates asynchronously:
    a crash can lose the last writes, which is not what these tests are about)."""
    client = redis.Redis(port=primary.port)
    try:
        assert await client.execute_command("WAIT", 1, 5000) == 1
    finally:
        await client.aclose()


async def _failover(kind: str, cache: cache_pb2_grpc.CacheStub, primary: RedisProcess, prompt: str) -> None:
    """Kills the primary and looks the prompt up every 50 ms until it is a hit again; prints the
    seconds that took, how many lookups were misses that bypassed Redis meanwhile, and the slowest of
    them. Every lookup meanwhile answers (fails open): none ends with an error, none waits it out."""
    primary.kill()
    killed = time.monotonic()
    bypassed, slowest = 0, 0.0
    while time.monotonic() - killed < FAILOVER_LIMIT_SECONDS:
        started = time.monotonic()
        response = await cache.Lookup(lookup(prompt, semantic=False))
        if response.hit:
            assert response.tier == cache_pb2.CACHE_TIER_EXACT
            assert bypassed >= LEAST_ANSWERED_MEANWHILE
            print(
                f"\n{kind} failover: first hit {time.monotonic() - killed:.2f} s after SIGKILL; "
                f"{bypassed} misses meanwhile, the slowest {slowest:.2f} s"
            )
            return
        slowest = max(slowest, time.monotonic() - started)
        assert response.bypassed == "redis"  # not a plain miss: the answer was replicated
        bypassed += 1
        await asyncio.sleep(0.05)
    raise AssertionError(f"no hit {FAILOVER_LIMIT_SECONDS} s after the primary was killed")


async def _writes_again(cache: cache_pb2_grpc.CacheStub) -> None:
    await cache.Store(store("Which planet is the largest?", "Jupiter."))
    hit = await cache.Lookup(lookup("Which planet is the largest?", semantic=False))
    assert hit.hit and list(hit.answer.chunks) == ["Jupiter."]
