"""The request path: a static route's answer, a cached one, or a generation, in that order of preference.

A static route that matches answers without the model (a skeleton's free parts come back through
this same path, static routes left out). Otherwise the cache is looked up unless the request's
policy says not to; a hit is replayed. On a miss the tier is chosen (for "auto", with the
embedding the lookup returned), the request is fitted to the tier (``max_tokens``, chat history)
and generated. Every downstream call gets the caller's remaining deadline.
"""

from __future__ import annotations

from subsecond.router import static_routes
from subsecond.router.admission import AUTO, Admitted
from subsecond.router.answers import Answer
from subsecond.router.cache_client import CacheClient, replay
from subsecond.router.context import Deadline
from subsecond.router.generating import Generation
from subsecond.router.settings import RouterSettings
from subsecond.router.sizing import Signals, TierChoice, choose_tier, estimate_tokens, fit_to_tier
from subsecond.router.static_answers import static_answer
from subsecond.v1 import cache_pb2, router_pb2


class Answerer:
    def __init__(self, settings: RouterSettings, cache: CacheClient, generation: Generation) -> None:
        self._settings = settings
        self._cache = cache
        self._generation = generation

    def answer(self, request: Admitted, deadline: Deadline, *, routes: bool = True) -> Answer:
        """The answer to ``request``; ``routes`` off skips the static routes (for a skeleton's free parts)."""
        rules = self._settings.static_routes if routes else ()
        matched = static_routes.match(rules, request.last_user_text, request.task)
        if matched is not None:
            rule, found = matched
            return static_answer(request, rule, found, lambda part: self.answer(part, deadline, routes=False))
        return self._cached_or_generated(request, deadline)

    async def _cached_or_generated(self, request: Admitted, deadline: Deadline) -> Answer:
        lookup = None
        if request.cache_mode == router_pb2.CACHE_MODE_USE:
            lookup = await self._cache.lookup(request, deadline)
        if lookup is not None and lookup.hit:
            answer = replay(request, lookup)
        else:
            choice = self._tier(request, lookup)
            fitted = fit_to_tier(request.turns, request.max_tokens, self._settings.tier_limits[choice.tier])
            # A miss the cache could not vouch for (down, or part of it down): counted against the bypass budget.
            bypassed = request.cache_mode == router_pb2.CACHE_MODE_USE and (lookup is None or bool(lookup.bypassed))
            answer = self._generation.answer(request, choice, fitted, deadline, bypassed=bypassed)
        async for piece in answer:
            yield piece

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
