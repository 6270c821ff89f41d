"""The Router servicer: admit, answer by a static route, from the cache or by generating; stream, write through.

Each request is admitted (validated, tenant resolved, tenant limit applied). A static route that
matches answers it without the model. Otherwise it is looked up in the cache unless its policy
says otherwise; a hit is replayed as the same stream a generation gives (at once, or paced like
the model was). On a miss the tier is chosen (for "auto"), the request is fitted to the tier
(max_tokens, chat history) and joins (or starts) the flight for identical requests; each
generated chunk is forwarded the moment it arrives. A generation that finished normally is
stored after its last chunk went out; a cancelled, failed or truncated one never is. Every
downstream call carries the caller's remaining deadline. Workflows run their steps through
this same path.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter as TallyCounter
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from subsecond.kit.channels import open_channel
from subsecond.kit.metrics import FAST_SECONDS, REQUEST_SECONDS
from subsecond.kit.prompt_identity import Turn, request_digest
from subsecond.kit.server import ServiceDefinition
from subsecond.router import static_routes
from subsecond.router.admission import AUTO, Admitted, Rejected, admit, resolve_tenant
from subsecond.router.chunking import SentenceChunker
from subsecond.router.coalescing import Coalescer
from subsecond.router.settings import RouterSettings
from subsecond.router.sizing import Fitted, Signals, TierChoice, choose_tier, estimate_tokens, fit_to_tier
from subsecond.router.workflow import Step, StepFailed, WorkflowError, plan_workflow, run_workflow
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
    types_pb2.SERVED_BY_STATIC: "static",
}
REQUEST_DURATION = Histogram(
    "subsecond_router_request_duration_seconds",
    "Whole Generate calls (and workflow steps).",
    ["served_by"],
    buckets=REQUEST_SECONDS,
)
FIRST_CHUNK = Histogram(
    "subsecond_router_time_to_first_chunk_seconds",
    "From a Generate call (or workflow step) starting to its first chunk leaving.",
    ["served_by"],
    buckets=REQUEST_SECONDS,
)
HOP_DURATION = Histogram(
    "subsecond_router_hop_duration_seconds",
    "Router's downstream hops: cache_lookup, generation_first_chunk, cache_store.",
    ["hop"],
    buckets=FAST_SECONDS,
)
WORKFLOW_DURATION = Histogram(
    "subsecond_router_workflow_duration_seconds", "Whole RunWorkflow calls that finished.", buckets=REQUEST_SECONDS
)
REQUESTS = Counter("subsecond_router_requests_total", "Generate calls by final status code.", ["code"])
WORKFLOWS = Counter("subsecond_router_workflows_total", "RunWorkflow calls by final status code.", ["code"])
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
TOKENS_SAVED = Counter(
    "subsecond_router_tokens_saved_total",
    "Tokens generation was not asked for: history trimmed (prompt) or max_tokens capped (completion).",
    ["model", "kind"],
)
TIER_CHOICES = Counter(
    "subsecond_router_tier_choices_total",
    "Tiers that generated an answer, and the rule that chose them.",
    ["model", "reason"],
)
STATIC_ANSWERS = Counter("subsecond_router_static_answers_total", "Requests answered by a static route.", ["route"])
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


class Failure(Exception):
    """A request that cannot be answered, with the status the client gets."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _failure(error: grpc.aio.AioRpcError) -> Failure:
    """What the client is told when the generation service fails."""
    code = error.code()
    if code not in _PASS_THROUGH:
        log.error("generation failed", extra={"code": code.name, "details": error.details()})
        return Failure(grpc.StatusCode.INTERNAL, "generation failed")
    if code == grpc.StatusCode.UNAVAILABLE:
        return Failure(code, "generation is unavailable right now; retry shortly")
    return Failure(code, error.details() or code.name)


def _messages(turns: tuple[Turn, ...]) -> list[types_pb2.ChatMessage]:
    return [types_pb2.ChatMessage(role=turn.role, content=turn.content) for turn in turns]


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


@dataclass
class Answer:
    """An answer about to be streamed: its chunks (the last one carries ``done``) and what the
    client's final message will say about it."""

    chunks: AsyncIterator[generation_pb2.GenerationChunk]
    completion: router_pb2.Completion


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

    # -- RPCs -----------------------------------------------------------------------------------

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        IN_FLIGHT.inc()
        try:
            try:
                admitted = admit(request, self._metadata(context), self._settings)
                with self._tenant_stream(admitted.tenant):
                    async for response in self._serve(admitted, self._deadline(context), started):
                        yield response
            except Rejected as rejected:
                code = grpc.StatusCode.UNAUTHENTICATED if rejected.unauthenticated else grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(rejected))
            except Failure as failure:
                code = failure.code
                await context.abort(code, str(failure))
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            IN_FLIGHT.dec()
            REQUESTS.labels(code.name).inc()

    async def RunWorkflow(
        self, request: router_pb2.WorkflowRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.WorkflowEvent]:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            try:
                metadata = self._metadata(context)
                plan = plan_workflow(request, max_steps=self._settings.workflow_max_steps)
                steps = {step.id: self._admit_step(step, request, metadata) for step in plan.steps}
                deadline = self._deadline(context)

                def run_step(step: Step, prompt: str) -> AsyncIterator[router_pb2.GenerateResponse]:
                    if len(prompt) > self._settings.max_prompt_chars:
                        raise Failure(
                            grpc.StatusCode.INVALID_ARGUMENT,
                            f"rendered prompt: {len(prompt)} characters, at most {self._settings.max_prompt_chars}",
                        )
                    admitted = replace(steps[step.id], turns=(Turn("user", prompt),))
                    return self._serve(admitted, deadline, time.perf_counter())

                with self._tenant_stream(resolve_tenant(metadata, self._settings)):
                    async for event in run_workflow(plan, run_step):
                        yield event
                WORKFLOW_DURATION.observe(time.perf_counter() - started)
            except Rejected as rejected:
                code = grpc.StatusCode.UNAUTHENTICATED if rejected.unauthenticated else grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(rejected))
            except WorkflowError as error:
                code = grpc.StatusCode.INVALID_ARGUMENT
                await context.abort(code, str(error))
            except Failure as failure:
                code = failure.code
                await context.abort(code, str(failure))
            except StepFailed as failed:
                code = failed.error.code if isinstance(failed.error, Failure) else grpc.StatusCode.INTERNAL
                if code == grpc.StatusCode.INTERNAL:
                    log.error("workflow step failed", exc_info=failed.error, extra={"step": failed.step})
                await context.abort(code, f"step {failed.step} failed: {failed.error}; the other steps were cancelled")
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            WORKFLOWS.labels(code.name).inc()

    async def ListStaticRoutes(
        self, request: router_pb2.ListStaticRoutesRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.ListStaticRoutesResponse:
        return router_pb2.ListStaticRoutesResponse(
            routes=[
                router_pb2.StaticRoute(
                    name=rule.name,
                    regex=rule.regex.pattern if rule.regex else "",
                    task=rule.task,
                    answer=rule.answer_label,
                )
                for rule in self._settings.static_routes
            ]
        )

    # -- admission helpers ----------------------------------------------------------------------

    @staticmethod
    def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
        return {key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)}

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        return time.perf_counter() + (self._settings.default_deadline_seconds if remaining is None else remaining)

    @staticmethod
    def _remaining(deadline: float) -> float:
        return max(deadline - time.perf_counter(), 0.001)

    @contextmanager
    def _tenant_stream(self, tenant: str) -> Iterator[None]:
        if self._tenant_streams[tenant] >= self._settings.tenant_max_streams:
            raise Failure(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"tenant {tenant} has {self._settings.tenant_max_streams} streams open; retry later",
            )
        self._tenant_streams[tenant] += 1
        try:
            yield
        finally:
            self._tenant_streams[tenant] -= 1

    def _admit_step(self, step: Step, workflow: router_pb2.WorkflowRequest, metadata: Mapping[str, str]) -> Admitted:
        spec = step.spec
        try:
            return admit(
                router_pb2.GenerateRequest(
                    prompt=spec.prompt,
                    model=spec.model,
                    max_tokens=spec.max_tokens,
                    sampling=spec.sampling,
                    cache=spec.cache,
                    chunking=workflow.chunking,
                    task=spec.task,
                ),
                metadata,
                self._settings,
            )
        except Rejected as rejected:
            if rejected.unauthenticated:
                raise
            raise WorkflowError(f"step {step.id}: {rejected}") from None

    # -- the request path -----------------------------------------------------------------------

    async def _serve(
        self, request: Admitted, deadline: float, started: float
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        answer = await self._answer(request, deadline)
        async for response in self._stream(request, answer, started):
            yield response

    async def _answer(self, request: Admitted, deadline: float, *, routes: bool = True) -> Answer:
        """A static route's answer (unless ``routes`` is off), a cached one, or a generation, in that
        order of preference."""
        rules = self._settings.static_routes if routes else ()
        matched = static_routes.match(rules, request.last_user_text, request.task)
        if matched is not None:
            return self._static(request, *matched, deadline)
        lookup = None
        if request.cache_mode == router_pb2.CACHE_MODE_USE:
            lookup = await self._lookup(request, deadline)
            if lookup is not None and lookup.hit:
                return self._replay(request, lookup)
        if request.tier == AUTO:
            choice = choose_tier(
                Signals(
                    task=request.task,
                    max_tokens=request.max_tokens,
                    prompt_tokens=sum(estimate_tokens(turn.content) for turn in request.turns),
                    embedding=lookup.embedding if lookup is not None else (),
                ),
                self._settings.auto,
            )
        else:
            choice = TierChoice(request.tier, request.tier_reason)
        fitted = fit_to_tier(request.turns, request.max_tokens, self._settings.tier_limits[choice.tier])
        return self._generate(request, choice, fitted, deadline)

    def _static(
        self, request: Admitted, rule: static_routes.Rule, found: re.Match[str] | None, deadline: float
    ) -> Answer:
        STATIC_ANSWERS.labels(rule.name).inc()
        parts = static_routes.answer(rule, found, request.last_user_text)
        completion = router_pb2.Completion(
            served_by=types_pb2.SERVED_BY_STATIC,
            static_route=rule.name,
            finish_reason=types_pb2.FINISH_REASON_STOP,
        )

        async def chunks() -> AsyncIterator[generation_pb2.GenerationChunk]:
            for part in parts:
                if not part.generate:
                    yield generation_pb2.GenerationChunk(text=part.text)
                    continue
                # A skeleton's free part: the only text the model writes, through the cache-or-generate path.
                hole = await self._answer(
                    replace(request, turns=(Turn("user", part.text),), task=""), deadline, routes=False
                )
                completion.model = hole.completion.model
                async for chunk in hole.chunks:
                    if chunk.HasField("done"):
                        completion.prompt_tokens += chunk.done.prompt_tokens or hole.completion.prompt_tokens
                        completion.completion_tokens += (
                            chunk.done.completion_tokens or hole.completion.completion_tokens
                        )
                        if (
                            chunk.done.finish_reason or hole.completion.finish_reason
                        ) == types_pb2.FINISH_REASON_LENGTH:
                            completion.finish_reason = types_pb2.FINISH_REASON_LENGTH
                    yield generation_pb2.GenerationChunk(text=chunk.text)
            yield generation_pb2.GenerationChunk(done=generation_pb2.GenerationDone())

        return Answer(chunks(), completion)

    async def _lookup(self, request: Admitted, deadline: float) -> cache_pb2.LookupResponse | None:
        lookup = cache_pb2.LookupRequest(
            query=self._query(request, request.turns),
            max_tokens=self._lookup_max_tokens(request),
            max_age_seconds=request.max_age_seconds,
            semantic=True,
            want_embedding=request.tier == AUTO,
        )
        with HOP_DURATION.labels("cache_lookup").time():
            try:
                response: cache_pb2.LookupResponse = await self._cache.Lookup(
                    lookup, timeout=min(self._remaining(deadline), self._settings.cache_timeout_seconds)
                )
            except grpc.aio.AioRpcError as error:
                CACHE_BYPASS.labels("cache_service").inc()
                log.warning("cache lookup failed, generating", extra={"code": error.code().name})
                return None
        if response.bypassed:
            CACHE_BYPASS.labels(response.bypassed).inc()
        return response

    def _lookup_max_tokens(self, request: Admitted) -> int:
        """The longest cached answer the caller would have let run: what its tier would be asked for
        (for "auto", only an explicit max_tokens limits it)."""
        if request.tier == AUTO:
            return request.max_tokens
        limits = self._settings.tier_limits[request.tier]
        return min(request.max_tokens or limits.default_max_tokens, limits.max_tokens)

    def _query(self, request: Admitted, turns: tuple[Turn, ...]) -> cache_pb2.CacheQuery:
        return cache_pb2.CacheQuery(
            tenant=request.tenant, model=request.tier, messages=_messages(turns), sampling=_sampling(request)
        )

    def _replay(self, request: Admitted, hit: cache_pb2.LookupResponse) -> Answer:
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
            model=hit.answer.model or request.tier,
            tier_reason="cached",
        )
        paced = request.replay == router_pb2.REPLAY_PACED and len(hit.answer.chunk_offsets_seconds) == len(
            hit.answer.chunks
        )
        return Answer(_paced(hit.answer) if paced else _at_once(hit.answer), completion)

    def _generate(self, request: Admitted, choice: TierChoice, fitted: Fitted, deadline: float) -> Answer:
        store = request.cache_mode != router_pb2.CACHE_MODE_BYPASS
        digest = request_digest(request.tenant, request.tier, request.turns, request.sampling)
        key = f"{digest}:{choice.tier}:{fitted.max_tokens}:{store}"
        flight, leader = self._flights.join(
            key, lambda: self._run_generation(request, choice.tier, fitted, self._remaining(deadline), store)
        )
        if leader:
            TIER_CHOICES.labels(choice.tier, choice.reason).inc()
            TOKENS_SAVED.labels(choice.tier, "prompt").inc(fitted.trimmed_prompt_tokens)
            TOKENS_SAVED.labels(choice.tier, "completion").inc(fitted.capped_max_tokens)
        else:
            COALESCED.inc()
        completion = router_pb2.Completion(
            served_by=types_pb2.SERVED_BY_GENERATED,
            model=choice.tier,
            tier_reason=choice.reason,
            coalesced=not leader,
            trimmed_prompt_tokens=fitted.trimmed_prompt_tokens,
        )
        return Answer(_failures_mapped(flight.listen()), completion)

    async def _run_generation(
        self, request: Admitted, tier: str, fitted: Fitted, budget_seconds: float, store: bool
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        """The flight's body: one generation stream, then the write-through of a normal finish."""
        call = self._generator.Generate(
            generation_pb2.GenerationRequest(
                model=tier,
                messages=_messages(fitted.turns),
                max_tokens=fitted.max_tokens,
                sampling=_sampling(request),
            ),
            timeout=budget_seconds,
        )
        started = first = time.perf_counter()
        chunks: list[str] = []
        offsets: list[float] = []
        try:
            async for chunk in call:
                if chunk.text:
                    now = time.perf_counter()
                    if not chunks:
                        HOP_DURATION.labels("generation_first_chunk").observe(now - started)
                        first = now
                    chunks.append(chunk.text)
                    offsets.append(now - first)
                yield chunk
                if chunk.HasField("done"):
                    if store and chunk.done.finish_reason == types_pb2.FINISH_REASON_STOP:
                        answer = cache_pb2.CachedAnswer(
                            chunks=chunks,
                            prompt_tokens=chunk.done.prompt_tokens,
                            completion_tokens=chunk.done.completion_tokens,
                            finish_reason=chunk.done.finish_reason,
                            chunk_offsets_seconds=offsets,
                            model=tier,
                        )
                        self._spawn(self._store(request, answer))
                    else:
                        STORES.labels("skipped").inc()
                    return
        finally:
            call.cancel()  # a no-op after the last chunk; cancels the generation otherwise

    async def _store(self, request: Admitted, answer: cache_pb2.CachedAnswer) -> None:
        store = cache_pb2.StoreRequest(query=self._query(request, request.turns), answer=answer)
        with HOP_DURATION.labels("cache_store").time():
            try:
                await self._cache.Store(store, timeout=self._settings.default_deadline_seconds)
                STORES.labels("stored").inc()
            except grpc.aio.AioRpcError as error:
                STORES.labels("failed").inc()
                log.warning("write-through failed", extra={"code": error.code().name, "details": error.details()})

    async def _stream(
        self, request: Admitted, answer: Answer, started: float
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        """Forwards chunks as they come, rechunked as asked; the last message carries the completion."""
        completion = answer.completion
        rechunker = Rechunker(request.chunking)
        index = 0
        first_at: float | None = None
        tail = ""
        async for chunk in answer.chunks:
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
        if completion.model:
            TOKENS.labels(completion.model, "prompt").inc(completion.prompt_tokens)
            TOKENS.labels(completion.model, "completion").inc(completion.completion_tokens)
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


async def _failures_mapped(
    chunks: AsyncIterator[generation_pb2.GenerationChunk],
) -> AsyncIterator[generation_pb2.GenerationChunk]:
    try:
        async for chunk in chunks:
            yield chunk
    except grpc.aio.AioRpcError as error:
        raise _failure(error) from error


async def _at_once(answer: cache_pb2.CachedAnswer) -> AsyncIterator[generation_pb2.GenerationChunk]:
    """The whole cached answer in the final chunk (or as its sentences, once rechunked)."""
    yield generation_pb2.GenerationChunk(text="".join(answer.chunks), done=generation_pb2.GenerationDone())


async def _paced(answer: cache_pb2.CachedAnswer) -> AsyncIterator[generation_pb2.GenerationChunk]:
    """The cached chunks with the gaps the model left between them; the first goes out at once."""
    began = time.perf_counter()
    for text, offset in zip(answer.chunks, answer.chunk_offsets_seconds, strict=True):
        wait = offset - (time.perf_counter() - began)
        if wait > 0:
            await asyncio.sleep(wait)
        yield generation_pb2.GenerationChunk(text=text)
    yield generation_pb2.GenerationChunk(done=generation_pb2.GenerationDone())


def definition(settings: RouterSettings) -> ServiceDefinition:
    service = RouterService(settings)
    return ServiceDefinition(
        names=[router_pb2.DESCRIPTOR.services_by_name["Router"].full_name],
        register=lambda server: router_pb2_grpc.add_RouterServicer_to_server(service, server),
        close=service.close,
    )
