"""The router's side of the cache service: look up (failing open), replay a hit, write through.

The cache is optional on the request path. A lookup goes to the router's near cache first
(``near_cache.py``: a fresh copy of what the cache answered this exact request), then to the cache
service with at most ``CACHE_TIMEOUT_MS``. A lookup that fails, or finds Redis down behind the
cache (so nothing can be served), opens a breaker (``kit.failopen``): for ``CACHE_BREAKER_COOLDOWN_MS``
the cache service is skipped, then one trial lookup decides whether it is back. While the cache
cannot answer, the near cache's older copies are served (stale, up to ``NEAR_CACHE_STALE_SECONDS``);
a request that has one never waits for the trial, which then runs in the background. Anything
else is a miss counted in ``subsecond_router_cache_bypass_total``, and the request is generated
(within the bypass budget, ``tenants.py``).

A hit is replayed as an answer like a generation's (``answers.py``): at once, or with the gaps
the model left between its chunks.
"""

from __future__ import annotations

import asyncio
import logging
import time

import grpc

from subsecond.kit.failopen import BackendDown, Breaker, FailOpen
from subsecond.kit.prompt_identity import request_digest
from subsecond.router.admission import AUTO, Admitted, chat_messages
from subsecond.router.answers import Answer, Outcome, Piece
from subsecond.router.context import Deadline, Tasks
from subsecond.router.metrics import CACHE_BYPASS, HOP_DURATION, STORES
from subsecond.router.near_cache import NearCache
from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, types_pb2

log = logging.getLogger(__name__)

# The cache service's ``bypassed`` for Redis: every answer lives there, so the cache can serve nothing.
_REDIS = "redis"


class RedisDown(Exception):
    """The cache service answered, but without Redis behind it: as good as down."""


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

    async def lookup(self, request: Admitted, deadline: Deadline) -> cache_pb2.LookupResponse | None:
        """The cache's answer (a hit or a miss, with the prompt's embedding for "auto"); None when
        the cache could not answer and the near cache had nothing for this request."""
        key = request_digest(request.tenant, request.tier, request.turns, request.sampling)
        max_tokens = self._lookup_max_tokens(request)

        def near(*, stale: bool) -> cache_pb2.LookupResponse | None:
            return self._near.get(key, max_tokens=max_tokens, max_age_seconds=request.max_age_seconds, stale=stale)

        fresh = near(stale=False)
        if fresh is not None:
            return fresh
        lookup = cache_pb2.LookupRequest(
            query=self._query(request),
            max_tokens=max_tokens,
            max_age_seconds=request.max_age_seconds,
            semantic=True,
            want_embedding=request.tier == AUTO,
        )
        if not self._lookups.closed and (stale := near(stale=True)) is not None:
            CACHE_BYPASS.labels(self._down).inc()
            if self._lookups.available():
                self._tasks.spawn(self._trial(key, lookup))
            return stale
        timeout = min(deadline.remaining(), self._settings.cache_timeout_seconds)
        try:
            response = await self._lookups.call(lambda: self._ask(lookup, timeout))
        except BackendDown:
            CACHE_BYPASS.labels(self._down).inc()
            return near(stale=True)
        if response.bypassed:
            CACHE_BYPASS.labels(response.bypassed).inc()
        if response.hit:
            self._near.put(key, response)
        return response

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

    async def _trial(self, key: str, lookup: cache_pb2.LookupRequest) -> None:
        """The breaker's trial lookup for a request already answered from the near cache."""
        try:
            response = await self._lookups.call(lambda: self._ask(lookup, self._settings.cache_timeout_seconds))
        except BackendDown:
            return
        if response.hit:
            self._near.put(key, response)

    async def store(self, request: Admitted, answer: cache_pb2.CachedAnswer) -> None:
        """Writes a finished generation through (and into the near cache); a failure is counted and
        logged, never raised (the client has its answer already)."""
        key = request_digest(request.tenant, request.tier, request.turns, request.sampling)
        self._near.put(key, cache_pb2.LookupResponse(hit=True, tier=cache_pb2.CACHE_TIER_EXACT, answer=answer))
        store = cache_pb2.StoreRequest(query=self._query(request), answer=answer)
        with HOP_DURATION.labels("cache_store").time():
            try:
                await self._stub.Store(store, timeout=self._settings.default_deadline_seconds)
                STORES.labels("stored").inc()
            except grpc.aio.AioRpcError as error:
                STORES.labels("failed").inc()
                log.warning("write-through failed: %s %s", error.code().name, error.details())

    def _lookup_max_tokens(self, request: Admitted) -> int:
        """The longest cached answer the caller would have let run: what its tier would be asked for
        (for "auto", only an explicit max_tokens limits it)."""
        if request.tier == AUTO:
            return request.max_tokens
        limits = self._settings.tier_limits[request.tier]
        return min(request.max_tokens or limits.default_max_tokens, limits.max_tokens)

    @staticmethod
    def _query(request: Admitted) -> cache_pb2.CacheQuery:
        return cache_pb2.CacheQuery(
            tenant=request.tenant,
            model=request.tier,
            messages=chat_messages(request.turns),
            sampling=request.sampling_params(),
        )


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
