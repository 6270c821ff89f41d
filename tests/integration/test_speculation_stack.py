"""Speculative misses on the real engines, on a stack of this module's own whose router speculates
(``SPECULATE=always``; the default is off): a miss is embedded once, by its lookup, and stored in both
tiers; a semantic hit cancels the generation it started, in the generation service (which cancels
Triton's request)."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from router_calls import call, metric, store_counts, write_throughs

from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

pytestmark = pytest.mark.stack

# Embed calls the embedding service answered (its request histogram counts every call).
EMBED_CALLS = "subsecond_embedding_request_duration_seconds_count"
STREAMS = "subsecond_generation_streams_total"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    config = StackConfig(
        ports=Ports.free(),
        run_dir=tmp_path_factory.mktemp("speculating"),
        # A generous Redis timeout for the cache: here Triton's speculative generations take both cores,
        # and a 50 ms Redis call that timed out failed the write-through this module counts (round
        # ten's CI: "write-through failed: UNAVAILABLE redis unavailable", the cache's Redis call timed out).
        environment={"SUBSECOND_ROUTER_SPECULATE": "always", "SUBSECOND_CACHE_REDIS_TIMEOUT_MS": "1000"},
    )
    running = Stack(config)
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(scope="module")
async def router(stack: Stack) -> AsyncIterator[router_pb2_grpc.RouterStub]:
    async with stack.channel("router", as_service=None) as channel:
        yield router_pb2_grpc.RouterStub(channel)


@pytest.fixture(scope="module")
async def cache(stack: Stack) -> AsyncIterator[cache_pb2_grpc.CacheStub]:
    async with stack.channel("cache") as channel:
        yield cache_pb2_grpc.CacheStub(channel)


@pytest.fixture(scope="module", autouse=True)
async def warm(router: router_pb2_grpc.RouterStub) -> None:
    """One miss first: the first lookups after start-up (ONNX Runtime's and Qdrant Edge's first calls)
    can take longer than CACHE_TIMEOUT_MS on a loaded machine, and a lookup that timed out has no
    embedding to hand to the store."""
    await call(router, ask(f"Say hello, code {uuid.uuid4().hex[:6]}."))


def ask(prompt: str) -> router_pb2.GenerateRequest:
    # Room for the small model to finish: a truncated answer is never stored (stop 22's CI failed on one).
    return router_pb2.GenerateRequest(prompt=prompt, max_tokens=128)


def query(prompt: str) -> cache_pb2.CacheQuery:
    return cache_pb2.CacheQuery(
        tenant="local",
        model="small",
        messages=[types_pb2.ChatMessage(role="user", content=prompt)],
        sampling=types_pb2.SamplingParams(top_p=1.0),
    )


async def test_a_miss_is_generated_and_stored_with_one_embedding_call(
    stack: Stack, router: router_pb2_grpc.RouterStub, cache: cache_pb2_grpc.CacheStub
) -> None:
    prompt = f"In one short sentence, name one planet that has rings (code {uuid.uuid4().hex[:6]})."
    embedded = metric(stack, "embedding", EMBED_CALLS)
    bypassed = metric(stack, "router", "subsecond_router_cache_bypass_total")
    stores = store_counts(stack)

    answer = await call(router, ask(prompt))
    assert answer.done.finish_reason == types_pb2.FINISH_REASON_STOP  # only finished answers are stored
    assert (await write_throughs(stack, stores, result="stored"))["stored"] >= 1

    assert answer.done.served_by == types_pb2.SERVED_BY_GENERATED
    assert metric(stack, "router", "subsecond_router_cache_bypass_total") == bypassed  # both lookups answered in time
    assert metric(stack, "embedding", EMBED_CALLS) - embedded == 1  # the lookup's; the store reused it
    exact = await cache.Lookup(cache_pb2.LookupRequest(query=query(prompt), semantic=False), timeout=10)
    by_vector = await cache.Lookup(
        cache_pb2.LookupRequest(query=query(prompt), semantic=True, skip_exact=True), timeout=10
    )
    assert exact.hit and exact.tier == cache_pb2.CACHE_TIER_EXACT
    assert by_vector.hit and by_vector.tier == cache_pb2.CACHE_TIER_SEMANTIC  # indexed with that embedding
    assert by_vector.similarity == pytest.approx(1.0, abs=1e-3)


async def test_a_semantic_hit_cancels_the_generation_it_started(
    stack: Stack, router: router_pb2_grpc.RouterStub
) -> None:
    stores = store_counts(stack)
    original = await call(router, ask("How many wheels does a bicycle have?"))
    assert original.done.served_by == types_pb2.SERVED_BY_GENERATED
    assert (await write_throughs(stack, stores, result="stored"))["stored"] >= 1
    cancelled = metric(stack, "generation", STREAMS, outcome="cancelled")
    speculated = metric(stack, "router", "subsecond_router_speculative_generations_total", outcome="cancelled")

    paraphrase = await call(router, ask("How many wheels do bicycles have?"))
    await asyncio.sleep(1.0)

    assert paraphrase.done.served_by == types_pb2.SERVED_BY_SEMANTIC
    assert paraphrase.text == original.text
    assert metric(stack, "router", "subsecond_router_speculative_generations_total", outcome="cancelled") == (
        speculated + 1
    )
    assert metric(stack, "generation", STREAMS, outcome="cancelled") == cancelled + 1
