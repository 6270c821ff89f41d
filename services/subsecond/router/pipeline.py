"""The request path: a static route's answer, a cached one, or a generation, in that order of preference.

A static route that matches answers without the model (a skeleton's free parts come back through
this same path, static routes left out). Otherwise the cache is looked up unless the request's
policy says not to; a hit is replayed. On a miss the tier is chosen (for "auto", with the
embedding the lookup returned), the request is fitted to the tier (``max_tokens``, chat history)
and generated. Every downstream call gets the caller's remaining deadline.

A miss need not wait for the whole lookup (``SPECULATE``): once the exact tier (or the near cache)
has missed, the generation starts while the semantic tier is searched (embedding, vector search,
guard: about 10-20 ms here). No chunk goes out before the semantic tier has answered: on a semantic
hit the generation is cancelled (its flight, and so its call to the generation service and Triton's
request, end when its last listener leaves) and the hit is served; on a miss the generation already
under way is the answer. ``spare`` speculates only while fewer than ``SPECULATE_SHARE`` of
``MAX_GENERATIONS`` run (a cancelled one counted until its prefill would have ended:
``Generation.wasted``), so that a router near its limit does not spend slots on prefills a hit
would waste. ``auto`` speculates when its tier is chosen without the embedding (the task, the
lengths, or no centroids); when the centroid rule would decide, it waits for the lookup as before.

CPU work on the request's text (matching the static routes, answering one, trimming a history)
runs on a worker thread once the text is large enough to hold the event loop, so that a hostile
request never delays a health check or an exact hit; below the thresholds it runs inline, where it
costs less than the hop to a thread (about 0.3 ms here, measured with the matching and trimming
costs in the router's README).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TypeVar

from subsecond.router import static_routes
from subsecond.router.admission import AUTO, Admitted
from subsecond.router.answers import Answer, Piece
from subsecond.router.cache_client import CacheClient, PromptEmbedding, replay
from subsecond.router.context import Deadline
from subsecond.router.generating import Generation
from subsecond.router.metrics import SPECULATIVE, SPECULATIVE_WASTED_TOKENS
from subsecond.router.settings import RouterSettings
from subsecond.router.sizing import (
    Fitted,
    Signals,
    TierChoice,
    choose_tier,
    estimate_tokens,
    fit_to_tier,
    fixed_prompt_tokens,
    too_long,
)
from subsecond.router.static_answers import static_answer
from subsecond.router.static_routes import Found, Rule
from subsecond.v1 import router_pb2

# Inline below these, on a worker thread above. The worst text for an extractor (an email every
# seven characters) costs about 2 us a character, so 1,000 characters stay under 2 ms; trimming
# costs about 1.4 us a turn.
OFF_LOOP_CHARS = 1_000
OFF_LOOP_TURNS = 64

T = TypeVar("T")
Matched = tuple[Rule, Found | None]


async def _off_loop_if(large: bool, work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work) if large else work()


class Answerer:
    def __init__(self, settings: RouterSettings, cache: CacheClient, generation: Generation) -> None:
        self._settings = settings
        self._cache = cache
        self._generation = generation

    def answer(self, request: Admitted, deadline: Deadline, *, routes: bool = True) -> Answer:
        """The answer to ``request``; ``routes`` off skips the static routes (for a skeleton's free parts).
        Not a generator itself: a text matched inline that no route matches gets the cache-or-generate
        answer as it is, without a generator between it and the client that only passes its pieces on
        (each such costs a one-message stream about 1.5 us here)."""
        rules = self._settings.static_routes if routes else ()
        if rules and len(request.last_user_text) > OFF_LOOP_CHARS:
            return self._matched_off_loop(request, deadline, rules)
        matched = static_routes.match(rules, request.last_user_text, request.task) if rules else None
        if matched is None:
            return self._cached_or_generated(request, deadline)
        return self._static(request, deadline, matched, large=False)

    async def _matched_off_loop(self, request: Admitted, deadline: Deadline, rules: Sequence[Rule]) -> Answer:
        """The answer to a text large enough that the routes are matched on a worker thread."""
        matched = await asyncio.to_thread(static_routes.match, rules, request.last_user_text, request.task)
        if matched is None:
            source = self._cached_or_generated(request, deadline)
        else:
            source = self._static(request, deadline, matched, large=True)
        async for piece in source:
            yield piece

    async def _static(self, request: Admitted, deadline: Deadline, matched: Matched, *, large: bool) -> Answer:
        rule, found = matched
        parts = await _off_loop_if(large, lambda: static_routes.answer(rule, found, request.last_user_text))
        async for piece in static_answer(
            request, rule.name, parts, lambda part: self.answer(part, deadline, routes=False)
        ):
            yield piece

    async def _cached_or_generated(self, request: Admitted, deadline: Deadline) -> Answer:
        self._refuse_unfittable(request)
        if request.cache_mode != router_pb2.CACHE_MODE_USE:
            answer = self._generated(request, self._tier(request, ()), deadline, bypassed=False)
        elif (choice := self._speculative_tier(request)) is not None:
            answer = self._speculated(request, choice, deadline)
        else:
            lookup = await self._cache.lookup(request, deadline)
            if lookup is not None and lookup.hit:
                answer = replay(request, lookup)
            else:
                vector = lookup.embedding if lookup is not None else ()
                # A miss the cache could not vouch for (down, or part of it down): counted against the bypass budget.
                bypassed = lookup is None or bool(lookup.bypassed)
                choice = self._tier(request, vector)
                answer = self._generated(request, choice, deadline, bypassed=bypassed, vector=vector)
        async for piece in answer:
            yield piece

    async def _speculated(self, request: Admitted, choice: TierChoice, deadline: Deadline) -> Answer:
        """The exact tier, then the generation and the semantic tier side by side (module docstring)."""
        exact = await self._cache.lookup(request, deadline, semantic=False)
        if exact is not None and exact.hit:
            answer = replay(request, exact)
        elif exact is None or not _embedded_by_cache(request):  # no semantic tier to wait for
            answer = self._generated(request, choice, deadline, bypassed=exact is None)
        else:
            answer = self._racing_the_semantic_tier(request, choice, deadline)
        async for piece in answer:
            yield piece

    async def _racing_the_semantic_tier(self, request: Admitted, choice: TierChoice, deadline: Deadline) -> Answer:
        fitted = await self._fit(request, choice)
        embedding = PromptEmbedding()
        generated = self._generation.answer(request, choice, fitted, deadline, bypassed=False, embedding=embedding)
        # Stepping the answer once starts it (the flight and its call to the generation service) and
        # holds its first piece, or its refusal, until the semantic tier has answered.
        first = asyncio.ensure_future(anext(generated))
        served = False
        try:
            semantic = await self._cache.lookup_semantic(request, deadline)
            if semantic is not None and semantic.hit:
                SPECULATIVE.labels("cancelled").inc()
                SPECULATIVE_WASTED_TOKENS.inc(fitted.prompt_tokens)
                self._generation.wasted(choice.tier)
                answer = replay(request, semantic)
            else:
                SPECULATIVE.labels("served").inc()
                embedding.found(semantic.embedding if semantic is not None else ())
                served = True
                answer = _after(first, generated)
        finally:
            embedding.found(())  # however this ends, a write-through already waiting goes on without it
            if not served:  # a hit, a failed lookup or a cancelled call: the generation ends here
                await _abandon(first, generated)
        async for piece in answer:
            yield piece

    def _speculative_tier(self, request: Admitted) -> TierChoice | None:
        """The tier a miss of ``request`` may start generating on before the semantic tier has
        answered, or None when it must wait for the whole lookup (SPECULATE)."""
        settings = self._settings
        if settings.speculate == "off":
            return None
        if settings.speculate == "spare" and not self._generation.has_spare(settings.speculate_share):
            return None
        choice = self._tier(request, ())
        # "short" is the rule after the centroids': with the embedding, they might choose otherwise.
        if choice.reason == "short" and len(settings.auto.centroids) >= 2 and _embedded_by_cache(request):
            return None
        return choice

    async def _generated(
        self, request: Admitted, choice: TierChoice, deadline: Deadline, *, bypassed: bool, vector: Sequence[float] = ()
    ) -> Answer:
        """A generation once the lookup is over; ``vector``: the prompt's embedding, if it computed one."""
        fitted = await self._fit(request, choice)
        embedding = PromptEmbedding(vector)
        async for piece in self._generation.answer(
            request, choice, fitted, deadline, bypassed=bypassed, embedding=embedding
        ):
            yield piece

    async def _fit(self, request: Admitted, choice: TierChoice) -> Fitted:
        limits = self._settings.tier_limits[choice.tier]
        fitted = await _off_loop_if(
            len(request.turns) > OFF_LOOP_TURNS, lambda: fit_to_tier(request.turns, request.max_tokens, limits)
        )
        if fitted.prompt_tokens > limits.prompt_tokens:  # "auto" chose a tier narrower than the first check
            raise too_long(fitted.prompt_tokens, choice.tier, limits.prompt_tokens)
        return fitted

    def _refuse_unfittable(self, request: Admitted) -> None:
        """Refuses, before the lookup, a prompt that no trimming fits into its tier's budget (for "auto",
        the wider of its two tiers'; the tier it chooses is checked again once fitted). Only what goes to
        a model is held to a budget: a static route reads any prompt admission let in."""
        tiers = (self._settings.auto.small, self._settings.auto.large) if request.tier == AUTO else (request.tier,)
        widest = max(tiers, key=lambda tier: self._settings.tier_limits[tier].prompt_tokens)
        budget = self._settings.tier_limits[widest].prompt_tokens
        tokens = fixed_prompt_tokens(request.turns)
        if tokens > budget:
            raise too_long(tokens, widest, budget)

    def _tier(self, request: Admitted, embedding: Sequence[float]) -> TierChoice:
        if request.tier != AUTO:
            return TierChoice(request.tier, request.tier_reason)
        signals = Signals(
            task=request.task,
            max_tokens=request.max_tokens,
            prompt_tokens=sum(estimate_tokens(turn.content) for turn in request.turns),
            embedding=embedding,
        )
        return choose_tier(signals, self._settings.auto)


def _embedded_by_cache(request: Admitted) -> bool:
    """Whether the cache's semantic tier searches ``request``: a single user turn after any system
    messages (the cache's own rule, ``Query.semantic_text``; multi-turn conversations are exact-only)."""
    *context, last = request.turns
    return last.role == "user" and all(turn.role == "system" for turn in context)


async def _after(first: asyncio.Future[Piece], rest: Answer) -> Answer:
    """An answer whose first piece was already asked for."""
    yield await first
    async for piece in rest:
        yield piece


async def _abandon(first: asyncio.Future[Piece], answer: AsyncGenerator[Piece, None]) -> None:
    """Ends an answer that was started and is not wanted: its generation stops (the flight is
    cancelled when its last listener leaves) and its slot is given back; a refusal it met is dropped."""
    first.cancel()
    await asyncio.wait({first})
    if not first.cancelled():
        first.exception()  # retrieved: a refused or failed generation nobody waits for is not an error
    await answer.aclose()
