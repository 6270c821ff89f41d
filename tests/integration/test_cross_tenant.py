"""Issue 10's target on the real, secure stack: 0 successful cross-tenant reads, writes or
invalidations through every public and inner RPC, with and without credentials.

Tenant blue ("A") has an answer cached. Tenant green ("B"), the anonymous tenant, callers with a
wrong key, and callers of the inner services that are not the service allowed to call them (another
service's certificate, a TLS client without one, a plaintext client) then try to read it (Generate
it as themselves, look it up in the cache), write over it (Cache/Store naming blue), remove it
(Router/InvalidateCache without the admin scope, Cache/Invalidate without the router's identity or
with ``*``), or learn of it (statistics, the embedding service's per-tenant cache). Each attempt's
status is asserted; afterwards blue's answer is still served from the cache, and its entry count
and vectors are what they were.
"""

import uuid
from collections.abc import AsyncIterable, Awaitable, Callable
from functools import partial
from typing import Any

import grpc
import pytest
from router_calls import call, store_counts, write_throughs
from stack_keys import ADMIN_KEY

from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    types_pb2,
)
from subsecond_tools.stack.runner import Stack

pytestmark = pytest.mark.stack

BLUE, GREEN, WRONG = "key-blue", "key-green", "key-blue-not-really"
CACHED = (types_pb2.SERVED_BY_EXACT, types_pb2.SERVED_BY_SEMANTIC)
OK, DENIED, UNAUTHENTICATED = grpc.StatusCode.OK, grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED
# A refused handshake: no client certificate, a plaintext client of a TLS port.
NO_HANDSHAKE = grpc.StatusCode.UNAVAILABLE
INVALID = grpc.StatusCode.INVALID_ARGUMENT


def keyed(key: str | None) -> list[tuple[str, str]] | None:
    return [("x-api-key", key)] if key is not None else None


async def status(attempt: Awaitable[Any] | AsyncIterable[Any]) -> grpc.StatusCode:
    """How a call ended (a stream is read to its end)."""
    try:
        if isinstance(attempt, AsyncIterable):
            async for _ in attempt:
                pass
        else:
            await attempt
    except grpc.aio.AioRpcError as error:
        return error.code()
    return OK


def query(tenant: str, prompt: str) -> cache_pb2.CacheQuery:
    return cache_pb2.CacheQuery(
        tenant=tenant,
        model="small",
        messages=[types_pb2.ChatMessage(role="user", content=prompt)],
        sampling=types_pb2.SamplingParams(temperature=0.0),
    )


@pytest.fixture(scope="module")
def prompt() -> str:
    return f"In one short sentence: what colour is the sky on a clear day? (case {uuid.uuid4().hex[:8]})"


def ask(prompt: str) -> router_pb2.GenerateRequest:
    """A prompt alone (as a workflow step asks it too), room for a short answer to finish: only
    answers that finish are cached."""
    return router_pb2.GenerateRequest(prompt=prompt, model="small", max_tokens=96)


async def blue_entries(router: router_pb2_grpc.RouterStub) -> cache_pb2.TenantStats:
    stats = await router.CacheStats(router_pb2.CacheStatsRequest(tenant="blue"), metadata=keyed(ADMIN_KEY))
    return stats.cache.tenants["blue"]


@pytest.fixture(scope="module")
async def blue_cached(stack: Stack, router: router_pb2_grpc.RouterStub, prompt: str) -> cache_pb2.TenantStats:
    """Blue's answer to ``prompt``, generated and then served from the cache."""
    stores = store_counts(stack)
    first = await call(router, ask(prompt), BLUE)
    assert first.done.finish_reason == types_pb2.FINISH_REASON_STOP, "only finished answers are cached"
    assert (await write_throughs(stack, stores, result="stored"))["stored"] >= 1
    assert (await call(router, ask(prompt), BLUE)).done.served_by in CACHED
    return await blue_entries(router)


async def test_no_caller_reads_writes_or_removes_another_tenants_cache(
    stack: Stack, router: router_pb2_grpc.RouterStub, prompt: str, blue_cached: cache_pb2.TenantStats
) -> None:
    assert blue_cached.exact_entries >= 1 and blue_cached.vectors >= 1
    # The inner services as the wrong callers: another service's certificate, TLS without one, plaintext.
    impostors = {
        "as generation": stack.channel("cache", as_service="generation"),
        "without a certificate": stack.channel("cache", as_service=None),
        "in plaintext": grpc.aio.insecure_channel(stack.address("cache")),
    }
    embedding_as = {
        # The cache and the router (the HTTP API's /v1/embeddings) are its callers; generation is not.
        "as generation": stack.channel("embedding", as_service="generation"),
        "without a certificate": stack.channel("embedding", as_service=None),
    }
    generation_as = {
        "as cache": stack.channel("generation", as_service="cache"),
        "in plaintext": grpc.aio.insecure_channel(stack.address("generation")),
    }
    router_cache = stack.channel("cache")  # the router's own identity: only its tenant checks remain
    channels = [*impostors.values(), *embedding_as.values(), *generation_as.values(), router_cache]
    workflow = router_pb2.WorkflowRequest(steps=[router_pb2.WorkflowStep(id="read", request=ask(prompt))])
    try:
        attempts = [
            *router_attempts(router, prompt, workflow),
            *cache_attempts(impostors, router_cache, prompt),
            *inner_attempts(embedding_as, generation_as, prompt),
        ]
        outcomes = {name: await status(make()) for name, make, _ in attempts}
        assert outcomes == {name: code for name, _, code in attempts}
    finally:
        for channel in channels:
            await channel.close()

    # Reads as green and as the anonymous tenant are served, but never from blue's entries.
    stores = store_counts(stack)
    assert (await call(router, ask(prompt), GREEN)).done.served_by not in CACHED
    events = [event async for event in router.RunWorkflow(workflow)]
    (step,) = [event.chunk.done for event in events if event.HasField("chunk") and event.chunk.HasField("done")]
    assert step.served_by not in CACHED

    # An admin removes green's entries: blue's stay, and are what they were.
    # green's answer and the anonymous one
    assert (await write_throughs(stack, stores, count=2, result="stored"))["stored"] >= 2
    removed = await router.InvalidateCache(router_pb2.InvalidateCacheRequest(tenant="green"), metadata=keyed(ADMIN_KEY))
    assert removed.removed >= 1 and removed.vectors_removed >= 1
    assert await blue_entries(router) == blue_cached
    again = await call(router, ask(prompt), BLUE)
    assert again.done.served_by in CACHED and "poisoned" not in again.text


Attempt = tuple[str, Callable[[], "Awaitable[Any] | AsyncIterable[Any]"], grpc.StatusCode]


def router_attempts(
    router: router_pb2_grpc.RouterStub, prompt: str, workflow: router_pb2.WorkflowRequest
) -> list[Attempt]:
    """Every router RPC with a wrong key; the admin RPCs without the admin scope or with a pattern."""
    attempts: list[Attempt] = [
        ("Router/Generate, wrong key", lambda: router.Generate(ask(prompt), metadata=keyed(WRONG)), UNAUTHENTICATED),
        ("Router/RunWorkflow, wrong key", lambda: router.RunWorkflow(workflow, metadata=keyed(WRONG)), UNAUTHENTICATED),
        (
            "Router/ListStaticRoutes, wrong key",
            lambda: router.ListStaticRoutes(router_pb2.ListStaticRoutesRequest(), metadata=keyed(WRONG)),
            UNAUTHENTICATED,
        ),
    ]
    for who, key, code in (("green", GREEN, DENIED), ("no key", None, DENIED), ("wrong key", WRONG, UNAUTHENTICATED)):
        invalidate = router_pb2.InvalidateCacheRequest(tenant="blue")
        stats = router_pb2.CacheStatsRequest(tenant="blue")
        attempts += [
            (
                f"Router/InvalidateCache of blue, {who}",
                partial(router.InvalidateCache, invalidate, metadata=keyed(key)),
                code,
            ),
            (f"Router/CacheStats of blue, {who}", partial(router.CacheStats, stats, metadata=keyed(key)), code),
        ]
    admin = keyed(ADMIN_KEY)
    attempts += [
        (
            "Router/InvalidateCache of *, admin",
            partial(router.InvalidateCache, router_pb2.InvalidateCacheRequest(tenant="*"), metadata=admin),
            INVALID,
        ),
        (
            "Router/CacheStats of *, admin",
            partial(router.CacheStats, router_pb2.CacheStatsRequest(tenant="*"), metadata=admin),
            INVALID,
        ),
    ]
    return attempts


def cache_attempts(
    impostors: dict[str, grpc.aio.Channel], router_cache: grpc.aio.Channel, prompt: str
) -> list[Attempt]:
    """Every cache RPC naming blue from each caller that is not the router, and naming ``*`` as the router."""
    poisoned = cache_pb2.CachedAnswer(chunks=["poisoned"], finish_reason=types_pb2.FINISH_REASON_STOP)

    def requests(tenant: str) -> dict[str, Any]:
        return {
            "Lookup": cache_pb2.LookupRequest(query=query(tenant, prompt), semantic=True),
            "Store": cache_pb2.StoreRequest(query=query(tenant, prompt), answer=poisoned),
            "Invalidate": cache_pb2.InvalidateRequest(query=cache_pb2.CacheQuery(tenant=tenant)),
            "Stats": cache_pb2.StatsRequest(tenant=tenant),
        }

    attempts: list[Attempt] = []
    for who, channel in {**impostors, "as router": router_cache}.items():
        tenant = "*" if who == "as router" else "blue"
        code = {"as router": INVALID, "as generation": DENIED}.get(who, NO_HANDSHAKE)
        stub = cache_pb2_grpc.CacheStub(channel)
        for rpc, request in requests(tenant).items():
            attempts.append((f"Cache/{rpc} of {tenant}, {who}", partial(getattr(stub, rpc), request, timeout=30), code))
    return attempts


def inner_attempts(
    embedding_as: dict[str, grpc.aio.Channel], generation_as: dict[str, grpc.aio.Channel], prompt: str
) -> list[Attempt]:
    """The embedding service (whose per-tenant cache would time blue's texts) and generation, from
    callers that are not theirs."""
    embed = embedding_pb2.EmbedRequest(texts=[prompt], tenant="blue")
    generate = generation_pb2.GenerationRequest(
        model="small", messages=[types_pb2.ChatMessage(role="user", content=prompt)], max_tokens=4
    )
    return [
        *(
            (
                f"Embedder/Embed for blue, {who}",
                partial(embedding_pb2_grpc.EmbedderStub(channel).Embed, embed, timeout=30),
                DENIED if who == "as generation" else NO_HANDSHAKE,
            )
            for who, channel in embedding_as.items()
        ),
        *(
            (
                f"Generator/Generate, {who}",
                partial(generation_pb2_grpc.GeneratorStub(channel).Generate, generate, timeout=60),
                DENIED if who == "as cache" else NO_HANDSHAKE,
            )
            for who, channel in generation_as.items()
        ),
    ]
