"""The Router servicer: admit, answer from the cache or generate, stream, write through.

Each request is admitted (validated, tenant resolved, tenant limit applied), then looked up in
the cache unless its policy says otherwise. A hit is replayed as the same stream a generation
gives. A miss joins (or starts) the flight for identical requests; each generated chunk is
forwarded the moment it arrives. A generation that finished normally is stored after its last
chunk went out; a cancelled, failed or truncated one never is. Every downstream call carries the
caller's remaining deadline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as TallyCounter
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from subsecond.kit.channels import open_channel
from subsecond.kit.metrics import FAST_SECONDS, REQUEST_SECONDS
from subsecond.kit.prompt_identity import request_digest
from subsecond.kit.server import ServiceDefinition
from subsecond.router.admission import Admitted, Rejected, admit
from subsecond.router.chunking import SentenceChunker
from subsecond.router.coalescing import Coalescer
from subsecond.router.settings import RouterSettings
from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    types_pb2,
)

log = logging.getLogger(__name__)

SERVED_BY = {
    types_pb2.SERVED_BY_EXACT: "exact",
    types_pb2.SERVED_BY_SEMANTIC: "semantic",
    types_pb2.SERVED_BY_GENERATED: "generated",
}
REQUEST_DURATION = Histogram(
    "subsecond_router_request_duration_seconds",
    "Whole Generate calls.",
    ["served_by"],
    buckets=REQUEST_SECONDS,
)
FIRST_CHUNK = Histogram(
    "subsecond_router_time_to_first_chunk_seconds",
    "From a Generate call arriving to its first chunk leaving.",
    ["served_by"],
    buckets=REQUEST_SECONDS,
)
HOP_DURATION = Histogram(
    "subsecond_router_hop_duration_seconds",
    "Router's downstream hops: cache_lookup, generation_first_chunk, cache_store.",
    ["hop"],
    buckets=FAST_SECONDS,
)
REQUESTS = Counter("subsecond_router_requests_total", "Generate calls by final status code.", ["code"])
CACHE_BYPASS = Counter(
    "subsecond_router_cache_bypass_total",
    "Lookups that skipped the cache, by reason: the cache service failed, or one of its backends did.",
    ["reason"],
)
COALESCED = Counter("subsecond_router_coalesced_requests_total", "Misses that joined an identical running generation.")
STORES = Counter(
    "subsecond_router_cache_stores_total", "Write-throughs by result: stored, skipped, failed.", ["result"]
)
TOKENS = Counter("subsecond_router_tokens_total", "Tokens of answers served, by model and kind.", ["model", "kind"])
IN_FLIGHT = Gauge("subsecond_router_streams_in_flight", "Generate streams open now.")

# How a generation service error reaches the client: its code, unless it is not the client's business.
_PASS_THROUGH = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.CANCELLED,
}
CACHE_SERVICE = cache_pb2.DESCRIPTOR.services_by_name["Cache"].full_name
GENERATOR_SERVICE = generation_pb2.DESCRIPTOR.services_by_name["Generator"].full_name


def _messages(request: Admitted) -> list[types_pb2.ChatMessage]:
    return [types_pb2.ChatMessage(role=turn.role, content=turn.content) for turn in request.turns]


def _sampling(request: Admitted) -> types_pb2.SamplingParams:
    params = types_pb2.SamplingParams(temperature=request.sampling.temperature, top_p=request.sampling.top_p)
    if request.sampling.seed is not None:
        params.seed = request.sampling.seed
    return params


class Rechunker:
    """Turns the chunks of an answer into the chunks the client asked for."""

    def __init__(self, chunking: int) -> None:
        self._sentences = SentenceChunker() if chunking == router_pb2.CHUNKING_SENTENCE else None

    def feed(self, text: str) -> list[str]:
        if self._sentences is None:
            return [text] if text else []
        return self._sentences.feed(text)

    def last(self, text: str) -> tuple[list[str], str]:
        """For the stream's final text: the chunks to send before the final message, and the text
        the final message carries (in token mode, all of it: one message fewer)."""
        if self._sentences is None:
            return [], text
        return self._sentences.feed(text), self._sentences.flush()


class RouterService(router_pb2_grpc.RouterServicer):
    def __init__(self, settings: RouterSettings) -> None:
        self._settings = settings
        self._cache_channel = open_channel(settings.cache_url, [CACHE_SERVICE])
        self._generation_channel = open_channel(settings.generation_url, [GENERATOR_SERVICE])
        self._cache = cache_pb2_grpc.CacheStub(self._cache_channel)
        self._generator = generation_pb2_grpc.GeneratorStub(self._generation_channel)
        self._flights: Coalescer[generation_pb2.GenerationChunk] = Coalescer()
        self._tenant_streams: TallyCounter[str] = TallyCounter()
        self._background: set[asyncio.Task[None]] = set()

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        IN_FLIGHT.inc()
        try:
            try:
                admitted = admit(request, dict(context.invocation_metadata() or ()), self._settings)
            except Rejected as rejected:
                code = grpc.StatusCode.UNAUTHENTICATED if rejected.unauthenticated else grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(rejected))
            if self._tenant_streams[admitted.tenant] >= self._settings.tenant_max_streams:
                code = grpc.StatusCode.RESOURCE_EXHAUSTED
                await context.abort(
                    code,
                    f"tenant {admitted.tenant} has {self._settings.tenant_max_streams} streams open; retry later",
                )
            self._tenant_streams[admitted.tenant] += 1
            try:
                async for response in self._serve(admitted, context, started):
                    yield response
            finally:
                self._tenant_streams[admitted.tenant] -= 1
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = context.code() or code
            raise
        finally:
            IN_FLIGHT.dec()
            REQUESTS.labels(code.name if isinstance(code, grpc.StatusCode) else str(code)).inc()

    # -- the request path -----------------------------------------------------------------------

    def _remaining(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return self._settings.default_deadline_seconds if remaining is None else max(remaining, 0.001)

    async def _serve(
        self, request: Admitted, context: grpc.aio.ServicerContext, started: float
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        if request.cache_mode == router_pb2.CACHE_MODE_USE:
            hit = await self._lookup(request, context)
            if hit is not None:
                async for response in self._replay(request, hit, started):
                    yield response
                return
        async for response in self._generate(request, context, started):
            yield response

    async def _lookup(self, request: Admitted, context: grpc.aio.ServicerContext) -> cache_pb2.LookupResponse | None:
        lookup = cache_pb2.LookupRequest(
            query=self._query(request),
            max_tokens=request.max_tokens,
            max_age_seconds=request.max_age_seconds,
            semantic=True,
        )
        with HOP_DURATION.labels("cache_lookup").time():
            try:
                response: cache_pb2.LookupResponse = await self._cache.Lookup(
                    lookup, timeout=min(self._remaining(context), self._settings.cache_timeout_seconds)
                )
            except grpc.aio.AioRpcError as error:
                CACHE_BYPASS.labels("cache_service").inc()
                log.warning("cache lookup failed, generating", extra={"code": error.code().name})
                return None
        if response.bypassed:
            CACHE_BYPASS.labels(response.bypassed).inc()
        return response if response.hit else None

    def _query(self, request: Admitted) -> cache_pb2.CacheQuery:
        return cache_pb2.CacheQuery(
            tenant=request.tenant,
            model=request.tier,
            messages=_messages(request),
            sampling=_sampling(request),
        )

    async def _replay(
        self, request: Admitted, hit: cache_pb2.LookupResponse, started: float
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        served_by = (
            types_pb2.SERVED_BY_EXACT if hit.tier == cache_pb2.CACHE_TIER_EXACT else types_pb2.SERVED_BY_SEMANTIC
        )
        completion = router_pb2.Completion(
            served_by=served_by,
            similarity=hit.similarity,
            cache_age_seconds=hit.age_seconds,
            prompt_tokens=hit.answer.prompt_tokens,
            completion_tokens=hit.answer.completion_tokens,
            finish_reason=hit.answer.finish_reason,
            model=request.tier,
        )
        # Replayed at once: the whole answer is known, so it goes out in the final message (or as its sentences).
        whole = generation_pb2.GenerationChunk(text="".join(hit.answer.chunks), done=generation_pb2.GenerationDone())
        async for response in self._stream(request, _single(whole), completion, started):
            yield response

    async def _generate(
        self, request: Admitted, context: grpc.aio.ServicerContext, started: float
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        store = request.cache_mode != router_pb2.CACHE_MODE_BYPASS
        digest = request_digest(request.tenant, request.tier, request.turns, request.sampling)
        key = f"{digest}:{request.max_tokens}:{store}"
        flight, leader = self._flights.join(key, lambda: self._run_generation(request, self._remaining(context), store))
        if not leader:
            COALESCED.inc()
        completion = router_pb2.Completion(
            served_by=types_pb2.SERVED_BY_GENERATED, model=request.tier, coalesced=not leader
        )
        try:
            async for response in self._stream(request, flight.listen(), completion, started):
                yield response
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code not in _PASS_THROUGH:
                log.error("generation failed", extra={"code": code.name, "details": error.details()})
                await context.abort(grpc.StatusCode.INTERNAL, "generation failed")
            if code == grpc.StatusCode.UNAVAILABLE:
                await context.abort(code, "generation is unavailable right now; retry shortly")
            await context.abort(code, error.details() or code.name)

    async def _run_generation(
        self, request: Admitted, budget_seconds: float, store: bool
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        """The flight's body: one generation stream, then the write-through of a normal finish."""
        call = self._generator.Generate(
            generation_pb2.GenerationRequest(
                model=request.tier,
                messages=_messages(request),
                max_tokens=request.max_tokens,
                sampling=_sampling(request),
            ),
            timeout=budget_seconds,
        )
        started = time.perf_counter()
        chunks: list[str] = []
        try:
            async for chunk in call:
                if not chunks and chunk.text:
                    HOP_DURATION.labels("generation_first_chunk").observe(time.perf_counter() - started)
                if chunk.text:
                    chunks.append(chunk.text)
                yield chunk
                if chunk.HasField("done"):
                    if store and chunk.done.finish_reason == types_pb2.FINISH_REASON_STOP:
                        self._spawn(self._store(request, chunks, chunk.done))
                    else:
                        STORES.labels("skipped").inc()
                    return
        finally:
            call.cancel()  # a no-op after the last chunk; cancels the generation otherwise

    async def _store(self, request: Admitted, chunks: list[str], done: generation_pb2.GenerationDone) -> None:
        store = cache_pb2.StoreRequest(
            query=self._query(request),
            answer=cache_pb2.CachedAnswer(
                chunks=chunks,
                prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens,
                finish_reason=done.finish_reason,
            ),
        )
        with HOP_DURATION.labels("cache_store").time():
            try:
                await self._cache.Store(store, timeout=self._settings.default_deadline_seconds)
                STORES.labels("stored").inc()
            except grpc.aio.AioRpcError as error:
                STORES.labels("failed").inc()
                log.warning("write-through failed", extra={"code": error.code().name, "details": error.details()})

    async def _stream(
        self,
        request: Admitted,
        chunks: AsyncIterator[generation_pb2.GenerationChunk],
        completion: router_pb2.Completion,
        started: float,
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        """Forwards chunks as they come, rechunked as asked; the last message carries ``completion``."""
        rechunker = Rechunker(request.chunking)
        index = 0
        first_at: float | None = None
        tail = ""
        async for chunk in chunks:
            final = chunk.HasField("done")
            pieces, tail = rechunker.last(chunk.text) if final else (rechunker.feed(chunk.text), "")
            for piece in pieces:
                if first_at is None:
                    first_at = time.perf_counter()
                yield router_pb2.GenerateResponse(text=piece, index=index)
                index += 1
            if final:
                completion.prompt_tokens = completion.prompt_tokens or chunk.done.prompt_tokens
                completion.completion_tokens = completion.completion_tokens or chunk.done.completion_tokens
                completion.finish_reason = completion.finish_reason or chunk.done.finish_reason
                break
        now = time.perf_counter()
        first_at = first_at if first_at is not None else now
        completion.time_to_first_chunk_seconds = first_at - started
        completion.total_seconds = now - started
        label = SERVED_BY[completion.served_by]
        FIRST_CHUNK.labels(label).observe(completion.time_to_first_chunk_seconds)
        REQUEST_DURATION.labels(label).observe(completion.total_seconds)
        TOKENS.labels(request.tier, "prompt").inc(completion.prompt_tokens)
        TOKENS.labels(request.tier, "completion").inc(completion.completion_tokens)
        yield router_pb2.GenerateResponse(text=tail, index=index, done=completion)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=self._settings.server.shutdown_grace_seconds)
        await self._cache_channel.close()
        await self._generation_channel.close()


async def _single(chunk: generation_pb2.GenerationChunk) -> AsyncIterator[generation_pb2.GenerationChunk]:
    yield chunk


def definition(settings: RouterSettings) -> ServiceDefinition:
    service = RouterService(settings)
    return ServiceDefinition(
        names=[router_pb2.DESCRIPTOR.services_by_name["Router"].full_name],
        register=lambda server: router_pb2_grpc.add_RouterServicer_to_server(service, server),
        close=service.close,
    )
