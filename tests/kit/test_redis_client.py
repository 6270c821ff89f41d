"""kit.redis_client: its URLs, and the commands the services send, on a real standalone server, a real
Redis Cluster and a real Sentinel group (tests/redis_cluster.py).

The commands are the ones each caller sends: the cache's GET/SET/DELETE and SCAN (invalidation), the
embedding cache's MGET and pipelined SETs of one request's keys, and the quotas' Lua script (through
the router's own Quotas, so the script runs as it does in production).
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from redis.asyncio.cluster import RedisCluster as ClusterClient
from redis_cluster import RedisCluster, RedisSentinel, redis_cluster, redis_sentinel
from redis_server import RedisServer

from subsecond.kit.errors import ResourceExhausted
from subsecond.kit.redis_client import REDIS_FAILURES, RedisClient, RedisTarget, connect, parse_url
from subsecond.router.quotas import Quota, Quotas, QuotaSettings

__all__ = ["redis_cluster", "redis_sentinel"]  # fixtures


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("redis://127.0.0.1:6379/0", RedisTarget("standalone", ())),
        ("rediss://:secret@redis.example.com:6380/0", RedisTarget("standalone", ())),
        (
            "redis+cluster://a:7000,b:7001,c",
            RedisTarget("cluster", (("a", 7000), ("b", 7001), ("c", 6379))),
        ),
        (
            "rediss+cluster://app:p%40ss%3Aword@[::1]:7000,[fd00::2]/0",
            RedisTarget("cluster", (("::1", 7000), ("fd00::2", 6379)), "app", "p@ss:word", tls=True),
        ),
        (
            "redis+sentinel://:pw@s1,s2:26380/mymaster",
            RedisTarget("sentinel", (("s1", 26379), ("s2", 26380)), None, "pw", service_name="mymaster"),
        ),
        (
            "rediss+sentinel://s1:26379/cache/2?sentinel_password=sp",
            RedisTarget(
                "sentinel", (("s1", 26379),), tls=True, service_name="cache", db=2, sentinel_password="sp"
            ),
        ),
    ],
)
def test_a_url_names_its_mode_nodes_and_credentials(url: str, target: RedisTarget) -> None:
    assert parse_url(url) == target


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:6379", "needs a scheme"),
        ("memcached://host:11211", "unknown Redis URL scheme 'memcached'"),
        ("redis+cluster://a:7000/3", "only database 0"),
        ("redis+cluster://a:port", "port 'port' of a is not a number"),
        ("redis+cluster://a:7000?ssl=true", "unknown URL options ['ssl']"),
        ("redis+sentinel://s1:26379", "names the primary's service"),
        ("redis+sentinel://s1:26379/mymaster/x", "database 'x'"),
        ("redis+sentinel://,s2/mymaster", "a node without a host"),
    ],
)
def test_a_bad_url_is_refused_saying_why_and_not_echoing_it(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_url(url)
    assert problem in str(error.value)
    assert url not in str(error.value)


async def _the_services_commands(client: RedisClient) -> None:
    """What the cache and the embedding cache send, with keys of two tenants (so two slots)."""
    for tenant in ("acme", "globex"):
        keys = [f"subsecond:v2:emb:model:{{{tenant}}}:{index}" for index in range(5)]
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, tenant.encode(), ex=60)
            await pipe.execute()
        assert await client.mget(keys) == [tenant.encode()] * 5
        answer = f"subsecond:v2:ans:{{{tenant}}}:small:digest"
        await client.set(answer, b"answer", ex=60)
        assert await client.get(answer) == b"answer"
    found = sorted([key async for key in client.scan_iter(match="subsecond:v2:ans:{globex}:*", count=500)])
    assert found == [b"subsecond:v2:ans:{globex}:small:digest"]
    assert await client.delete(found[0]) == 1


async def test_a_standalone_server_serves_the_services_commands(redis_server: RedisServer) -> None:
    client = connect(redis_server.url, timeout_seconds=1.0)
    try:
        await _the_services_commands(client)
    finally:
        await client.aclose()


async def test_a_cluster_serves_them_with_each_tenants_keys_on_one_slot(redis_cluster: RedisCluster) -> None:
    client = connect(redis_cluster.url, timeout_seconds=1.0)
    try:
        assert isinstance(client, ClusterClient)
        await _the_services_commands(client)
        slots = {await client.cluster_keyslot(f"subsecond:v2:emb:model:{{acme}}:{index}") for index in range(5)}
        assert len(slots) == 1
    finally:
        await client.aclose()


async def test_a_sentinel_group_serves_them_from_the_primary(redis_sentinel: RedisSentinel) -> None:
    client = connect(redis_sentinel.url, timeout_seconds=1.0)
    try:
        await _the_services_commands(client)
        assert (await client.info("server"))["tcp_port"] == redis_sentinel.primary.port
    finally:
        await client.aclose()


async def test_quotas_script_counts_on_a_cluster_for_every_replica(redis_cluster: RedisCluster) -> None:
    settings = QuotaSettings(redis_url=redis_cluster.url, default=Quota(requests_per_minute=3), replicas=2)
    first, second = Quotas(settings, frozenset()), Quotas(settings, frozenset())
    fallbacks = _fallbacks()
    try:
        for tenant in ("acme", "globex"):  # two tenants' hashes, on whichever slots their tags give
            await first.admit(tenant, 2)
            await second.admit(tenant)
            with pytest.raises(ResourceExhausted):
                await first.admit(tenant)  # a replica's share would be 1: the shared count refused
    finally:
        await first.close()
        await second.close()
    assert _fallbacks() == fallbacks  # decided by the shared counts, never locally


def _fallbacks() -> float:
    return REGISTRY.get_sample_value("subsecond_router_quota_fallback_total") or 0.0


async def test_a_cluster_nobody_answers_is_one_of_the_failures_that_fail_open() -> None:
    client = connect("redis+cluster://127.0.0.1:1", timeout_seconds=0.2)
    try:
        with pytest.raises(REDIS_FAILURES):
            await client.get("subsecond:v2:ans:{acme}:small:digest")
    finally:
        await client.aclose()
