"""Generation on a cache miss: one generation stream per set of identical concurrent requests, each
chunk forwarded as it arrives, and a normal finish written through to the cache.

Requests that would get interchangeable answers (tenant, tier, normalised conversation, sampling,
the fitted ``max_tokens`` and whether the answer may be stored) join one *flight*
(``coalescing.py``); the first starts it. The flight writes through only a generation that
finished with ``FINISH_REASON_STOP``, after its last chunk went out; a cancelled, failed or
truncated one is never stored. A failed generation reaches every listener as the kit's error for
it (``from_downstream``).

Each new flight takes a slot under the limits of ``tenants.py`` (per tenant, in all, and for
generations the cache's outage caused); joining a running flight takes none. Over a limit, or
while the generation service says it is at capacity, a miss is refused at once with
RESOURCE_EXHAUSTED and a retry hint. So is a miss of a tenant over its token quota (``quotas.py``),
checked before the miss starts or joins a flight; a flight's tokens are counted against the quota
when its last chunk reports them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import grpc
from opentelemetry import trace

from subsecond.kit.errors import Internal, ResourceExhausted, from_downstream
from subsecond.kit.prompt_identity import request_digest
from subsecond.router.admission import Admitted, chat_messages
from subsecond.router.answers import Outcome, Piece
from subsecond.router.cache_client import CacheClient, PromptEmbedding
from subsecond.router.coalescing import Coalescer
from subsecond.router.context import Deadline, Tasks
from subsecond.router.metrics import (
    COALESCED,
    GENERATIONS_IN_FLIGHT,
    GENERATIONS_REFUSED,
    HOP_DURATION,
    STORES,
    TIER_CHOICES,
    TOKENS_SAVED,
)
from subsecond.router.quotas import Quotas
from subsecond.router.sizing import Fitted, TierChoice
from subsecond.router.tenants import GenerationLimits, GenerationSlots, Slot
from subsecond.v1 import cache_pb2, generation_pb2, generation_pb2_grpc, router_pb2, types_pb2

log = logging.getLogger(__name__)

# The weight of the newest time to first chunk in a tier's moving average (``Generation.wasted``).
_PREFILL_WEIGHT = 0.25


class Generation:
    def __init__(
        self,
        stub: generation_pb2_grpc.GeneratorStub,
        cache: CacheClient,
        tasks: Tasks,
        limits: GenerationLimits,
        quotas: Quotas,
    ) -> None:
        self._stub = stub
        self._quotas = quotas
        self._cache = cache
        self._tasks = tasks
        self._limits = limits
        self._running = 0
        self._slots = GenerationSlots(
            limits,
            on_refused=lambda limit: GENERATIONS_REFUSED.labels(limit).inc(),
            on_running=self._count_running,
        )
        self._flights: Coalescer[generation_pb2.GenerationChunk] = Coalescer()
        # Per tier, a moving average of the time to the first chunk: how long the backend reads a prompt.
        self._prefill_seconds: dict[str, float] = {}
        # When the prefills of cancelled speculative generations end (time.monotonic()).
        self._wasted_until: list[float] = []

    def _count_running(self, running: int) -> None:
        self._running = running
        GENERATIONS_IN_FLIGHT.set(running)

    def has_spare(self, share: float) -> bool:
        """Fewer generations run than ``share`` of the router's limit (``MAX_GENERATIONS``), counting a
        cancelled speculative one as running until its prefill would have ended (``wasted``)."""
        return self._running + self._still_wasted() < share * self._limits.total

    def wasted(self, tier: str) -> None:
        """A speculative generation of ``tier`` was cancelled (a semantic hit): the backend goes on
        reading its prompt (llama.cpp notices a cancellation only between 64-token chunks; an engine
        finishes the context phase it scheduled), so for about a first chunk's time its capacity is
        not spare although the router's slot is free."""
        self._still_wasted()
        self._wasted_until.append(time.monotonic() + self._prefill_seconds.get(tier, 0.0))

    def _still_wasted(self) -> int:
        now = time.monotonic()
        self._wasted_until = [end for end in self._wasted_until if end > now]
        return len(self._wasted_until)

    def _prefilled(self, tier: str, seconds: float) -> None:
        known = self._prefill_seconds.get(tier)
        self._prefill_seconds[tier] = seconds if known is None else known + _PREFILL_WEIGHT * (seconds - known)

    async def answer(
        self,
        request: Admitted,
        choice: TierChoice,
        fitted: Fitted,
        deadline: Deadline,
        *,
        bypassed: bool,
        embedding: PromptEmbedding,
    ) -> AsyncGenerator[Piece, None]:
        """The answer of the tier ``choice`` names to the ``fitted`` request, from a new flight or a
        running one; ``bypassed``: the cache could not be asked (for the bypass budget); ``embedding``:
        the prompt's, for the write-through, once the lookup has it. An async generator (an ``Answer``
        that can be closed): a speculative miss starts it and closes it on a semantic hit."""
        store = request.cache_mode != router_pb2.CACHE_MODE_BYPASS
        digest = request_digest(request.tenant, request.tier, request.turns, request.sampling)
        key = f"{digest}:{choice.tier}:{fitted.max_tokens}:{store}"
        await self._quotas.check_tokens(request.tenant)  # hits and static answers are never held to it

        slot: Slot | None = None
        call: grpc.aio.UnaryStreamCall | None = None

        def start() -> AsyncIterator[generation_pb2.GenerationChunk]:
            nonlocal slot, call
            slot = self._slots.take(request.tenant, bypassed=bypassed)  # refused here: no flight starts
            generate = generation_pb2.GenerationRequest(
                model=choice.tier,
                messages=chat_messages(fitted.turns),
                max_tokens=fitted.max_tokens,
                sampling=request.sampling_params(),
            )
            try:  # called here, not in the flight's task: the request leaves a turn of the loop sooner
                call = self._stub.Generate(generate, timeout=deadline.remaining())
            except BaseException:
                slot.release()
                raise
            return self._generate(call, time.perf_counter(), request, choice.tier, store, embedding)

        flight, leader = self._flights.join(key, start)
        if leader:
            assert slot is not None and call is not None
            # However the flight ends, even cancelled before it started: the slot is given back, and
            # the call cancelled (a no-op after its last chunk).
            flight.when_ended(slot.release)
            flight.when_ended(call.cancel)
            TIER_CHOICES.labels(choice.tier, choice.reason).inc()
            TOKENS_SAVED.labels(choice.tier, "prompt").inc(fitted.trimmed_prompt_tokens)
            TOKENS_SAVED.labels(choice.tier, "completion").inc(fitted.capped_max_tokens)
        else:
            COALESCED.inc()
        try:
            # Closed with this answer, not when it is collected: a speculative miss closes its answer on a
            # semantic hit, and the flight is cancelled the moment its last listener has left.
            async with aclosing(flight.listen()) as chunks:
                async for chunk in chunks:
                    if not chunk.HasField("done"):
                        yield Piece(chunk.text)
                        continue
                    yield Piece(
                        chunk.text,
                        Outcome(
                            served_by=types_pb2.SERVED_BY_GENERATED,
                            model=choice.tier,
                            finish_reason=chunk.done.finish_reason,
                            prompt_tokens=chunk.done.prompt_tokens,
                            completion_tokens=chunk.done.completion_tokens,
                            tier_reason=choice.reason,
                            coalesced=not leader,
                            trimmed_prompt_tokens=fitted.trimmed_prompt_tokens,
                        ),
                    )
        except grpc.aio.AioRpcError as error:
            failure = from_downstream(error, "generation")
            if isinstance(failure, ResourceExhausted):
                self._slots.saturated()
                failure = self._slots.refusal(failure.message)
            if isinstance(failure, Internal):
                log.error("generation failed: %s %s", error.code().name, error.details())
            raise failure from error

    async def _generate(
        self,
        call: grpc.aio.UnaryStreamCall,
        started: float,
        request: Admitted,
        tier: str,
        store: bool,
        embedding: PromptEmbedding,
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        """The flight's body: the generation stream ``call`` (made at ``started``), then the write-through
        of a normal finish."""
        first = started
        chunks: list[str] = []
        offsets: list[float] = []
        async for chunk in call:
            if chunk.text:
                now = time.perf_counter()
                if not chunks:
                    HOP_DURATION.labels("generation_first_chunk").observe(now - started)
                    self._prefilled(tier, now - started)
                    trace.get_current_span().add_event("generation first chunk")
                    first = now
                chunks.append(chunk.text)
                offsets.append(now - first)
            yield chunk
            if chunk.HasField("done"):
                usage = chunk.done.prompt_tokens + chunk.done.completion_tokens
                self._tasks.spawn(self._quotas.spend_tokens(request.tenant, usage))
                if store and chunk.done.finish_reason == types_pb2.FINISH_REASON_STOP:
                    answer = cache_pb2.CachedAnswer(
                        chunks=chunks,
                        prompt_tokens=chunk.done.prompt_tokens,
                        completion_tokens=chunk.done.completion_tokens,
                        finish_reason=chunk.done.finish_reason,
                        chunk_offsets_seconds=offsets,
                        model=tier,
                    )
                    self._tasks.spawn(self._cache.store(request, answer, embedding))
                else:
                    STORES.labels("skipped").inc()
                return
