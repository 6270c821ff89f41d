"""The request path: a static route's answer, a cached one, or a generation, in that order of preference.

A static route that matches answers without the model (a skeleton's free parts come back through
this same path, static routes left out). Otherwise the cache is looked up unless the request's
policy says not to; a hit is replayed. On a miss the tier is chosen (for "auto", with the
embedding the lookup returned), the request is fitted to the tier (``max_tokens``, chat history)
and generated. Every downstream call gets the caller's remaining deadline.

CPU work on the request's text (matching the static routes, answering one, trimming a history)
runs on a worker thread once the text is large enough to hold the event loop, so that a hostile
request never delays a health check or an exact hit; below the thresholds it runs inline, where it
costs less than the hop to a thread (about 0.3 ms here, measured with the matching and trimming
costs in the router's README).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from subsecond.router import static_routes
from subsecond.router.admission import AUTO, Admitted
from subsecond.router.answers import Answer
from subsecond.router.cache_client import CacheClient, replay
from subsecond.router.context import Deadline
from subsecond.router.generating import Generation
from subsecond.router.settings import RouterSettings
from subsecond.router.sizing import (
    Signals,
    TierChoice,
    choose_tier,
    estimate_tokens,
    fit_to_tier,
    fixed_prompt_tokens,
    too_long,
)
from subsecond.router.static_answers import static_answer
from subsecond.v1 import cache_pb2, router_pb2

# Inline below these, on a worker thread above. The worst text for an extractor (an email every
# seven characters) costs about 2 us a character, so 1,000 characters stay under 2 ms; trimming
# costs about 1.4 us a turn.
OFF_LOOP_CHARS = 1_000
OFF_LOOP_TURNS = 64

T = TypeVar("T")


async def _off_loop_if(large: bool, work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work) if large else work()


class Answerer:
    def __init__(self, settings: RouterSettings, cache: CacheClient, generation: Generation) -> None:
        self._settings = settings
        self._cache = cache
        self._generation = generation

    async def answer(self, request: Admitted, deadline: Deadline, *, routes: bool = True) -> Answer:
        """The answer to ``request``; ``routes`` off skips the static routes (for a skeleton's free parts)."""
        rules = self._settings.static_routes if routes else ()
        text = request.last_user_text
        large = len(text) > OFF_LOOP_CHARS
        matched = await _off_loop_if(large, lambda: static_routes.match(rules, text, request.task)) if rules else None
        if matched is not None:
            rule, found = matched
            parts = await _off_loop_if(large, lambda: static_routes.answer(rule, found, text))
            source = static_answer(request, rule.name, parts, lambda part: self.answer(part, deadline, routes=False))
        else:
            source = self._cached_or_generated(request, deadline)
        async for piece in source:
            yield piece

    async def _cached_or_generated(self, request: Admitted, deadline: Deadline) -> Answer:
        self._refuse_unfittable(request)
        lookup = None
        if request.cache_mode == router_pb2.CACHE_MODE_USE:
            lookup = await self._cache.lookup(request, deadline)
        if lookup is not None and lookup.hit:
            answer = replay(request, lookup)
        else:
            choice = self._tier(request, lookup)
            limits = self._settings.tier_limits[choice.tier]
            fitted = await _off_loop_if(
                len(request.turns) > OFF_LOOP_TURNS, lambda: fit_to_tier(request.turns, request.max_tokens, limits)
            )
            if fitted.prompt_tokens > limits.prompt_tokens:  # "auto" chose a tier narrower than the first check
                raise too_long(fitted.prompt_tokens, choice.tier, limits.prompt_tokens)
            # A miss the cache could not vouch for (down, or part of it down): counted against the bypass budget.
            bypassed = request.cache_mode == router_pb2.CACHE_MODE_USE and (lookup is None or bool(lookup.bypassed))
            answer = self._generation.answer(request, choice, fitted, deadline, bypassed=bypassed)
        async for piece in answer:
            yield piece

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

    def _tier(self, request: Admitted, lookup: cache_pb2.LookupResponse | None) -> TierChoice:
        if request.tier != AUTO:
            return TierChoice(request.tier, request.tier_reason)
        signals = Signals(
            task=request.task,
            max_tokens=request.max_tokens,
            prompt_tokens=sum(estimate_tokens(turn.content) for turn in request.turns),
            embedding=lookup.embedding if lookup is not None else (),
        )
        return choose_tier(signals, self._settings.auto)
