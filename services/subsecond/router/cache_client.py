"""The router's side of the cache service: look up (failing open), replay a hit, write through.

The cache is optional on the request path. A lookup goes to the router's near cache first
(``near_cache.py``: a fresh copy of what the cache answered this exact request), then to the cache
service with at most ``CACHE_TIMEOUT_MS``. A lookup that fails, or finds Redis down behind the
cache (so nothing can be served), opens a breaker (``kit.failopen``): for ``CACHE_BREAKER_COOLDOWN_MS``
the cache service is skipped, then one trial lookup decides whether it is back. While the cache
cannot answer, or takes longer than ``NEAR_CACHE_WAIT_MS``, the near cache's older copies are
served (stale, up to ``NEAR_CACHE_STALE_SECONDS``) and the lookup finishes in the background; a
request that has one never waits for the breaker's trial either. Anything else is a miss counted
in ``subsecond_router_cache_bypass_total``, and the request is generated (within the bypass
budget, ``tenants.py``).

A speculative miss (``pipeline.py``) asks in two steps: ``lookup`` with ``semantic`` off (the near
cache and the exact tier), then, while the generation starts, ``lookup_semantic`` (the semantic tier
alone). A lookup that searched the semantic tier returns the prompt's embedding, which the
write-through sends back so that the cache embeds a miss once.

A hit is replayed as an answer like a generation's (``answers.py``): at once, or with the gaps
the model left between its chunks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Hashable, Sequence

import grpc

from subsecond.kit.errors import from_downstream
from subsecond.kit.failopen import BackendDown, Breaker, FailOpen
from subsecond.router.admission import AUTO, Admitted, chat_messages
from subsecond.router.answers import Answer, Outcome, Piece
from subsecond.router.context import Deadline, Tasks
from subsecond.router.metrics import CACHE_BYPASS, HOP_DURATION, NEAR_CACHE_HITS, STORES, child
from subsecond.router.near_cache import NearCache, NearHit
from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, types_pb2

log = logging.getLogger(__name__)

# The cache service's ``bypassed`` for Redis: every answer lives there, so the cache can serve nothing.
_REDIS = "redis"


class RedisDown(Exception):
    """The cache service answered, but without Redis behind it: as good as down."""


class PromptEmbedding:
    """The prompt's embedding, told by the request path once its lookup has answered (empty when
    none computed it); the write-through waits for it, since a speculative generation may end before
    the semantic lookup does. The request path tells it however the request ends."""

    def __init__(self, values: Sequence[float] | None = None) -> None:
        self._known: asyncio.Future[Sequence[float]] = asyncio.get_running_loop().create_future()
        if values is not None:
            self.found(values)

    def found(self, values: Sequence[float]) -> None:
        """The embedding, or () for none; only the first call counts."""
        if not self._known.done():
            self._known.set_result(values)

    async def values(self) -> Sequence[float]:
        return await self._known


class CacheClient:
    def __init__(self, stub: cache_pb2_grpc.CacheStub, settings: RouterSettings, tasks: Tasks) -> None:
        self._stub = stub
        self._settings = settings
        self._tasks = tasks
        self._near = NearCache(settings.near_cache)
        self._lookups = FailOpen(
            "cache_service",
            failures=(grpc.aio.AioRpcError, RedisDown),
            on_duration=HOP_DURATION.labels("cache_lookup").observe,
            breaker=Breaker(settings.cache_breaker_cooldown_seconds),
        )
        # What failed last, counted as the reason of the bypasses while the breaker is open.
        self._down = "cache_service"

    async def lookup(
        self, request: Admitted, deadline: Deadline, *, semantic: bool = True
    ) -> cache_pb2.LookupResponse | None:
        """The cache's answer (a hit or a miss, with the prompt's embedding when the semantic tier
        computed it); None when the cache could not answer and the near cache had nothing for this
        request. ``semantic`` off: the near cache and the exact tier only."""
        key = near_key(request, self._settings)
        near = self._near.get(key, max_tokens=self._lookup_max_tokens(request), max_age_seconds=request.max_age_seconds)
        if near is not None and near.fresh:
            return _served(near)
        lookup = self._lookup_request(request, semantic=semantic)
        seconds = min(deadline.remaining(), self._settings.cache_timeout_seconds)
        if near is not None and not self._lookups.closed:
            CACHE_BYPASS.labels(self._down).inc()
            if self._lookups.available():  # the trial is due: made for the near cache, nobody waits for it
                self._tasks.spawn(self._keep(request, self._lookups.call(lambda: self._ask(lookup, seconds))))
            return _served(near)
        if near is None:  # nothing to serve meanwhile: the lookup is awaited in line, no task of its own
            return await self._asked(request, self._lookups.call(lambda: self._ask(lookup, seconds)))
        asking = asyncio.ensure_future(self._lookups.call(lambda: self._ask(lookup, seconds)))
        try:
            await asyncio.wait({asking}, timeout=self._settings.near_cache.wait_seconds)
        finally:
            if not asking.done():  # slow (or this call was cancelled): the lookup ends on its own
                self._tasks.spawn(self._keep(request, asking))
        if not asking.done():
            return _served(near)
        return await self._asked(request, asking, near)

    async def _asked(
        self, request: Admitted, asking: Awaitable[cache_pb2.LookupResponse], near: NearHit | None = None
    ) -> cache_pb2.LookupResponse | None:
        """The lookup's answer; while the cache cannot answer, the near cache's copy or None."""
        try:
            response = await asking
        except BackendDown:
            CACHE_BYPASS.labels(self._down).inc()
            return _served(near) if near is not None else None
        return self._answered(request, response)

    async def lookup_semantic(self, request: Admitted, deadline: Deadline) -> cache_pb2.LookupResponse | None:
        """The semantic tier alone, for a request whose exact lookup missed (``lookup`` with
        ``semantic`` off, just before): a hit or a miss with the prompt's embedding; None when the
        cache could not answer."""
        lookup = self._lookup_request(request, semantic=True)
        lookup.skip_exact = True
        seconds = min(deadline.remaining(), self._settings.cache_timeout_seconds)
        try:
            response = await self._lookups.call(lambda: self._ask(lookup, seconds))
        except BackendDown:
            CACHE_BYPASS.labels(self._down).inc()
            return None
        return self._answered(request, response)

    def _lookup_request(self, request: Admitted, *, semantic: bool) -> cache_pb2.LookupRequest:
        # The embedding comes back whenever the semantic tier computes one: "auto" chooses its tier
        # by it, and the write-through sends it back so that the cache does not embed the prompt again.
        return cache_pb2.LookupRequest(
            query=cache_query(request, self._settings),
            max_tokens=self._lookup_max_tokens(request),
            max_age_seconds=request.max_age_seconds,
            semantic=semantic,
            want_embedding=semantic,
        )

    def _answered(self, request: Admitted, response: cache_pb2.LookupResponse) -> cache_pb2.LookupResponse:
        """The cache service's answer, counted (a backend it skipped) and kept (a hit) in the near cache."""
        if response.bypassed:
            CACHE_BYPASS.labels(response.bypassed).inc()
        if response.hit:
            self._keep_near(request, response)
        return response

    def _keep_near(self, request: Admitted, response: cache_pb2.LookupResponse) -> None:
        self._near.put(near_key(request, self._settings), response, tuple(turn.content for turn in request.turns))

    async def _ask(self, lookup: cache_pb2.LookupRequest, seconds: float) -> cache_pb2.LookupResponse:
        try:
            response: cache_pb2.LookupResponse = await self._stub.Lookup(lookup, timeout=seconds)
        except grpc.aio.AioRpcError:
            self._down = "cache_service"
            raise
        if response.bypassed == _REDIS:
            self._down = _REDIS
            raise RedisDown()
        return response

    async def _keep(self, request: Admitted, lookup: Awaitable[cache_pb2.LookupResponse]) -> None:
        """A lookup nobody waits for any more (the near cache answered): its hit refreshes the near
        cache, and its outcome moves the breaker."""
        try:
            response = await lookup
        except BackendDown:
            return
        if response.hit:
            self._keep_near(request, response)

    async def store(self, request: Admitted, answer: cache_pb2.CachedAnswer, embedding: PromptEmbedding) -> None:
        """Writes a finished generation through (and into the near cache), with the prompt's
        ``embedding`` when its lookup computed one; a failure is counted and logged, never raised
        (the client has its answer already)."""
        self._keep_near(request, cache_pb2.LookupResponse(hit=True, tier=cache_pb2.CACHE_TIER_EXACT, answer=answer))
        store = cache_pb2.StoreRequest(
            query=cache_query(request, self._settings), answer=answer, embedding=await embedding.values()
        )
        with HOP_DURATION.labels("cache_store").time():
            try:
                await self._stub.Store(store, timeout=self._settings.default_deadline_seconds)
                STORES.labels("stored").inc()
            except grpc.aio.AioRpcError as error:
                STORES.labels("failed").inc()
                log.warning("write-through failed: %s %s", error.code().name, error.details())

    async def invalidate(self, query: cache_pb2.CacheQuery, deadline: Deadline) -> cache_pb2.InvalidateResponse:
        """Removes what ``query`` names in the cache service (an admin's call: errors are raised, not
        failed open), and clears the near cache so that this router stops serving it at once."""
        try:
            invalidate = cache_pb2.InvalidateRequest(query=query)
            response = await self._stub.Invalidate(invalidate, timeout=deadline.remaining())
        except grpc.aio.AioRpcError as error:
            raise from_downstream(error, "cache") from None
        self._near.clear()
        return response

    async def service_stats(self, tenant: str, deadline: Deadline) -> cache_pb2.StatsResponse:
        """The cache service's side of the statistics (an admin's call: errors are raised)."""
        try:
            return await self._stub.Stats(cache_pb2.StatsRequest(tenant=tenant), timeout=deadline.remaining())
        except grpc.aio.AioRpcError as error:
            raise from_downstream(error, "cache") from None

    def stats(self) -> router_pb2.CacheStatsResponse:
        entries, size = self._near.size
        return router_pb2.CacheStatsResponse(
            near_cache_entries=entries,
            near_cache_bytes=size,
            cache_breaker_open=not self._lookups.closed,
            revisions=self._settings.cache_revisions,
        )

    def _lookup_max_tokens(self, request: Admitted) -> int:
        """The longest cached answer the caller would have let run: what its tier would be asked for
        (for "auto", only an explicit max_tokens limits it)."""
        if request.tier == AUTO:
            return request.max_tokens
        limits = self._settings.tier_limits[request.tier]
        return min(request.max_tokens or limits.default_max_tokens, limits.max_tokens)



def near_key(request: Admitted, settings: RouterSettings) -> Hashable:
    """The near cache's key of ``request``: as sent, revision included (the near cache keeps only this
    revision's), not normalised (``near_cache.py`` says why)."""
    return (request.tenant, request.tier, settings.cache_revisions[request.tier], request.turns, request.sampling)


def cache_query(request: Admitted, settings: RouterSettings) -> cache_pb2.CacheQuery:
    """What the cache keys ``request`` by (its tenant, tier, conversation, sampling and revision)."""
    return cache_pb2.CacheQuery(
        tenant=request.tenant,
        model=request.tier,
        messages=chat_messages(request.turns),
        sampling=request.sampling_params(),
        revision=settings.cache_revisions[request.tier],
    )


def _served(near: NearHit) -> cache_pb2.LookupResponse:
    child(NEAR_CACHE_HITS, "fresh" if near.fresh else "stale").inc()
    return near.response


def replay(request: Admitted, hit: cache_pb2.LookupResponse) -> Answer:
    """A hit as an answer: paced when the caller asked for it and the gaps were recorded."""
    cached = hit.answer
    outcome = Outcome(
        served_by=types_pb2.SERVED_BY_EXACT if hit.tier == cache_pb2.CACHE_TIER_EXACT else types_pb2.SERVED_BY_SEMANTIC,
        model=cached.model or request.tier,
        finish_reason=cached.finish_reason,
        prompt_tokens=cached.prompt_tokens,
        completion_tokens=cached.completion_tokens,
        similarity=hit.similarity,
        cache_age_seconds=hit.age_seconds,
        tier_reason="cached",
    )
    paced = request.replay == router_pb2.REPLAY_PACED and len(cached.chunk_offsets_seconds) == len(cached.chunks)
    return _paced(cached, outcome) if paced else _at_once(cached, outcome)


async def _at_once(cached: cache_pb2.CachedAnswer, outcome: Outcome) -> Answer:
    """The whole cached answer in the final piece (or as its sentences, once rechunked)."""
    yield Piece("".join(cached.chunks), outcome)


async def _paced(cached: cache_pb2.CachedAnswer, outcome: Outcome) -> Answer:
    """The cached chunks with the gaps the model left between them; the first goes out at once."""
    began = time.perf_counter()
    for text, offset in zip(cached.chunks, cached.chunk_offsets_seconds, strict=True):
        wait = offset - (time.perf_counter() - began)
        if wait > 0:
            await asyncio.sleep(wait)
        yield Piece(text)
    yield Piece("", outcome)
