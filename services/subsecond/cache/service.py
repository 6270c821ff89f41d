"""The Cache servicer: exact tier in Redis, semantic tier in Qdrant, fail-open on each backend.

Lookup: the exact key first; on a miss, for single-turn prompts, embed the prompt, search the
tenant's and model's vectors of the same scope, and accept the best neighbour that passes the
similarity threshold and the false-hit guard and whose answer is still in Redis (an expired
answer's vector is deleted). A backend that fails with its own errors (kit.failopen) is skipped
for a short cool-down, and the lookup reports a miss with ``bypassed`` naming it: the router then
generates as usual. Any other exception is a bug and ends the call as INTERNAL. Refusals raise
kit.errors' domain errors; the server shell turns them into status codes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
from opentelemetry import trace
from prometheus_client import REGISTRY, Counter, Histogram

from subsecond.cache.entries import (
    KEY_PREFIX,
    Query,
    decode_answer,
    encode_answer,
    parse_owner,
    parse_query,
    tenant_prefix,
    usable,
)
from subsecond.cache.guard import Acceptance, accept_candidates
from subsecond.cache.guard import prepare as prepare_guard
from subsecond.cache.normalise import normalise
from subsecond.cache.settings import CacheSettings
from subsecond.cache.vectors import (
    VECTOR_STORE_FAILURES,
    EdgeVectorIndex,
    Neighbour,
    VectorEntry,
    VectorIndex,
    open_vector_index,
)
from subsecond.cache.verifier import open_verifier
from subsecond.kit.channels import open_channel
from subsecond.kit.errors import InvalidArgument, Unavailable
from subsecond.kit.failopen import BackendDown, Breaker, FailOpen
from subsecond.kit.metrics import FAST_SECONDS
from subsecond.kit.redis_client import REDIS_FAILURES, connect
from subsecond.kit.server import ServiceDefinition
from subsecond.v1 import cache_pb2, cache_pb2_grpc, embedding_pb2, embedding_pb2_grpc, types_pb2

LOOKUP_SECONDS = Histogram(
    "subsecond_cache_lookup_duration_seconds", "Lookup latency by result.", ["result"], buckets=FAST_SECONDS
)
HOP_SECONDS = Histogram(
    "subsecond_cache_hop_duration_seconds",
    "Time in each backend call: redis, embedding, qdrant.",
    ["hop"],
    buckets=FAST_SECONDS,
)
LOOKUPS = Counter("subsecond_cache_lookups_total", "Lookups by result: exact, semantic, miss.", ["result"])
SEMANTIC_REJECTS = Counter(
    "subsecond_cache_semantic_rejections_total", "Neighbours refused by the threshold or guard.", ["reason"]
)
BYPASSES = Counter("subsecond_cache_bypass_total", "Operations that skipped a failed backend.", ["backend"])
STORES = Counter("subsecond_cache_stores_total", "Store calls by result.", ["result"])
EXPIRED_VECTORS = Counter("subsecond_cache_expired_vectors_total", "Vectors deleted because their answer expired.")

EMBEDDER = embedding_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
# all-MiniLM-L6-v2's output size: the semantic tier's vectors.
EMBEDDING_DIMENSIONS = 384
# How far from 1 the norm of a stored embedding may be: the embedding service normalises in float32
# (an error near 1e-7), and float32 on the wire keeps it; anything further is not its vector.
UNIT_NORM_TOLERANCE = 1e-3


def _backend(name: str, failures: tuple[type[BaseException], ...], cooldown_seconds: float = 1.0) -> FailOpen:
    """One fail-open backend, counted under its name in the bypass and hop metrics."""
    return FailOpen(
        name,
        failures,
        on_bypass=BYPASSES.labels(name).inc,
        on_duration=HOP_SECONDS.labels(name).observe,
        breaker=Breaker(cooldown_seconds),
    )


class CacheService(cache_pb2_grpc.CacheServicer):
    def __init__(self, settings: CacheSettings, vectors: VectorIndex) -> None:
        self._settings = settings
        self._redis = connect(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds)
        self._vectors = vectors
        self._channel = open_channel(settings.embedding_url, [EMBEDDER], settings.server)
        self._embedder = embedding_pb2_grpc.EmbedderStub(self._channel)
        # Only each backend's own errors mean "it is down": anything else is a bug and ends the
        # call as INTERNAL (kit.errors), never as a silent bypass.
        # Redis is tried again a quarter of a second after a failure (one trial call, bounded by the
        # Redis timeout), so a restarted Redis serves hits again well within a second.
        self._redis_backend = _backend("redis", REDIS_FAILURES, cooldown_seconds=0.25)
        self._vector_backend = _backend("qdrant", VECTOR_STORE_FAILURES)
        self._embedding_backend = _backend("embedding", (grpc.aio.AioRpcError,))
        # The guard and the pair verifier are CPU work (bounded: guard.MAX_DIFFERING_WORDS, the
        # verifier's max_length): a few threads run them so that the event loop keeps answering health
        # checks and exact hits meanwhile. Without a verifier no neighbour is served (fail safe).
        self._verifier = open_verifier(settings.verifier_dir, settings.verifier_threads)
        self._guard_pool = ThreadPoolExecutor(settings.guard_workers, thread_name_prefix="cache-guard")

    # -- RPCs -----------------------------------------------------------------------------------

    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        query = parse_query(request.query)
        if request.skip_exact and not request.semantic:
            raise InvalidArgument("skip_exact: a lookup that skips the exact tier must search the semantic one")
        started = time.perf_counter()
        try:
            response = await self._lookup(query, request)
        except BackendDown as down:
            response = cache_pb2.LookupResponse(hit=False, bypassed=down.backend)
        result = {cache_pb2.CACHE_TIER_EXACT: "exact", cache_pb2.CACHE_TIER_SEMANTIC: "semantic"}.get(
            response.tier, "miss"
        )
        LOOKUPS.labels(result).inc()
        LOOKUP_SECONDS.labels(result).observe(time.perf_counter() - started)
        return response

    async def Store(
        self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StoreResponse:
        query = parse_query(request.query)
        answer = request.answer
        if answer.finish_reason != types_pb2.FINISH_REASON_STOP:
            STORES.labels("refused").inc()
            raise InvalidArgument("answer.finish_reason: only answers that finished normally (STOP) are cached")
        if not "".join(answer.chunks).strip():
            STORES.labels("refused").inc()
            raise InvalidArgument("answer.chunks: an empty answer is not cached")
        if request.embedding and (problem := _embedding_problem(request.embedding)):
            STORES.labels("refused").inc()
            raise InvalidArgument(f"embedding: {problem}")
        stored = cache_pb2.CachedAnswer()
        stored.CopyFrom(answer)
        stored.created_at = time.time()
        key = query.exact_key
        ttl = request.ttl_seconds or self._settings.default_ttl_seconds
        try:
            await self._redis_backend.call(lambda: self._redis.set(key, encode_answer(stored), ex=ttl))
        except BackendDown as down:
            STORES.labels("bypassed").inc()
            raise Unavailable(f"{down.backend} unavailable; answer not cached") from down
        indexed = await self._index(query, key, request.embedding)
        STORES.labels("stored").inc()
        return cache_pb2.StoreResponse(key=key, semantic_indexed=indexed)

    async def Invalidate(
        self, request: cache_pb2.InvalidateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.InvalidateResponse:
        """One entry when the query has messages, else all of a tenant's (or one model's)."""
        try:
            if request.query.messages:
                key = parse_query(request.query).exact_key
                removed = await self._redis_backend.call(lambda: self._redis.delete(key))
                vectors = await self._vector_backend.call(lambda: self._vectors.delete([key]))
            else:
                tenant, model = parse_owner(request.query)
                removed = await self._redis_backend.call(lambda: self._delete_matching(tenant_prefix(tenant, model)))
                vectors = await self._vector_backend.call(
                    lambda: self._vectors.delete_where(tenant=tenant, model=model or None)
                )
        except BackendDown as down:
            # Unlike a lookup, an invalidation that skipped a store did not do what was asked.
            raise Unavailable(f"{down.backend} unavailable; invalidate again later") from down
        return cache_pb2.InvalidateResponse(removed=removed, vectors_removed=vectors)

    async def Stats(
        self, request: cache_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StatsResponse:
        """A tenant's (a name, checked as in every query) or every tenant's entries and vectors, and
        this replica's counters. Entries are counted by a SCAN of the tenant's keys (of every key for
        all tenants): an operator's call, not one for the request path."""
        tenant = parse_owner(cache_pb2.CacheQuery(tenant=request.tenant))[0] if request.tenant else None
        try:
            entries = await self._redis_backend.call(lambda: self._count_entries(tenant))
            tenants = {
                name: cache_pb2.TenantStats(
                    exact_entries=count,
                    vectors=await self._vector_backend.call(partial(self._vectors.count, tenant=name)),
                )
                for name, count in entries.items()
            }
        except BackendDown as down:
            raise Unavailable(f"{down.backend} unavailable; no statistics") from down
        return cache_pb2.StatsResponse(
            tenants=tenants,
            semantic_backend=self._semantic_backend(),
            lookups=_counted("subsecond_cache_lookups_total", ("exact", "semantic", "miss")),
            stores=_counted("subsecond_cache_stores_total", ("stored", "refused", "bypassed")),
        )

    def _semantic_backend(self) -> str:
        url = self._settings.vector_url
        if not self._settings.semantic_enabled:
            return "off"
        return "qdrant" if url.startswith(("http://", "https://")) else url

    # -- lookup ---------------------------------------------------------------------------------

    async def _lookup(self, query: Query, request: cache_pb2.LookupRequest) -> cache_pb2.LookupResponse:
        now = time.time()
        # The prompt the semantic tier searches for, if it does (a single-turn prompt).
        text = query.semantic_text if request.semantic and self._settings.semantic_enabled else None
        # The embedding is asked for while the exact tier is read (EMBED_DURING_EXACT): a semantic
        # lookup then waits for the longer of the two round trips, not their sum; an exact hit
        # cancels the call.
        embedding = (
            asyncio.create_task(self._embed(query.tenant, text))
            if text and not request.skip_exact and self._settings.embed_during_exact
            else None
        )
        try:
            if not request.skip_exact:
                raw = await self._redis_backend.call(lambda: self._redis.get(query.exact_key))
                _mark("exact read")
                if raw is not None and (hit := _hit(raw, request, now, cache_pb2.CACHE_TIER_EXACT)) is not None:
                    return hit
            if not text:
                return cache_pb2.LookupResponse(hit=False)
            vector = await (embedding or self._embed(query.tenant, text))
            _mark("embedding received")
        finally:
            if embedding is not None:
                _settle(embedding)
        return await self._semantic(query, request, text, vector, now)

    async def _semantic(
        self, query: Query, request: cache_pb2.LookupRequest, text: str, vector: list[float], now: float
    ) -> cache_pb2.LookupResponse:
        """The semantic tier's answer for ``text`` (embedded as ``vector``), or a miss."""
        miss = cache_pb2.LookupResponse(hit=False, embedding=vector if request.want_embedding else ())
        neighbours = await self._vector_backend.call(
            lambda: self._vectors.search(
                vector,
                tenant=query.tenant,
                model=query.model,
                scope=query.scope,
                limit=self._settings.semantic_candidates,
            )
        )
        _mark("searched")
        acceptance = Acceptance(self._settings.threshold_for(query.tenant, query.model), self._verifier)
        # Best first, one neighbour at a time: the next one is judged only when this one is refused or
        # its answer expired, so a hit pays for one verifier run however many neighbours pass the
        # threshold. Neighbours come sorted, so the first below the threshold ends the search.
        for rank, neighbour in enumerate(neighbours):
            if not neighbour.score >= acceptance.point.similarity:  # also a NaN score
                SEMANTIC_REJECTS.labels("below_threshold").inc(len(neighbours) - rank)
                break
            hit = await self._judged(text, neighbour, acceptance, request, now)
            if hit is not None:
                return hit
        return miss

    async def _judged(
        self,
        text: str,
        neighbour: Neighbour,
        acceptance: Acceptance,
        request: cache_pb2.LookupRequest,
        now: float,
    ) -> cache_pb2.LookupResponse | None:
        """The neighbour's answer as a hit, if the guard and the verifier accept it for ``text`` and it
        is still stored and usable. They run in their threads (CPU work of milliseconds: the event loop
        keeps serving meanwhile) while the answer is read (a wasted GET when they refuse it)."""
        answer = asyncio.create_task(self._redis_backend.call(partial(self._redis.get, neighbour.redis_key)))
        try:
            (decision,) = await asyncio.get_running_loop().run_in_executor(
                self._guard_pool, accept_candidates, text, [(neighbour.prompt, neighbour.score)], acceptance
            )
            _mark("judged")
            if not decision.hit:
                SEMANTIC_REJECTS.labels(decision.reason).inc()
                return None
            raw = await answer
            _mark("answer read")
        finally:
            _settle(answer)
        if raw is None:  # the answer expired: the vector is stale
            EXPIRED_VECTORS.inc()
            await self._vector_backend.call(partial(self._vectors.delete, [neighbour.point_id]))
            return None
        return _hit(raw, request, now, cache_pb2.CACHE_TIER_SEMANTIC, neighbour.score)

    async def _index(self, query: Query, key: str, embedding: Sequence[float]) -> bool:
        """Adds the prompt to the semantic tier, with ``embedding`` when the caller sent the one its
        lookup got (checked already), else embedded now; a failure leaves the exact entry in place."""
        text = query.semantic_text
        if not (self._settings.semantic_enabled and text):
            return False
        try:
            vector = list(embedding) or await self._embed(query.tenant, text)
            await self._vector_backend.call(
                lambda: self._vectors.upsert(
                    VectorEntry(
                        point_id=key,
                        vector=vector,
                        tenant=query.tenant,
                        model=query.model,
                        scope=query.scope,
                        redis_key=key,
                        prompt=text,
                    )
                )
            )
        except BackendDown:
            return False
        return True

    # -- backends -------------------------------------------------------------------------------

    async def _delete_matching(self, prefix: str) -> int:
        """Deletes every exact-tier key under prefix; how many there were."""
        removed = 0
        async for key in self._redis.scan_iter(match=prefix + "*", count=500):
            removed += await self._redis.delete(key)
        return removed

    async def _count_entries(self, tenant: str | None) -> dict[str, int]:
        """Exact-tier keys per tenant: of ``tenant`` (0 when it has none), or of every tenant with one."""
        counts = dict.fromkeys([tenant] if tenant is not None else [], 0)
        pattern = tenant_prefix(tenant) + "*" if tenant is not None else KEY_PREFIX + ":*"
        async for key in self._redis.scan_iter(match=pattern, count=1000):
            owner = tenant_of_key(key.decode() if isinstance(key, bytes) else key)
            counts[owner] = counts.get(owner, 0) + 1
        return counts

    async def _embed(self, tenant: str, text: str) -> list[float]:
        """The semantic tier's vector for a prompt: the embedding of the prompt as the guard reads it
        (normalised, in the guard's threads: "48 hrs" and "two days", "the IRS" and "the Internal
        Revenue Service" embed as one text), so that a paraphrase written with other numbers, units or
        abbreviations is not left below the similarity threshold before the guard sees it."""
        normalised = await asyncio.get_running_loop().run_in_executor(self._guard_pool, normalise, text)
        response = await self._embedding_backend.call(
            lambda: self._embedder.Embed(
                embedding_pb2.EmbedRequest(texts=[normalised], tenant=tenant),
                timeout=self._settings.embedding_timeout_seconds,
            ),
        )
        return list(response.embeddings[0].values)

    async def close(self) -> None:
        await self._channel.close()
        await self._vectors.close()
        await self._redis.aclose()
        self._guard_pool.shutdown(wait=False, cancel_futures=True)


def _mark(event: str) -> None:
    """An event on the lookup's span, where a traced lookup's time went (benchmarks/miss_path.py
    --semantic reads them); a call without a span (export off) costs about a microsecond."""
    trace.get_current_span().add_event(event)


def _settle(task: asyncio.Task[Any]) -> None:
    """Cancels a call the lookup no longer needs, or takes the error of one that failed unread (a
    bypass it already counted), so that nothing reports it as never retrieved."""
    if not task.done():
        task.cancel()
    elif not task.cancelled():
        task.exception()


def _embedding_problem(embedding: Sequence[float]) -> str | None:
    """Why a caller's embedding cannot be this service's own (the semantic tier's vectors are
    all-MiniLM-L6-v2's, L2-normalised), or None."""
    if len(embedding) != EMBEDDING_DIMENSIONS:
        return f"{len(embedding)} dimensions, expected {EMBEDDING_DIMENSIONS}"
    norm = math.sqrt(math.fsum(x * x for x in embedding))
    if not abs(norm - 1.0) <= UNIT_NORM_TOLERANCE:  # also refuses NaN and infinities
        return f"norm {norm:.4g}, expected a unit vector"
    return None


def tenant_of_key(key: str) -> str:
    """The tenant of an exact-tier key (``<KEY_PREFIX>:{tenant}:...``; the braces are a hash tag)."""
    return key.removeprefix(KEY_PREFIX + ":").split(":", 1)[0].strip("{}")


def _counted(metric: str, results: tuple[str, ...]) -> dict[str, int]:
    """This process's totals of a counter by its ``result`` label."""
    return {result: int(REGISTRY.get_sample_value(metric, {"result": result}) or 0) for result in results}


def _hit(
    raw: bytes | str,
    request: cache_pb2.LookupRequest,
    now: float,
    tier: cache_pb2.CacheTier,
    similarity: float = 0.0,
) -> cache_pb2.LookupResponse | None:
    """A stored answer as a hit, or None when this caller cannot use it (too long or too old)."""
    answer = decode_answer(raw)
    if not usable(answer, max_tokens=request.max_tokens, max_age_seconds=request.max_age_seconds, now=now):
        return None
    return cache_pb2.LookupResponse(
        hit=True, tier=tier, answer=answer, similarity=similarity, age_seconds=now - answer.created_at
    )


def definition(settings: CacheSettings) -> ServiceDefinition:
    vectors = open_vector_index(
        settings.vector_url,
        path=settings.vector_path,
        collection=settings.vector_collection,
        dimensions=EMBEDDING_DIMENSIONS,
        api_key=settings.vector_api_key or None,
        layout=settings.vector_layout,
    )
    service = CacheService(settings, vectors)

    async def warm_up() -> None:
        await asyncio.to_thread(prepare_guard)
        # Qdrant Edge has no background optimiser: build its index now, while health says NOT_SERVING.
        if isinstance(vectors, EdgeVectorIndex):
            await vectors.optimize()

    return ServiceDefinition.for_servicer(
        cache_pb2.DESCRIPTOR.services_by_name["Cache"],
        cache_pb2_grpc.add_CacheServicer_to_server,
        service,
        warm_up=warm_up,
        close=service.close,
    )
