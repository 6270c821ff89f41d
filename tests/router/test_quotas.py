"""Per-tenant quotas shared by router replicas: two real routers in-process (the kit's server shell on
loopback port 0, in front of test_router_service.py's fake cache and generation servers, since the real
ones need Redis, Qdrant, an embedding model and Triton) counting in one real redis-server; stopping that
server is how Redis goes down. Metrics are process-wide, so each test has a tenant of its own and reads
differences."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import grpc
import pytest
import redis.asyncio as redis
from redis_server import RedisServer
from test_router_service import Stack, answer, counted, refused, running_stack, text

from subsecond.kit.errors import ResourceExhausted
from subsecond.router.auth import hash_key
from subsecond.router.quotas import _TAKE, Quota, Quotas, QuotaSettings, _Window, parse_overrides
from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, router_pb2, types_pb2

STATIC = router_pb2.GenerateRequest(prompt="What are your opening hours?")
HIT = cache_pb2.LookupResponse(
    hit=True,
    tier=cache_pb2.CACHE_TIER_EXACT,
    answer=cache_pb2.CachedAnswer(chunks=["Cached."], finish_reason=types_pb2.FINISH_REASON_STOP),
)


@asynccontextmanager
async def replicas(tmp_path: Path, count: int, **env: str) -> AsyncIterator[list[Stack]]:
    """``count`` routers with the same settings (names without the prefix), each with its own fakes."""
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(running_stack(tmp_path / f"replica-{i}", env)) for i in range(count)
        ]


def retry_after_ms(error: grpc.aio.AioRpcError) -> int:
    return int(dict(error.trailing_metadata() or ())["retry-after-ms"])  # type: ignore[arg-type]


async def served_all(router: Stack, requests: int, request: router_pb2.GenerateRequest = STATIC) -> None:
    for _ in range(requests):
        await answer(router, request)


@pytest.fixture
def folders(tmp_path: Path) -> Path:
    for i in range(2):
        (tmp_path / f"replica-{i}").mkdir()
    return tmp_path


async def test_two_replicas_share_one_request_limit_and_say_when_to_retry(
    folders: Path, redis_server: RedisServer
) -> None:
    env = {"QUOTA_REDIS_URL": redis_server.url, "QUOTA_REQUESTS_PER_MINUTE": "4", "DEFAULT_TENANT": "shared"}
    async with replicas(folders, 2, **env) as (a, b):
        await served_all(a, 2)
        await served_all(b, 2)
        for router in (a, b):  # alone, each would still have room for 2 more
            error = await refused(router, STATIC)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "tenant shared is over its quota of 4 requests a minute" in (error.details() or "")
            # The window frees what it holds within two minutes at most, and not at once.
            assert 0 < retry_after_ms(error) <= 120_000
    assert counted("subsecond_router_quota_requests_total", tenant="shared") == 4
    assert counted("subsecond_router_quota_refusals_total", tenant="shared", quota="requests") == 2


def workflow(steps: int) -> router_pb2.WorkflowRequest:
    return router_pb2.WorkflowRequest(
        steps=[
            router_pb2.WorkflowStep(id=f"s{i}", request=router_pb2.GenerateRequest(prompt="opening hours"))
            for i in range(steps)
        ]
    )


async def test_a_workflow_counts_one_request_per_step(folders: Path, redis_server: RedisServer) -> None:
    env = {"QUOTA_REDIS_URL": redis_server.url, "QUOTA_REQUESTS_PER_MINUTE": "3", "DEFAULT_TENANT": "flows"}
    async with replicas(folders, 1, **env) as (router,):
        events = [event async for event in router.router.RunWorkflow(workflow(2), timeout=5)]
        assert events[-1].HasField("summary")
        await served_all(router, 1)  # 2 of 3 taken: one more fits
        assert (await refused(router, STATIC)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.aio.AioRpcError) as too_large:  # more steps than the limit: no wait helps
            _ = [event async for event in router.router.RunWorkflow(workflow(4), timeout=5)]
        assert too_large.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4 requests at once are over its limit of 3" in (too_large.value.details() or "")
        assert "retry-after-ms" not in dict(too_large.value.trailing_metadata() or ())


async def test_over_its_tokens_a_tenant_gets_no_generation_but_still_its_hits_on_every_replica(
    folders: Path, redis_server: RedisServer
) -> None:
    # The fake generator reports 5 prompt and 2 completion tokens: 7 a generation.
    env = {"QUOTA_REDIS_URL": redis_server.url, "QUOTA_TOKENS_PER_MINUTE": "10", "DEFAULT_TENANT": "wordy"}
    async with replicas(folders, 2, **env) as (a, b):
        await served_all(a, 1, router_pb2.GenerateRequest(prompt="First"))
        await served_all(b, 1, router_pb2.GenerateRequest(prompt="Second"))  # 7 of 10 spent: still room
        await until_counted("subsecond_router_quota_tokens_total", 14, tenant="wordy")
        for router in (a, b):
            error = await refused(router, router_pb2.GenerateRequest(prompt="Third"))
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "quota of 10 tokens a minute" in (error.details() or "") and retry_after_ms(error) > 0
        assert [len(a.generator.calls), len(b.generator.calls)] == [1, 1]
        a.cache.hit = HIT
        assert text(await answer(a, router_pb2.GenerateRequest(prompt="Cached?"))) == "Cached."
        assert text(await answer(b, STATIC)) == "We are open from 9 to 5."
    assert counted("subsecond_router_quota_refusals_total", tenant="wordy", quota="tokens") == 2


async def until_counted(name: str, value: float, **labels: str) -> None:
    """Token spending is counted after the answer went out: waits for it."""
    for _ in range(400):
        if counted(name, **labels) >= value:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"{name} never reached {value}")


async def test_a_tenant_override_replaces_the_default_and_metrics_name_configured_tenants(
    folders: Path, redis_server: RedisServer
) -> None:
    env = {
        "QUOTA_REDIS_URL": redis_server.url,
        "QUOTA_REQUESTS_PER_MINUTE": "1",
        "QUOTA_OVERRIDES": "gold=3/0",
        "ALLOW_ANONYMOUS": "false",
        "API_KEYS": f"{hash_key('gold-key')}=gold:generate,{hash_key('tin-key')}=tin:generate",
    }
    async with replicas(folders, 1, **env) as (router,):
        for _ in range(3):
            await answer(router, STATIC, key="gold-key")
        assert (await refused(router, STATIC, key="gold-key")).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await answer(router, STATIC, key="tin-key")
        assert (await refused(router, STATIC, key="tin-key")).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert counted("subsecond_router_quota_requests_total", tenant="gold") == 3
    assert counted("subsecond_router_quota_refusals_total", tenant="tin", quota="requests") == 1


async def test_with_redis_down_each_replica_takes_its_share_and_says_so_then_shares_again(
    folders: Path, redis_server: RedisServer
) -> None:
    env = {
        "QUOTA_REDIS_URL": redis_server.url,
        "QUOTA_REQUESTS_PER_MINUTE": "4",
        "QUOTA_REPLICAS": "2",
        "QUOTA_REDIS_COOLDOWN_MS": "200",
        "DEFAULT_TENANT": "outage",
    }
    fallback = counted("subsecond_router_quota_fallback_total")
    async with replicas(folders, 2, **env) as (a, b):
        await served_all(a, 1)
        redis_server.stop()
        for router in (a, b):  # each replica alone: 4 / 2
            await served_all(router, 2)
            assert (await refused(router, STATIC)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert counted("subsecond_router_quota_fallback_total") - fallback == 6
        assert counted("subsecond_router_quota_fallback_active") == 1

        redis_server.start()  # empty: a restarted Redis forgot the counts
        await asyncio.sleep(0.25)  # the breaker's cool-down, then one trial call
        await served_all(a, 2)
        await served_all(b, 2)
        assert counted("subsecond_router_quota_fallback_active") == 0
        assert (await refused(b, STATIC)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_without_a_redis_url_each_replica_enforces_its_share(folders: Path) -> None:
    env = {"QUOTA_REQUESTS_PER_MINUTE": "6", "QUOTA_REPLICAS": "3", "DEFAULT_TENANT": "alone"}
    async with replicas(folders, 1, **env) as (router,):
        await served_all(router, 2)
        assert (await refused(router, STATIC)).code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- the sliding window: the script in Redis and its Python twin (the fallback) ----------------------


def test_the_previous_minute_fades_out_of_the_window() -> None:
    window = _Window(60.0)
    assert all(window.take(30.0 + i, limit=10, need=1, add=1) == 0 for i in range(10))
    assert window.take(59.0, limit=10, need=1, add=1) == pytest.approx(7.0)  # full until 66 s (below)
    # At 61 s the previous minute still weighs 10 * 59/60: room for one request at 66 s (10 * 54/60 = 9).
    assert window.take(61.0, limit=10, need=1, add=1) == pytest.approx(5.0)
    assert window.take(66.0, limit=10, need=1, add=1) == 0
    assert window.take(66.5, limit=10, need=1, add=1) > 0
    assert window.take(200.0, limit=10, need=1, add=1) == 0  # minutes later: all forgotten


def test_more_at_once_than_a_replicas_share_is_refused_for_a_window_and_not_counted() -> None:
    """With Redis down a workflow of 2 steps passes the tenant's limit (3 a minute) but not one
    replica's share of it (1 of 3 over 2 replicas): refused with a retry hint, never a crash."""
    window = _Window(60.0)
    assert window.take(30.0, limit=1, need=2, add=2) == 60.0
    assert window.take(31.0, limit=1, need=1, add=1) == 0


# States (count of the current minute, of the previous one) a replica may find, and the call it makes.
STATES = [(0, 0, 1, 10), (9, 0, 1, 10), (10, 0, 1, 10), (4, 8, 1, 10), (0, 10, 1, 10), (3, 30, 1, 10), (20, 5, 1, 10)]


@pytest.mark.parametrize(("current", "previous", "need", "limit"), STATES)
async def test_the_script_and_the_fallback_answer_alike(
    redis_server: RedisServer, current: int, previous: int, need: int, limit: int
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        seconds, micros = await client.time()
        now = seconds + micros / 1e6
        index = math.floor(now * 1000 / 60_000)
        await client.hset("subsecond:quota:{t}", mapping={"rw": index, "rc": current, "rp": previous})
        take = client.register_script(_TAKE)
        args = ("r", limit, need, need, 60_000, 0, 1)  # nothing leased
        waited, leased, window_left_ms = await take(keys=["subsecond:quota:{t}"], args=args)
        state = await client.hmget("subsecond:quota:{t}", ["rc"])
    finally:
        await client.aclose()
    twin = _Window(60.0)
    twin.take(index * 60.0 - 1.0, limit=0, need=0, add=previous)  # the previous minute's count
    twin.take(index * 60.0, limit=0, need=0, add=current)
    expected = twin.take(now, limit=limit, need=need, add=need)
    assert int(waited) / 1000 == pytest.approx(expected, abs=0.05)
    assert int(state[0]) == (current + need if expected == 0 else current)
    assert int(leased) == 0
    assert 0 < int(window_left_ms) <= 60_000 if expected == 0 else int(window_left_ms) == 0


# -- leases: requests admitted without a round trip, never over the limit --------------------------


async def script_calls(client: redis.Redis) -> int:
    stats = await client.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


async def test_a_replica_admits_from_its_lease_without_asking_redis_each_time(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    quotas = Quotas(QuotaSettings(redis_url=redis_server.url, default=Quota(6000, 0), lease=16), frozenset({"lease"}))
    try:
        await quotas.admit("warm-up")  # another tenant: the script is loaded into Redis
        before = await script_calls(client)
        for _ in range(100):
            await quotas.admit("lease")
        calls = await script_calls(client) - before
        counted_in_redis = int((await client.hmget("subsecond:quota:{lease}", ["rc"]))[0])
    finally:
        await quotas.close()
        await client.aclose()
    assert calls == math.ceil(100 / 17)  # each call admits one request and leases 16 more
    assert 100 <= counted_in_redis < 100 + 17  # the lease is counted when taken, used or not


async def test_replicas_with_leases_never_admit_more_than_the_limit_together(redis_server: RedisServer) -> None:
    settings = QuotaSettings(redis_url=redis_server.url, default=Quota(200, 0), replicas=3, lease=16)
    replicas = [Quotas(settings, frozenset({"many"})) for _ in range(3)]
    admitted, refused_at = 0, set()
    try:
        for turn in range(400):
            quotas = replicas[turn % 3]
            try:
                await quotas.admit("many")
                admitted += 1
            except ResourceExhausted as refusal:
                assert refusal.retry_after_seconds is not None and refusal.retry_after_seconds > 0
                refused_at.add(turn % 3)
    finally:
        for quotas in replicas:
            await quotas.close()
    # Leases shrink near the limit (a quarter of the room, shared by the replicas), so what the others
    # hold unused when one is refused is a few requests, never a lease apiece.
    assert 200 - 8 <= admitted <= 200
    assert refused_at == {0, 1, 2}


def test_overrides_and_shares() -> None:
    assert parse_overrides({"gold": "600/100000", "free": "0/5000"}) == {
        "gold": Quota(600, 100_000),
        "free": Quota(0, 5000),
    }
    with pytest.raises(ValueError, match="gold=600: not requests/tokens"):
        parse_overrides({"gold": "600"})
    assert Quota(10, 0).share(3) == Quota(3, 0)
    assert Quota(2, 5).share(4) == Quota(1, 1)  # never a share of nothing where there is a limit
    settings = QuotaSettings(default=Quota(1, 2), overrides={"gold": Quota(3, 4)})
    assert (settings.of("gold"), settings.of("tin")) == (Quota(3, 4), Quota(1, 2))


def test_quota_settings_are_read_and_checked() -> None:
    settings = RouterSettings.from_env(
        {"SUBSECOND_ROUTER_QUOTA_REQUESTS_PER_MINUTE": "60", "SUBSECOND_ROUTER_QUOTA_OVERRIDES": "gold=600/0"}
    )
    assert settings.quotas.default == Quota(60, 0) and settings.quotas.overrides == {"gold": Quota(600, 0)}
    assert settings.quotas.redis_url == "" and settings.quotas.replicas == 1 and settings.quotas.lease == 16
    assert RouterSettings.from_env({"SUBSECOND_ROUTER_QUOTA_LEASE": "0"}).quotas.lease == 0
    with pytest.raises(ValueError, match="QUOTA_OVERRIDES: gold=lots"):
        RouterSettings.from_env({"SUBSECOND_ROUTER_QUOTA_OVERRIDES": "gold=lots"})
    with pytest.raises(ValueError, match="QUOTA_LEASE"):
        RouterSettings.from_env({"SUBSECOND_ROUTER_QUOTA_LEASE": "-1"})
