"""Who may call the cache, through every one of its RPCs: the cache in-process with mutual TLS and
``ALLOWED_CALLERS=router`` (as the stack and the chart run it), against a real redis-server, real
handshakes with certificates of a throwaway CA. Only the router is served; a tenant that is not a
name is refused by every RPC and never reaches a Redis pattern (issue 10's ``Invalidate`` of ``*``).
Invalidate reports the vectors it removed and Stats counts a tenant's entries and vectors; the
semantic tier is real (Qdrant Edge), its vectors come from a stand-in embedding service (plaintext:
the cache's own channel to it has no CA here, while its server requires the router's certificate)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest
import redis.asyncio as redis
from fake_embedder import FakeEmbedder, towards
from redis_server import RedisServer

from subsecond.cache.entries import KEY_PREFIX
from subsecond.cache.service import definition, tenant_of_key
from subsecond.cache.settings import CacheSettings
from subsecond.kit.channels import open_channel
from subsecond.kit.server import RunningServer, start_server
from subsecond.kit.settings import CallerSettings, EnvReader, ServerSettings, TlsSettings
from subsecond.v1 import cache_pb2, cache_pb2_grpc, types_pb2
from subsecond_tools.stack.certificates import StackCertificates, write_certificates

CACHE = cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name
PROMPT = "What is our refund policy?"
RPCS = ("Lookup", "Store", "Invalidate", "Stats")


@pytest.fixture
def certificates(tmp_path: Path) -> StackCertificates:
    return write_certificates(tmp_path / "tls", ["cache", "router", "generation"])


@pytest.fixture
async def cache(
    redis_server: RedisServer, certificates: StackCertificates, fake_embedder: FakeEmbedder, tmp_path: Path
) -> AsyncIterator[int]:
    fake_embedder.vectors[PROMPT] = towards(0)
    tls = certificates.environment("cache")
    del tls["SUBSECOND_CACHE_TLS_CA_FILE"]
    settings = CacheSettings.from_env(
        {
            "SUBSECOND_CACHE_PORT": "0",
            "SUBSECOND_CACHE_METRICS_PORT": "0",
            "SUBSECOND_CACHE_REDIS_URL": redis_server.url,
            "SUBSECOND_CACHE_VECTOR_PATH": str(tmp_path / "vectors"),
            "SUBSECOND_CACHE_EMBEDDING_URL": fake_embedder.address,
            **tls,
        }
    )
    running: RunningServer = await start_server(settings.server, definition(settings))
    yield running.port
    await running.stop(0)


def caller(certificates: StackCertificates, service: str) -> ServerSettings:
    env = EnvReader(certificates.environment(service), f"SUBSECOND_{service.upper()}_")
    return ServerSettings.read(env, default_port=0, default_metrics_port=0)


def query(tenant: str, prompt: str = PROMPT) -> cache_pb2.CacheQuery:
    return cache_pb2.CacheQuery(
        tenant=tenant,
        model="small",
        messages=[types_pb2.ChatMessage(role="user", content=prompt)],
        sampling=types_pb2.SamplingParams(temperature=0.0),
    )


def answer(text: str) -> cache_pb2.CachedAnswer:
    return cache_pb2.CachedAnswer(chunks=[text], finish_reason=types_pb2.FINISH_REASON_STOP, model="small")


def calls(tenant: str) -> dict[str, Callable[[cache_pb2_grpc.CacheStub], Awaitable[object]]]:
    return {
        "Lookup": lambda stub: stub.Lookup(cache_pb2.LookupRequest(query=query(tenant)), timeout=5),
        "Store": lambda stub: stub.Store(
            cache_pb2.StoreRequest(query=query(tenant), answer=answer("poisoned")), timeout=5
        ),
        "Invalidate": lambda stub: stub.Invalidate(
            cache_pb2.InvalidateRequest(query=cache_pb2.CacheQuery(tenant=tenant)), timeout=5
        ),
        "Stats": lambda stub: stub.Stats(cache_pb2.StatsRequest(tenant=tenant), timeout=5),
    }


async def outcomes(port: int, settings: ServerSettings | None, tenant: str) -> dict[str, grpc.StatusCode]:
    channel = open_channel(f"127.0.0.1:{port}", [CACHE], settings)
    stub = cache_pb2_grpc.CacheStub(channel)
    seen = {}
    try:
        for name, call in calls(tenant).items():
            try:
                await call(stub)
                seen[name] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as error:
                seen[name] = error.code()
    finally:
        await channel.close()
    return seen


@pytest.fixture
async def stored(cache: int, certificates: StackCertificates) -> None:
    """An answer of each of two tenants, stored by the router."""
    channel = open_channel(f"127.0.0.1:{cache}", [CACHE], caller(certificates, "router"))
    try:
        stub = cache_pb2_grpc.CacheStub(channel)
        for tenant in ("acme", "globex"):
            stored = await stub.Store(cache_pb2.StoreRequest(query=query(tenant), answer=answer(tenant)), timeout=5)
            assert stored.semantic_indexed
    finally:
        await channel.close()


async def tenants_in_redis(redis_server: RedisServer) -> list[str]:
    """The tenant of every stored answer."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        return sorted(tenant_of_key(key.decode()) for key in await client.keys(f"{KEY_PREFIX}:*"))
    finally:
        await client.aclose()


@pytest.mark.usefixtures("stored")
async def test_only_the_router_is_served_and_every_other_caller_is_refused_by_every_rpc(
    cache: int, certificates: StackCertificates, redis_server: RedisServer
) -> None:
    router = caller(certificates, "router")
    no_certificate = dataclasses.replace(
        router, tls=TlsSettings(ca_file=certificates.ca_file), callers=CallerSettings(identity="router")
    )
    plaintext_with_token = dataclasses.replace(router, tls=TlsSettings())
    assert await outcomes(cache, caller(certificates, "generation"), "acme") == dict.fromkeys(
        RPCS, grpc.StatusCode.PERMISSION_DENIED
    )
    for refused in (no_certificate, plaintext_with_token, None):
        assert set((await outcomes(cache, refused, "acme")).values()) == {grpc.StatusCode.UNAVAILABLE}
    # Nothing the refused callers sent was stored or deleted.
    assert await tenants_in_redis(redis_server) == ["acme", "globex"]
    assert await outcomes(cache, router, "acme") == dict.fromkeys(RPCS, grpc.StatusCode.OK)
    assert await tenants_in_redis(redis_server) == ["globex"]


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize("tenant", ["*", "acme*", "", "a:b", "[ag]*"])
async def test_a_tenant_that_is_not_a_name_is_refused_by_every_rpc_and_deletes_nothing(
    cache: int, certificates: StackCertificates, redis_server: RedisServer, tenant: str
) -> None:
    """Stats of no tenant is every tenant's; any other RPC needs a name."""
    expected = dict.fromkeys(RPCS, grpc.StatusCode.INVALID_ARGUMENT)
    if not tenant:
        expected["Stats"] = grpc.StatusCode.OK
    assert await outcomes(cache, caller(certificates, "router"), tenant) == expected
    assert await tenants_in_redis(redis_server) == ["acme", "globex"]


@pytest.mark.usefixtures("stored")
async def test_invalidate_counts_the_vectors_it_removes_and_stats_count_each_tenant(
    cache: int, certificates: StackCertificates
) -> None:
    channel = open_channel(f"127.0.0.1:{cache}", [CACHE], caller(certificates, "router"))
    try:
        stub = cache_pb2_grpc.CacheStub(channel)
        before = await stub.Stats(cache_pb2.StatsRequest(), timeout=5)
        assert {name: (t.exact_entries, t.vectors) for name, t in before.tenants.items()} == {
            "acme": (1, 1),
            "globex": (1, 1),
        }
        assert before.semantic_backend == "edge"
        assert before.stores["stored"] >= 2
        one_entry = cache_pb2.InvalidateRequest(query=query("acme"))
        assert await stub.Invalidate(one_entry, timeout=5) == cache_pb2.InvalidateResponse(
            removed=1, vectors_removed=1
        )
        # Gone already: nothing is counted twice.
        assert await stub.Invalidate(one_entry, timeout=5) == cache_pb2.InvalidateResponse()
        whole_tenant = cache_pb2.InvalidateRequest(query=cache_pb2.CacheQuery(tenant="globex"))
        assert await stub.Invalidate(whole_tenant, timeout=5) == cache_pb2.InvalidateResponse(
            removed=1, vectors_removed=1
        )
        after = await stub.Stats(cache_pb2.StatsRequest(tenant="acme"), timeout=5)
        assert dict(after.tenants) == {"acme": cache_pb2.TenantStats()}
        assert not (await stub.Stats(cache_pb2.StatsRequest(), timeout=5)).tenants
    finally:
        await channel.close()
