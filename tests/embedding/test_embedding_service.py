"""The Embedder servicer in-process, in the kit's server shell on a loopback port, with the real
int8 model and a real redis-server as its embedding cache: what it refuses, what bounds a call,
and that a Redis outage costs the cache, never an embedding."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np
import pytest
import redis.asyncio as redis
from prometheus_client import REGISTRY

from subsecond.embedding.service import definition
from subsecond.embedding.settings import EmbeddingSettings
from subsecond.kit.server import start_server
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc

if TYPE_CHECKING:
    from redis_server import RedisServer  # tests/cache/redis_server.py, loaded by conftest

MAX_TEXTS = 4
POLL_SECONDS = 0.01


@pytest.fixture
async def embedder(redis_server: RedisServer, model_dir: Path) -> AsyncIterator[embedding_pb2_grpc.EmbedderStub]:
    """The service as `python -m subsecond.embedding` builds it."""
    settings = EmbeddingSettings.from_env(
        {
            "SUBSECOND_EMBEDDING_PORT": "0",
            "SUBSECOND_EMBEDDING_METRICS_PORT": "0",
            "SUBSECOND_EMBEDDING_MODEL_DIR": str(model_dir),
            "SUBSECOND_EMBEDDING_REDIS_URL": redis_server.url,
            "SUBSECOND_EMBEDDING_MAX_TEXTS_PER_REQUEST": str(MAX_TEXTS),
        }
    )
    running = await start_server(settings.server, definition(settings))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield embedding_pb2_grpc.EmbedderStub(channel)
    finally:
        await running.stop(0)


def rows(response: embedding_pb2.EmbedResponse) -> np.ndarray:
    return np.array([list(embedding.values) for embedding in response.embeddings], dtype=np.float32)


async def cached_keys(redis_url: str, count: int) -> list[str]:
    """The embedding-cache keys, once there are ``count`` (the service writes them after answering)."""
    client = redis.Redis.from_url(redis_url)
    try:
        keys = await eventually(lambda: client.keys("subsecond:v2:emb:*"), lambda keys: len(keys) >= count)
    finally:
        await client.aclose()
    return sorted(key.decode() for key in keys)


async def eventually(read: Callable[[], Awaitable[Any]], done: Callable[[Any], bool], seconds: float = 5.0) -> Any:
    """What ``read`` gives once ``done`` holds of it, or after ``seconds``, whatever it gives then."""
    for _ in range(int(seconds / POLL_SECONDS)):
        if done(value := await read()):
            return value
        await asyncio.sleep(POLL_SECONDS)
    return await read()


async def test_texts_are_embedded_once_then_served_from_the_redis_cache(
    embedder: embedding_pb2_grpc.EmbedderStub, redis_server: RedisServer
) -> None:
    texts = ["How do I reset my password?", "What is the capital of France?"]

    first = await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts))
    assert len(await cached_keys(redis_server.url, 2)) == 2  # written just after the answer
    again = await embedder.Embed(embedding_pb2.EmbedRequest(texts=[texts[1], "Something new"]))

    assert (first.model, first.dimensions, first.cached) == ("all-MiniLM-L6-v2", 384, 0)
    vectors = rows(first)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert again.cached == 1
    np.testing.assert_array_equal(rows(again)[0], vectors[1])
    keys = await cached_keys(redis_server.url, 3)
    assert len(keys) == 3
    assert all(key.startswith("subsecond:v2:emb:all-MiniLM-L6-v2:") for key in keys)


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([], "texts: give at least one text"),
        (["a"] * (MAX_TEXTS + 1), f"texts: {MAX_TEXTS + 1} texts, at most {MAX_TEXTS} per call"),
    ],
)
async def test_a_call_without_texts_or_with_too_many_is_refused(
    embedder: embedding_pb2_grpc.EmbedderStub, texts: list[str], message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == message


async def test_a_very_long_text_is_cut_at_the_models_limit_not_refused(
    embedder: embedding_pb2_grpc.EmbedderStub,
) -> None:
    """Each "word" is one token: both texts are cut at max_seq_length (256) tokens, to the same
    tokens, so the cost of a text is bounded whatever its length."""
    response = await embedder.Embed(embedding_pb2.EmbedRequest(texts=["word " * 50_000, "word " * 400]))
    very_long, long = rows(response)
    np.testing.assert_allclose(very_long, long, atol=1e-5)


async def test_a_megabytes_long_text_is_cut_before_tokenizing(embedder: embedding_pb2_grpc.EmbedderStub) -> None:
    """A 3.9 MB text (under gRPC's 4 MiB) is cut at MAX_TEXT_CHARS (4,096) characters before the tokenizer
    reads it: its embedding is its first 4,096 characters', returned in well under the 2.5-5.5 s the
    tokenizer took over the whole text (a generous bound; the benchmark has the figure)."""
    sentence = "The quick brown fox jumps over the lazy dog while the cat sleeps. "
    huge = sentence * (3_900_000 // len(sentence))
    started = time.perf_counter()
    response = await embedder.Embed(embedding_pb2.EmbedRequest(texts=[huge, huge[:4096]]))
    elapsed = time.perf_counter() - started
    whole, prefix = rows(response)
    np.testing.assert_array_equal(whole, prefix)
    assert elapsed < 1.0


async def test_with_redis_down_texts_are_still_embedded(
    embedder: embedding_pb2_grpc.EmbedderStub, redis_server: RedisServer
) -> None:
    texts = ["How do I reset my password?"]
    cached = (await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts))).embeddings[0].values

    async def cached_texts() -> int:
        return (await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts))).cached

    # The first call's write (after its answer) has landed: none is left to fail once Redis stops.
    assert await eventually(cached_texts, lambda count: count == 1) == 1
    redis_server.stop()
    bypasses = REGISTRY.get_sample_value("subsecond_embedding_cache_bypass_total") or 0.0

    response = await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts))

    assert response.cached == 0
    np.testing.assert_allclose(response.embeddings[0].values, cached, atol=1e-6)

    # The read failed, and the write (after the answer) was skipped while Redis is marked down.
    async def bypassed() -> float | None:
        return REGISTRY.get_sample_value("subsecond_embedding_cache_bypass_total")

    assert await eventually(bypassed, lambda count: count == bypasses + 2) == bypasses + 2


async def test_each_tenant_has_its_own_cached_embeddings(
    embedder: embedding_pb2_grpc.EmbedderStub, redis_server: RedisServer
) -> None:
    """A text one tenant embedded is a model call for another (issue 10: the cache's timing must
    not tell a tenant what another sent), and the same vector."""
    texts = ["Is the merger with Initech still on?"]

    first = await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts, tenant="acme"))
    await cached_keys(redis_server.url, 1)
    again = await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts, tenant="acme"))
    other = await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts, tenant="globex"))
    untenanted = await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts))

    assert (first.cached, again.cached, other.cached, untenanted.cached) == (0, 1, 0, 0)
    np.testing.assert_allclose(rows(other), rows(first), atol=1e-6)
    keys = sorted(key.split(":")[4].strip("{}") for key in await cached_keys(redis_server.url, 3))
    assert keys == ["-", "acme", "globex"]


@pytest.mark.parametrize("tenant", ["*", "acme:x", "a b", "acme*"])
async def test_a_tenant_that_is_not_a_name_is_refused(embedder: embedding_pb2_grpc.EmbedderStub, tenant: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await embedder.Embed(embedding_pb2.EmbedRequest(texts=["hello"], tenant=tenant))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
