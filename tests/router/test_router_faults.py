"""The router when its cache or generation fails, in-process: the real servicer in the kit's server
shell in front of the fake cache and generation services of test_router_service.py (real gRPC
servers on port 0, scripted; the real ones need Redis, Qdrant, an embedding model and Triton).
A stopped cache service is a fake whose lookups hang; a killed one is a server stopped, then
started again on the same port. The same faults on the real stack: tests/integration/test_faults.py."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import test_router_service
from test_router_service import Script, Stack, answer, counted, refused, text, until

from subsecond.router.near_cache import NearCache, NearCacheLimits, NearHit
from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, types_pb2

# The servicer tests' fixtures: a router of its own per test, with the settings ``router_env`` names.
own_stack = test_router_service.own_stack
router_env = test_router_service.router_env

STOP = types_pb2.FINISH_REASON_STOP
EXACT_HIT = cache_pb2.LookupResponse(
    hit=True,
    tier=cache_pb2.CACHE_TIER_EXACT,
    answer=cache_pb2.CachedAnswer(chunks=["Paris", " it is."], completion_tokens=3, finish_reason=STOP),
)


def retry_after_ms(error: grpc.aio.AioRpcError) -> str | None:
    return dict(error.trailing_metadata() or ()).get("retry-after-ms")  # type: ignore[arg-type]


async def served(stack: Stack, prompt: str) -> tuple[str, int, float]:
    """The answer's text, how it was served and how long it took."""
    started = time.perf_counter()
    responses = await answer(stack, router_pb2.GenerateRequest(prompt=prompt))
    return text(responses), responses[-1].done.served_by, time.perf_counter() - started


# -- the breaker ---------------------------------------------------------------------------------


@pytest.mark.parametrize("router_env", [{"CACHE_BREAKER_COOLDOWN_MS": "300", "NEAR_CACHE_FRESH_SECONDS": "0"}])
async def test_a_failed_cache_is_skipped_then_one_trial_lookup_closes_the_breaker(own_stack: Stack) -> None:
    cache = own_stack.cache
    cache.fail = grpc.StatusCode.UNAVAILABLE
    await served(own_stack, "First")
    failed_lookups = len(cache.lookups)  # the channel's own retries on UNAVAILABLE included
    assert failed_lookups >= 1
    await served(own_stack, "Skipped")
    assert len(cache.lookups) == failed_lookups  # open: not asked at all

    await asyncio.sleep(0.35)
    cache.fail, cache.hold = None, asyncio.Event()  # back, but slow: the trial is still running below
    trial = asyncio.create_task(served(own_stack, "Trial"))
    await until(lambda: len(cache.lookups) == failed_lookups + 1)
    for prompt in ("While", "the", "trial", "runs"):
        await served(own_stack, prompt)  # half-open: skipped, not a second trial
    assert len(cache.lookups) == failed_lookups + 1
    cache.hold.set()
    cache.hold = None
    await trial
    await served(own_stack, "Closed")
    await served(own_stack, "again")
    assert len(cache.lookups) == failed_lookups + 3  # closed: every request asks


@pytest.mark.parametrize("router_env", [{"CACHE_TIMEOUT_MS": "100", "NEAR_CACHE_FRESH_SECONDS": "0"}])
async def test_a_stopped_cache_holds_a_request_for_its_lookup_timeout_at_most(own_stack: Stack) -> None:
    own_stack.cache.hit = EXACT_HIT
    assert (await served(own_stack, "Capital?"))[1] == types_pb2.SERVED_BY_EXACT
    own_stack.cache.hold = asyncio.Event()  # stopped: connected, never answering

    _, how, seconds = await served(own_stack, "Unknown")
    assert how == types_pb2.SERVED_BY_GENERATED
    assert seconds < 0.5  # 100 ms of lookup, then the fake generator

    # The breaker is open: an answer the router saw before is served from its near cache at once.
    answered, how, seconds = await served(own_stack, "Capital?")
    assert (answered, how) == ("Paris it is.", types_pb2.SERVED_BY_EXACT)
    assert seconds < 0.05
    own_stack.cache.hold.set()


# -- the near cache -------------------------------------------------------------------------------


def answer_of(text: str, tokens: int = 3) -> cache_pb2.LookupResponse:
    return cache_pb2.LookupResponse(
        hit=True,
        tier=cache_pb2.CACHE_TIER_EXACT,
        answer=cache_pb2.CachedAnswer(chunks=[text], completion_tokens=tokens, finish_reason=STOP),
    )


def test_the_near_cache_keeps_the_most_recently_used_within_its_entries_bytes_and_time() -> None:
    now = [100.0]
    limits = NearCacheLimits(max_entries=2, max_bytes=200, fresh_seconds=1.0, stale_seconds=10.0, wait_seconds=0.0)
    near = NearCache(limits, clock=lambda: now[0])

    def get(key: str) -> NearHit | None:
        return near.get(key, max_tokens=0, max_age_seconds=0)

    near.put("a", answer_of("A"))
    near.put("b", answer_of("B"))
    assert get("a") is not None  # a is now the most recently used
    near.put("c", answer_of("C"))
    assert (get("a") is not None, get("b"), get("c") is not None) == (True, None, True)

    near.put("big", answer_of("x" * 300))  # over the byte limit on its own: not kept
    assert get("big") is None and get("c") is not None

    now[0] += 1.5
    hit = get("c")
    assert hit is not None and not hit.fresh and hit.response.age_seconds == pytest.approx(1.5)
    assert near.get("c", max_tokens=2, max_age_seconds=0) is None  # longer than the caller allows
    assert near.get("c", max_tokens=0, max_age_seconds=1) is None  # older than the caller allows
    now[0] += 10.0
    assert get("c") is None  # past NEAR_CACHE_STALE_SECONDS: gone


def test_a_near_cache_key_counts_the_text_it_holds_in_the_bytes_bound() -> None:
    limits = NearCacheLimits(max_entries=10, max_bytes=400, fresh_seconds=1.0, stale_seconds=10.0, wait_seconds=0.0)
    near = NearCache(limits)
    near.put("short", answer_of("A"), ("Capital?",))
    near.put("long", answer_of("A"), ("x" * 400,))  # a small answer to a prompt over the bound: not kept
    assert near.get("short", max_tokens=0, max_age_seconds=0) is not None
    assert near.get("long", max_tokens=0, max_age_seconds=0) is None
    assert near.size[1] < 400


async def test_the_near_cache_serves_a_request_as_sent_and_asks_the_cache_for_a_respelling(own_stack: Stack) -> None:
    cache = own_stack.cache
    cache.hit = EXACT_HIT
    await served(own_stack, "Capital of France?")
    await served(own_stack, "Capital of France?")
    assert len(cache.lookups) == 1  # the same text: the near cache's
    answered, how, _ = await served(own_stack, "Capital  of France? ")  # the same to the cache's normalised key
    assert (answered, how) == ("Paris it is.", types_pb2.SERVED_BY_EXACT)
    assert len(cache.lookups) == 2  # asked of the cache, which takes it for the same request
    await served(own_stack, "Capital  of France? ")
    assert len(cache.lookups) == 2  # and kept under its own key


@pytest.mark.parametrize("router_env", [{"NEAR_CACHE_FRESH_SECONDS": "0.2"}])
async def test_the_near_cache_answers_fresh_copies_itself_and_stale_ones_only_while_the_cache_is_down(
    own_stack: Stack,
) -> None:
    cache = own_stack.cache
    cache.hit = EXACT_HIT
    before = counted("subsecond_router_near_cache_hits_total", freshness="fresh")
    await served(own_stack, "Capital?")
    answered, how, _ = await served(own_stack, "Capital?")
    assert (answered, how) == ("Paris it is.", types_pb2.SERVED_BY_EXACT)
    assert len(cache.lookups) == 1  # the second came from the near cache
    assert counted("subsecond_router_near_cache_hits_total", freshness="fresh") == before + 1

    await asyncio.sleep(0.25)  # past fresh: the cache is asked again while it answers
    await served(own_stack, "Capital?")
    assert len(cache.lookups) == 2

    await own_stack.cache_server.stop(0)  # killed
    await asyncio.sleep(0.25)
    stale = counted("subsecond_router_near_cache_hits_total", freshness="stale")
    for _ in range(3):
        answered, how, _ = await served(own_stack, "Capital?")
        assert (answered, how) == ("Paris it is.", types_pb2.SERVED_BY_EXACT)
    assert counted("subsecond_router_near_cache_hits_total", freshness="stale") == stale + 3
    assert own_stack.generator.calls == []
    # What the near cache never saw is generated, as before.
    assert (await served(own_stack, "Something new"))[1] == types_pb2.SERVED_BY_GENERATED


@pytest.mark.parametrize(
    "router_env", [{"NEAR_CACHE_FRESH_SECONDS": "0", "NEAR_CACHE_WAIT_MS": "20", "CACHE_TIMEOUT_MS": "2000"}]
)
async def test_a_request_with_a_near_copy_waits_for_a_slow_cache_only_briefly(own_stack: Stack) -> None:
    cache = own_stack.cache
    cache.hit = EXACT_HIT
    await served(own_stack, "Capital?")
    changed = cache_pb2.LookupResponse()
    changed.CopyFrom(EXACT_HIT)
    changed.answer.chunks[:] = ["Lyon", " now."]
    cache.hit = changed
    assert (await served(own_stack, "Capital?"))[0] == "Lyon now."  # the cache answered in time: its answer

    cache.hold = asyncio.Event()  # the cache stops answering; its breaker has not noticed yet
    answered, how, seconds = await served(own_stack, "Capital?")
    assert (answered, how) == ("Lyon now.", types_pb2.SERVED_BY_EXACT)
    assert seconds < 0.5  # 20 ms of waiting, not the lookup's 2 s
    assert len(cache.lookups) == 3  # asked, then left to finish in the background
    cache.hold.set()


@pytest.mark.parametrize("router_env", [{"NEAR_CACHE_FRESH_SECONDS": "0"}])
async def test_a_write_through_fills_the_near_cache(own_stack: Stack) -> None:
    first, how, _ = await served(own_stack, "Write me")
    assert how == types_pb2.SERVED_BY_GENERATED
    await until(lambda: bool(own_stack.cache.stored("Write me")))
    own_stack.cache.fail = grpc.StatusCode.UNAVAILABLE
    answered, how, _ = await served(own_stack, "Write me")
    assert (answered, how) == (first, types_pb2.SERVED_BY_EXACT)
    assert len(own_stack.generator.calls) == 1


async def test_a_restarted_cache_service_is_used_again_within_a_second(own_stack: Stack) -> None:
    port = own_stack.cache_port
    await own_stack.cache_server.stop(0)
    down_until = time.monotonic() + 3.0  # long enough for gRPC's default backoff to reach several seconds
    while time.monotonic() < down_until:
        await served(own_stack, f"Down {time.monotonic()}")
        await asyncio.sleep(0.1)
    lookups = len(own_stack.cache.lookups)
    server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServicer_to_server(own_stack.cache, server)
    assert server.add_insecure_port(f"127.0.0.1:{port}") == port
    await server.start()
    back = time.monotonic()
    try:
        while len(own_stack.cache.lookups) == lookups:
            assert time.monotonic() - back < 1.0, "the router did not use the cache again within a second"
            await served(own_stack, f"Back {time.monotonic()}")
            await asyncio.sleep(0.02)
    finally:
        await server.stop(0)


# -- limits on generations -------------------------------------------------------------------------


@pytest.mark.parametrize("router_env", [{"TENANT_MAX_STREAMS": "1", "RETRY_AFTER_MS": "250"}])
async def test_hits_take_no_generation_slot_and_a_miss_over_the_limit_gets_a_retry_hint(own_stack: Stack) -> None:
    hold = asyncio.Event()
    own_stack.generator.scripts["Hold"] = Script(hold=hold)
    holding = asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt="Hold")))
    await until(lambda: len(own_stack.generator.calls) == 1)

    own_stack.cache.hit = EXACT_HIT
    for _ in range(3):  # more hits than the tenant's generations: none is refused
        assert (await served(own_stack, "Capital?"))[1] == types_pb2.SERVED_BY_EXACT
    own_stack.cache.hit = None
    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="Another"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "tenant local has 1 generations running; retry later",
    )
    assert retry_after_ms(error) == "250"
    hold.set()
    await holding


@pytest.mark.parametrize("router_env", [{"MAX_GENERATIONS": "2", "BYPASS_MAX_GENERATIONS": "1"}])
async def test_beyond_saturation_no_hit_is_refused_because_misses_filled_the_limits(own_stack: Stack) -> None:
    """Issue 11's clause: with every generation slot taken, a burst of hits (cache-served, and near-cache
    copies while the cache is down) is answered whole, while each miss is refused at once."""
    own_stack.cache.hit = EXACT_HIT
    await served(own_stack, "Repeat")  # a near-cache copy for the outage below
    own_stack.cache.hit = None
    hold = asyncio.Event()
    holding = []
    for prompt in ("Hold 1", "Hold 2"):
        own_stack.generator.scripts[prompt] = Script(hold=hold)
        holding.append(asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt=prompt))))
    await until(lambda: len(own_stack.generator.calls) == 2)

    own_stack.cache.hit = EXACT_HIT
    burst = await asyncio.gather(*(served(own_stack, f"Capital {i}?") for i in range(40)))
    assert {how for _, how, _ in burst} == {types_pb2.SERVED_BY_EXACT}
    own_stack.cache.hit = None
    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="A miss"))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "this router runs 2 generations already; retry later",
    )

    own_stack.cache.fail = grpc.StatusCode.UNAVAILABLE  # the cache down as well: the near cache answers
    burst = await asyncio.gather(*(served(own_stack, "Repeat") for _ in range(40)))
    assert {how for _, how, _ in burst} == {types_pb2.SERVED_BY_EXACT}
    assert (await refused(own_stack, router_pb2.GenerateRequest(prompt="Another miss"))).code() == (
        grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert len(own_stack.generator.calls) == 2  # only the held two ever reached generation
    hold.set()
    await asyncio.gather(*holding)


@pytest.mark.parametrize("router_env", [{"BYPASS_MAX_GENERATIONS": "1"}])
async def test_generations_the_cache_outage_caused_are_bounded(own_stack: Stack) -> None:
    own_stack.cache.fail = grpc.StatusCode.UNAVAILABLE
    hold = asyncio.Event()
    own_stack.generator.scripts["Hold"] = Script(hold=hold)
    holding = asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt="Hold")))
    await until(lambda: len(own_stack.generator.calls) == 1)

    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="Another"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert (error.details() or "").startswith("the cache is unavailable and 1 generations already replace it")
    assert retry_after_ms(error) == "1000"
    # A request that did not want the cache is no bypass: it is generated.
    bypassing = router_pb2.GenerateRequest(
        prompt="Fresh please", cache=router_pb2.CachePolicy(mode=router_pb2.CACHE_MODE_BYPASS)
    )
    assert (await answer(own_stack, bypassing))[-1].done.served_by == types_pb2.SERVED_BY_GENERATED
    hold.set()
    await holding


@pytest.mark.parametrize("router_env", [{"RETRY_AFTER_MS": "300", "NEAR_CACHE_FRESH_SECONDS": "0"}])
async def test_a_saturated_generation_service_sheds_new_misses_at_once_and_hits_still_flow(
    own_stack: Stack,
) -> None:
    own_stack.generator.scripts["Full"] = Script(chunks=(), fail=grpc.StatusCode.RESOURCE_EXHAUSTED)
    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="Full"))
    assert (error.code(), error.details()) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "scripted RESOURCE_EXHAUSTED")
    assert retry_after_ms(error) == "300"

    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="Next miss"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "generation is at capacity; retry later"
    assert own_stack.generator.prompts() == ["Full"]  # refused here, not sent
    own_stack.cache.hit = EXACT_HIT
    assert (await served(own_stack, "Capital?"))[1] == types_pb2.SERVED_BY_EXACT
    own_stack.cache.hit = None

    await asyncio.sleep(0.35)
    assert (await served(own_stack, "Next miss"))[1] == types_pb2.SERVED_BY_GENERATED
