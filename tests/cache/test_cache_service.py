"""The Cache servicer in-process, in the kit's server shell on a loopback port, against a real
redis-server, Qdrant Edge in a temporary directory (or a Qdrant URL nobody listens on) and a
stand-in embedding service whose vectors each test chooses (fake_embedder.py): every status code
the service answers with, and every backend it fails open on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
import redis.asyncio as redis
from fake_embedder import FakeEmbedder, towards
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY
from qdrant_client import AsyncQdrantClient
from redis_server import RedisServer, free_port

from subsecond.cache import service as cache_service
from subsecond.cache.guard import Acceptance, SemanticDecision
from subsecond.cache.service import EMBEDDING_DIMENSIONS, CacheService, definition
from subsecond.cache.settings import CacheSettings
from subsecond.cache.vectors import ClientVectorIndex, EdgeVectorIndex, Neighbour, VectorIndex
from subsecond.kit import tracing
from subsecond.kit.server import ServiceDefinition, start_server
from subsecond.v1 import cache_pb2, cache_pb2_grpc, types_pb2

QUESTION = "Which city is Australia's capital?"
PARAPHRASE = "What is the capital of Australia?"  # the guard lets these two share an answer
NEAR_MISS = "What is the capital of Austria?"  # one entity apart from PARAPHRASE: the guard refuses


def settings(redis_url: str, embedder: FakeEmbedder, tmp_path: Path, **environment: str) -> CacheSettings:
    return CacheSettings.from_env(
        {
            "SUBSECOND_CACHE_PORT": "0",
            "SUBSECOND_CACHE_METRICS_PORT": "0",
            "SUBSECOND_CACHE_REDIS_URL": redis_url,
            "SUBSECOND_CACHE_EMBEDDING_URL": embedder.address,
            "SUBSECOND_CACHE_VECTOR_PATH": str(tmp_path / "vectors"),
            **{f"SUBSECOND_CACHE_{name}": value for name, value in environment.items()},
        }
    )


@asynccontextmanager
async def serving(cache_settings: CacheSettings, service: ServiceDefinition) -> AsyncIterator[cache_pb2_grpc.CacheStub]:
    running = await start_server(cache_settings.server, service)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield cache_pb2_grpc.CacheStub(channel)
    finally:
        await running.stop(0)


@pytest.fixture
async def cache(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path
) -> AsyncIterator[cache_pb2_grpc.CacheStub]:
    """The service as `python -m subsecond.cache` builds it (Qdrant Edge, the default store)."""
    cache_settings = settings(redis_server.url, fake_embedder, tmp_path)
    async with serving(cache_settings, definition(cache_settings)) as stub:
        yield stub


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def query(prompt: str, *, tenant: str = "acme", model: str = "small") -> cache_pb2.CacheQuery:
    return cache_pb2.CacheQuery(
        tenant=tenant,
        model=model,
        messages=[types_pb2.ChatMessage(role="user", content=prompt)],
        sampling=types_pb2.SamplingParams(temperature=0.0),
    )


def answer(*chunks: str, finish: types_pb2.FinishReason = types_pb2.FINISH_REASON_STOP) -> cache_pb2.CachedAnswer:
    return cache_pb2.CachedAnswer(
        chunks=chunks, prompt_tokens=7, completion_tokens=len(chunks), finish_reason=finish, model="small"
    )


def lookup(
    prompt: str, *, semantic: bool = True, tenant: str = "acme", model: str = "small"
) -> cache_pb2.LookupRequest:
    return cache_pb2.LookupRequest(query=query(prompt, tenant=tenant, model=model), semantic=semantic)


def store(prompt: str, *chunks: str, tenant: str = "acme", model: str = "small") -> cache_pb2.StoreRequest:
    return cache_pb2.StoreRequest(query=query(prompt, tenant=tenant, model=model), answer=answer(*chunks))


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def refused(call: Awaitable[object]) -> grpc.aio.AioRpcError:
    """The error a call ended with (it must end with one)."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    return error.value


# -- hits ------------------------------------------------------------------------------------------


async def test_a_stored_answer_is_an_exact_hit(cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder) -> None:
    fake_embedder.vectors[QUESTION] = towards(0)
    assert not (await cache.Lookup(lookup(QUESTION, semantic=False))).hit

    stored = await cache.Store(store(QUESTION, "Can", "berra."))
    found = await cache.Lookup(lookup(QUESTION, semantic=False))

    assert stored.key.startswith("subsecond:v2:ans:{acme}:small:")
    assert stored.semantic_indexed
    assert found.hit
    assert found.tier == cache_pb2.CACHE_TIER_EXACT
    assert list(found.answer.chunks) == ["Can", "berra."]
    assert found.answer.finish_reason == types_pb2.FINISH_REASON_STOP
    assert 0.0 <= found.age_seconds < 5.0
    assert not found.bypassed


async def test_the_semantic_tier_embeds_a_prompt_as_the_guard_reads_it(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    stored = "how long can butter stay out, 48 hrs?"
    fake_embedder.vectors.update({stored: towards(0), "butter out 2 days?": towards(3)})
    await cache.Store(store(stored, "About two days is fine."))
    await cache.Lookup(lookup("butter out 2 days?"))
    # "48 hrs" is "2 days" once normalised: its embedding does not keep the paraphrase below the threshold
    assert fake_embedder.asked == ["how long can butter stay out, 2 days?", "butter out 2 days?"]


async def test_a_close_paraphrase_is_a_semantic_hit(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    await cache.Store(store(QUESTION, "Canberra."))

    found = await cache.Lookup(lookup(PARAPHRASE))

    assert found.hit
    assert found.tier == cache_pb2.CACHE_TIER_SEMANTIC
    assert found.similarity == pytest.approx(0.9659, abs=1e-3)  # cos 15 degrees
    assert list(found.answer.chunks) == ["Canberra."]


async def test_the_guard_refuses_a_near_miss_however_close(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors.update({PARAPHRASE: towards(0), NEAR_MISS: towards(2)})
    await cache.Store(store(PARAPHRASE, "Canberra."))
    refusals = metric("subsecond_cache_semantic_rejections_total", reason="guard:entity")

    found = await cache.Lookup(lookup(NEAR_MISS))

    assert not found.hit
    assert not found.bypassed
    assert metric("subsecond_cache_semantic_rejections_total", reason="guard:entity") == refusals + 1


async def test_neighbours_are_judged_best_first_and_only_until_one_is_served(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    judged: list[str] = []
    real = cache_service.accept_candidates

    def recorded(query: str, candidates: Sequence[tuple[str, float]], acceptance: Acceptance) -> list[SemanticDecision]:
        judged.extend(prompt for prompt, _ in candidates)
        return real(query, candidates, acceptance)

    monkeypatch.setattr(cache_service, "accept_candidates", recorded)
    also_close = "Tell me the capital of Australia."
    fake_embedder.vectors.update(
        {PARAPHRASE: towards(0), NEAR_MISS: towards(2), QUESTION: towards(10), also_close: towards(12)}
    )
    for prompt, reply in ((NEAR_MISS, "Vienna."), (QUESTION, "Canberra."), (also_close, "Canberra!")):
        await cache.Store(store(prompt, reply))
    refusals = metric("subsecond_cache_semantic_rejections_total", reason="guard:entity")

    found = await cache.Lookup(lookup(PARAPHRASE))

    # The nearest is refused (another country), the next served; the third is never judged.
    assert found.hit and list(found.answer.chunks) == ["Canberra."]
    assert judged == [NEAR_MISS, QUESTION]
    assert metric("subsecond_cache_semantic_rejections_total", reason="guard:entity") == refusals + 1


async def test_a_traced_semantic_hit_marks_each_wait_on_its_span(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kit's tracer from an SDK provider of this test's own (not the process's global one), as
    # tests/kit/test_tracing.py does: benchmarks/miss_path.py --semantic reads these events.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("subsecond"))
    monkeypatch.setattr(tracing, "recording", lambda: True)
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    cache_settings = settings(redis_server.url, fake_embedder, tmp_path)
    async with serving(cache_settings, definition(cache_settings)) as cache:
        await cache.Store(store(QUESTION, "Canberra."))
        found = await cache.Lookup(lookup(PARAPHRASE))
    provider.shutdown()

    assert found.tier == cache_pb2.CACHE_TIER_SEMANTIC
    (span,) = [s for s in spans.get_finished_spans() if s.name == "subsecond.v1.Cache/Lookup"]
    events = [event.name for event in span.events]
    assert events == ["exact read", "embedding received", "searched", "judged", "answer read"]
    times = [event.timestamp for event in span.events]
    assert times == sorted(times)


async def test_a_neighbour_below_the_threshold_is_a_miss(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(60)})  # cosine 0.5
    await cache.Store(store(QUESTION, "Canberra."))
    refusals = metric("subsecond_cache_semantic_rejections_total", reason="below_threshold")

    assert not (await cache.Lookup(lookup(PARAPHRASE))).hit
    assert metric("subsecond_cache_semantic_rejections_total", reason="below_threshold") == refusals + 1


async def test_a_neighbour_whose_answer_expired_is_a_miss_and_its_vector_goes(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder, redis_client: redis.Redis
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    stored = await cache.Store(store(QUESTION, "Canberra."))
    await redis_client.delete(stored.key)  # as the TTL would
    expired = metric("subsecond_cache_expired_vectors_total")

    assert not (await cache.Lookup(lookup(PARAPHRASE))).hit
    assert not (await cache.Lookup(lookup(PARAPHRASE))).hit
    assert metric("subsecond_cache_expired_vectors_total") == expired + 1  # deleted the first time


# -- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refused_answer", "field"),
    [
        (answer("Can", "ber", finish=types_pb2.FINISH_REASON_LENGTH), "answer.finish_reason"),
        (answer(" ", ""), "answer.chunks"),
    ],
)
async def test_store_refuses_an_answer_it_must_not_cache_and_writes_nothing(
    cache: cache_pb2_grpc.CacheStub,
    fake_embedder: FakeEmbedder,
    redis_client: redis.Redis,
    refused_answer: cache_pb2.CachedAnswer,
    field: str,
) -> None:
    error = await refused(cache.Store(cache_pb2.StoreRequest(query=query(QUESTION), answer=refused_answer)))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(field + ":")
    assert await redis_client.dbsize() == 0
    assert fake_embedder.calls == 0  # nor was it embedded for the semantic tier


# -- the router's speculative miss path: the exact tier alone, then the semantic tier alone --------


async def test_a_miss_stored_with_its_lookups_embedding_is_embedded_once(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    exact = await cache.Lookup(lookup(QUESTION, semantic=False))
    semantic = cache_pb2.LookupRequest(query=query(QUESTION), semantic=True, skip_exact=True, want_embedding=True)
    miss = await cache.Lookup(semantic)
    assert not exact.hit and not miss.hit
    assert fake_embedder.calls == 1
    assert list(miss.embedding) == pytest.approx(towards(0))

    with_embedding = cache_pb2.StoreRequest(query=query(QUESTION), answer=answer("Canberra."), embedding=miss.embedding)
    stored = await cache.Store(with_embedding)

    assert stored.semantic_indexed
    assert fake_embedder.calls == 1  # the miss was embedded once, by its lookup
    found = await cache.Lookup(lookup(PARAPHRASE))  # the vector sent is the one indexed
    assert (found.tier, list(found.answer.chunks)) == (cache_pb2.CACHE_TIER_SEMANTIC, ["Canberra."])


async def test_a_lookup_that_skips_the_exact_tier_finds_only_the_semantic_one(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors[QUESTION] = towards(0)
    await cache.Store(store(QUESTION, "Canberra."))

    found = await cache.Lookup(cache_pb2.LookupRequest(query=query(QUESTION), semantic=True, skip_exact=True))
    error = await refused(cache.Lookup(cache_pb2.LookupRequest(query=query(QUESTION), skip_exact=True)))

    assert found.hit and found.tier == cache_pb2.CACHE_TIER_SEMANTIC  # the same prompt, found by its vector
    assert (error.code(), error.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "skip_exact: a lookup that skips the exact tier must search the semantic one",
    )


@pytest.mark.parametrize(
    ("embedding", "problem"),
    [
        (towards(0)[:-1], "embedding: 383 dimensions, expected 384"),
        ([2 * x for x in towards(0)], "embedding: norm 2, expected a unit vector"),
        ([float("nan"), *towards(0)[1:]], "embedding: norm nan, expected a unit vector"),
    ],
)
async def test_store_refuses_an_embedding_that_is_not_the_models_and_writes_nothing(
    cache: cache_pb2_grpc.CacheStub,
    fake_embedder: FakeEmbedder,
    redis_client: redis.Redis,
    embedding: list[float],
    problem: str,
) -> None:
    fake_embedder.vectors[QUESTION] = towards(0)
    request = cache_pb2.StoreRequest(query=query(QUESTION), answer=answer("Canberra."), embedding=embedding)

    error = await refused(cache.Store(request))

    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, problem)
    assert await redis_client.dbsize() == 0
    assert not (await cache.Lookup(lookup(QUESTION))).hit  # nor a vector in the semantic tier


BAD_QUERIES = [
    (cache_pb2.CacheQuery(tenant="", model="small", messages=query("q").messages), "query.tenant"),
    (cache_pb2.CacheQuery(tenant="a:b", model="small", messages=query("q").messages), "query.tenant"),
    (cache_pb2.CacheQuery(tenant="acme", model="", messages=query("q").messages), "query.model"),
    (cache_pb2.CacheQuery(tenant="acme", model="small"), "query.messages"),
    (
        cache_pb2.CacheQuery(tenant="acme", model="small", messages=[types_pb2.ChatMessage(role="wizard")]),
        "query.messages[0].role",
    ),
]


@pytest.mark.parametrize(("bad", "field"), BAD_QUERIES)
async def test_a_bad_query_is_refused_naming_the_field(
    cache: cache_pb2_grpc.CacheStub, bad: cache_pb2.CacheQuery, field: str
) -> None:
    for call in (
        cache.Lookup(cache_pb2.LookupRequest(query=bad)),
        cache.Store(cache_pb2.StoreRequest(query=bad, answer=answer("a"))),
    ):
        error = await refused(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.details() or "").startswith(field + ":")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (cache_pb2.CacheQuery(), "query.tenant"),
        (cache_pb2.CacheQuery(tenant="*"), "query.tenant"),  # a pattern would reach other tenants' keys
        (cache_pb2.CacheQuery(tenant="acme", model="small*"), "query.model"),
        (BAD_QUERIES[-1][0], "query.messages[0].role"),
    ],
)
async def test_a_bad_invalidation_is_refused_naming_the_field(
    cache: cache_pb2_grpc.CacheStub, bad: cache_pb2.CacheQuery, field: str
) -> None:
    error = await refused(cache.Invalidate(cache_pb2.InvalidateRequest(query=bad)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith(field + ":")


# -- invalidation ----------------------------------------------------------------------------------


async def test_invalidate_removes_one_entry_then_a_tenants_model_then_the_tenant(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15), "Why is the sky blue?": towards(90)})
    entries = [
        ("acme", "small", QUESTION),
        ("acme", "small", "Why is the sky blue?"),
        ("acme", "large", QUESTION),
        ("other", "small", QUESTION),
    ]
    for tenant, model, prompt in entries:
        await cache.Store(store(prompt, "an answer", tenant=tenant, model=model))

    async def hits() -> list[bool]:
        """Which entries a lookup of a paraphrase still finds: exact and semantic tiers both went."""
        found = []
        for tenant, model, prompt in entries:
            asked = PARAPHRASE if prompt == QUESTION else prompt
            found.append((await cache.Lookup(lookup(asked, tenant=tenant, model=model))).hit)
        return found

    one = await cache.Invalidate(cache_pb2.InvalidateRequest(query=query(QUESTION)))
    assert one.removed == 1
    assert await hits() == [False, True, True, True]

    model = await cache.Invalidate(
        cache_pb2.InvalidateRequest(query=cache_pb2.CacheQuery(tenant="acme", model="small"))
    )
    assert model.removed == 1
    assert await hits() == [False, False, True, True]

    tenant = await cache.Invalidate(cache_pb2.InvalidateRequest(query=cache_pb2.CacheQuery(tenant="acme")))
    assert tenant.removed == 1
    assert await hits() == [False, False, False, True]


async def test_an_invalidation_in_the_old_shape_is_refused_not_widened(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    """InvalidateRequest's fields 1-4 were tenant, model, messages and sampling, numbered as
    CacheQuery's are: an old client's request is a CacheQuery's bytes. It has no `query` now, and
    must be refused rather than read as "every entry of no tenant"."""
    fake_embedder.vectors[QUESTION] = towards(0)
    await cache.Store(store(QUESTION, "Canberra."))
    old_shape = query(QUESTION).SerializeToString()
    request = cache_pb2.InvalidateRequest.FromString(old_shape)
    assert not request.HasField("query")
    assert request.SerializeToString() == old_shape  # sent as the old client sent it

    error = await refused(cache.Invalidate(request))

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("query.tenant:")
    assert (await cache.Lookup(lookup(QUESTION, semantic=False))).hit


# -- failing open ----------------------------------------------------------------------------------


async def test_with_redis_down_a_lookup_is_a_miss_and_store_and_invalidate_are_unavailable(
    cache: cache_pb2_grpc.CacheStub, redis_server: RedisServer, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors[QUESTION] = towards(0)
    redis_server.stop()
    bypasses = metric("subsecond_cache_bypass_total", backend="redis")

    found = await cache.Lookup(lookup(QUESTION))
    store_error = await refused(cache.Store(store(QUESTION, "Canberra.")))
    invalidate_error = await refused(cache.Invalidate(cache_pb2.InvalidateRequest(query=query(QUESTION))))

    assert not found.hit
    assert found.bypassed == "redis"
    assert store_error.code() == grpc.StatusCode.UNAVAILABLE
    assert store_error.details() == "redis unavailable; answer not cached"
    assert invalidate_error.code() == grpc.StatusCode.UNAVAILABLE
    assert metric("subsecond_cache_bypass_total", backend="redis") == bypasses + 3


@pytest.mark.parametrize("outage", ["stopped", "refusing"])
async def test_with_the_embedder_down_only_the_semantic_tier_is_skipped(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder, outage: str
) -> None:
    if outage == "stopped":
        await fake_embedder.stop()
    else:
        fake_embedder.failure = grpc.StatusCode.RESOURCE_EXHAUSTED

    stored = await cache.Store(store(QUESTION, "Canberra."))
    exact = await cache.Lookup(lookup(QUESTION))
    semantic = await cache.Lookup(lookup(PARAPHRASE))

    assert stored.key and not stored.semantic_indexed
    assert exact.hit and exact.tier == cache_pb2.CACHE_TIER_EXACT
    assert not semantic.hit
    assert semantic.bypassed == "embedding"


async def test_a_semantic_lookup_asks_for_its_embedding_while_the_exact_tier_is_read(
    cache: cache_pb2_grpc.CacheStub, fake_embedder: FakeEmbedder
) -> None:
    fake_embedder.vectors[QUESTION] = towards(0)
    await cache.Store(store(QUESTION, "Canberra."))
    embedding_calls = metric("subsecond_cache_hop_duration_seconds_count", hop="embedding")
    bypasses = metric("subsecond_cache_bypass_total", backend="embedding")

    found = await cache.Lookup(lookup(QUESTION))

    assert found.hit and found.tier == cache_pb2.CACHE_TIER_EXACT
    # The embedding call began while the exact tier was read (an exact hit cancels it if it has not
    # ended by then: a cancelled call is no bypass).
    assert metric("subsecond_cache_hop_duration_seconds_count", hop="embedding") == embedding_calls + 1
    assert metric("subsecond_cache_bypass_total", backend="embedding") == bypasses


async def test_without_embed_during_exact_an_exact_hit_never_calls_the_embedder(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path
) -> None:
    # Generous timeouts: under load a 50 ms Redis call can time out, and a bypass would fail the test.
    cache_settings = settings(
        redis_server.url,
        fake_embedder,
        tmp_path,
        EMBED_DURING_EXACT="false",
        REDIS_TIMEOUT_MS="2000",
        EMBEDDING_TIMEOUT_MS="5000",
    )
    fake_embedder.vectors[QUESTION] = towards(0)
    fake_embedder.vectors[PARAPHRASE] = towards(5)
    async with serving(cache_settings, definition(cache_settings)) as cache:
        await cache.Store(store(QUESTION, "Canberra."))
        fake_embedder.calls = 0
        exact = await cache.Lookup(lookup(QUESTION))
        assert exact.hit and exact.tier == cache_pb2.CACHE_TIER_EXACT
        assert fake_embedder.calls == 0
        semantic = await cache.Lookup(lookup(PARAPHRASE))  # embedded after the exact tier missed
        assert semantic.hit and semantic.tier == cache_pb2.CACHE_TIER_SEMANTIC
        assert fake_embedder.calls == 1


async def test_a_failed_backend_is_skipped_for_its_cool_down_then_tried_again(
    cache: cache_pb2_grpc.CacheStub, redis_server: RedisServer
) -> None:
    redis_server.stop()
    assert (await cache.Lookup(lookup(QUESTION, semantic=False))).bypassed == "redis"
    attempts = metric("subsecond_cache_hop_duration_seconds_count", hop="redis")

    skipped = await cache.Lookup(lookup(QUESTION, semantic=False))
    assert skipped.bypassed == "redis"  # the breaker is open for its cool-down (0.25 s for Redis)
    assert metric("subsecond_cache_hop_duration_seconds_count", hop="redis") == attempts  # not even tried

    redis_server.start()
    await asyncio.sleep(0.3)
    stored = await cache.Store(store(QUESTION, "Canberra."))
    found = await cache.Lookup(lookup(QUESTION, semantic=False))
    assert stored.key
    assert found.hit and not found.bypassed


def with_index(cache_settings: CacheSettings, index: VectorIndex) -> ServiceDefinition:
    """The service over a vector index the test opened itself."""
    service = CacheService(cache_settings, index)
    return ServiceDefinition(
        names=[cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name],
        register=lambda server: cache_pb2_grpc.add_CacheServicer_to_server(service, server),
        close=service.close,
    )


async def test_a_qdrant_server_nobody_listens_on_is_a_bypass(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path
) -> None:
    fake_embedder.vectors.update({QUESTION: towards(0), PARAPHRASE: towards(15)})
    cache_settings = settings(redis_server.url, fake_embedder, tmp_path)
    # Without the client's version check: it runs on a thread that would outlive the test, warning
    # that no server answered.
    client = AsyncQdrantClient(url=f"http://127.0.0.1:{free_port()}", check_compatibility=False)
    unreachable = ClientVectorIndex(client, "prompts", EMBEDDING_DIMENSIONS)

    async with serving(cache_settings, with_index(cache_settings, unreachable)) as cache:
        stored = await cache.Store(store(QUESTION, "Canberra."))
        exact = await cache.Lookup(lookup(QUESTION))
        semantic = await cache.Lookup(lookup(PARAPHRASE))

    assert stored.key and not stored.semantic_indexed
    assert exact.hit
    assert not semantic.hit
    assert semantic.bypassed == "qdrant"


class BrokenIndex(EdgeVectorIndex):
    """A real Edge index with a bug planted in its search."""

    async def search(
        self, vector: Sequence[float], *, tenant: str, model: str, scope: str, limit: int
    ) -> list[Neighbour]:
        return [Neighbour(point_id="p", score="0.9" + 1, redis_key="k", prompt="q")]  # type: ignore[operator]


async def test_a_bug_in_the_vector_index_is_an_internal_error_not_a_bypass(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path
) -> None:
    fake_embedder.vectors[QUESTION] = towards(0)
    cache_settings = settings(redis_server.url, fake_embedder, tmp_path)
    broken = BrokenIndex(tmp_path / "broken", EMBEDDING_DIMENSIONS)
    bypasses = metric("subsecond_cache_bypass_total", backend="qdrant")

    async with serving(cache_settings, with_index(cache_settings, broken)) as cache:
        error = await refused(cache.Lookup(lookup(QUESTION)))
        after = await cache.Lookup(lookup(QUESTION, semantic=False))

    assert error.code() == grpc.StatusCode.INTERNAL
    assert metric("subsecond_cache_bypass_total", backend="qdrant") == bypasses
    assert not after.bypassed  # nothing was marked down
