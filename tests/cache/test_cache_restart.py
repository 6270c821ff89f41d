"""Restarts under the Cache servicer: Redis and the service itself, each started again on the same data.

The servicer runs in process as in test_cache_service.py (whose request helpers it uses), against a real
redis-server and Qdrant Edge on disk. Redis restarted without its data (how the stack ran it before it kept
an append-only file, and what an external Redis that lost its data still does) leaves vectors whose answers
are gone: they must never be served, and each must go the first time a lookup finds it.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_embedder import FakeEmbedder, towards
from redis_server import RedisServer
from test_cache_service import PARAPHRASE, QUESTION, lookup, metric, serving, settings, store

from subsecond.cache.service import definition
from subsecond.v1 import cache_pb2, cache_pb2_grpc
from subsecond_tools.stack.redis import find_redis_server

GONE = "subsecond_cache_expired_vectors_total"


@pytest.fixture
async def cache(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path
) -> AsyncIterator[cache_pb2_grpc.CacheStub]:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    cache_settings = settings(redis_server.url, fake_embedder, tmp_path)
    async with serving(cache_settings, definition(cache_settings)) as stub:
        yield stub


async def test_after_redis_lost_its_data_a_neighbour_without_an_answer_is_a_miss_and_is_deleted(
    cache: cache_pb2_grpc.CacheStub, redis_server: RedisServer
) -> None:
    await cache.Store(store(QUESTION, "Canberra."))
    assert (await cache.Lookup(lookup(PARAPHRASE))).tier == cache_pb2.CACHE_TIER_SEMANTIC
    redis_server.stop()
    redis_server.start()  # the fixture's server keeps nothing: every answer is gone, the vector stays
    await _until_redis_is_tried_again(cache)
    gone = metric(GONE)

    first = await cache.Lookup(lookup(PARAPHRASE))
    again = await cache.Lookup(lookup(PARAPHRASE))
    exact = await cache.Lookup(lookup(QUESTION))

    assert not first.hit and not first.bypassed
    assert not again.hit and not exact.hit
    assert metric(GONE) == gone + 1  # deleted by the first lookup: the others no longer found it

    await cache.Store(store(QUESTION, "Canberra, again."))
    refilled = await cache.Lookup(lookup(PARAPHRASE))
    assert refilled.hit and list(refilled.answer.chunks) == ["Canberra, again."]


async def test_a_redis_that_keeps_its_file_serves_both_tiers_after_a_crash(
    fake_embedder: FakeEmbedder, tmp_path: Path
) -> None:
    durable = RedisServer(find_redis_server(), tmp_path / "redis", persistent=True)
    (tmp_path / "redis").mkdir()
    durable.start()
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    cache_settings = settings(durable.url, fake_embedder, tmp_path)
    try:
        async with serving(cache_settings, definition(cache_settings)) as cache:
            await cache.Store(store(QUESTION, "Canberra."))
            durable.stop(signal.SIGKILL)
            durable.start()
            await _until_redis_is_tried_again(cache)
            gone = metric(GONE)

            exact = await cache.Lookup(lookup(QUESTION))
            semantic = await cache.Lookup(lookup(PARAPHRASE))
    finally:
        durable.stop()

    assert exact.tier == cache_pb2.CACHE_TIER_EXACT and list(exact.answer.chunks) == ["Canberra."]
    assert semantic.tier == cache_pb2.CACHE_TIER_SEMANTIC and list(semantic.answer.chunks) == ["Canberra."]
    assert metric(GONE) == gone


async def test_a_restarted_cache_service_serves_what_it_stored_before(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    cache_settings = settings(redis_server.url, fake_embedder, tmp_path)
    async with serving(cache_settings, definition(cache_settings)) as cache:
        await cache.Store(store(QUESTION, "Canberra."))

    # A new process would build the same service from the same settings: Redis and the vectors on disk.
    async with serving(cache_settings, definition(cache_settings)) as restarted:
        semantic = await restarted.Lookup(lookup(PARAPHRASE))

    assert semantic.tier == cache_pb2.CACHE_TIER_SEMANTIC and list(semantic.answer.chunks) == ["Canberra."]


async def _until_redis_is_tried_again(cache: cache_pb2_grpc.CacheStub) -> None:
    """Lookups a failed Redis made during the restart open the fail-open breaker for its cool-down."""
    for _ in range(100):
        if not (await cache.Lookup(lookup("a prompt nobody stored", semantic=False))).bypassed:
            return
        await asyncio.sleep(0.05)
    pytest.fail("the cache never tried Redis again after its restart")

