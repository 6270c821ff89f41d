"""The near cache: the cache's recent answers kept in the router, so that they are still served
when the cache service or Redis cannot answer.

An entry is the cache's answer to one exact request, keyed by the request as it was sent (tenant,
model and revision, conversation, sampling: ``CacheClient``'s ``near_key``), filled from the cache's
hits (exact or semantic: what the cache answered *this* request) and from this router's
write-throughs. The key is not normalised as the cache's exact identity is
(``kit.prompt_identity.request_digest``: NFKC, JSON and SHA-256 cost an exact hit about 18 us, a
fifth of the router's own Python, against under a microsecond for the tuple): a request that differs
only in what normalising removes (whitespace, compatibility characters) is asked of the cache, which
answers it as the same one, and its answer is kept under its own key. A key holds its request's
text, which counts towards the entry's bytes. It is served in two ways:

- *fresh* (younger than ``fresh_seconds``): before the cache service is asked at all;
- *stale* (younger than ``stale_seconds``): only while the cache cannot answer (its breaker is open,
  the lookup failed, or Redis is down behind it), or is slow to: a request that has a stale copy
  waits at most ``wait_seconds`` for the cache (whose exact hits take a few milliseconds), then
  takes the copy while the lookup finishes in the background. A cache that stops answering thus
  costs such a request ``wait_seconds``, not the whole lookup timeout.

An invalidation through this router's admin RPC clears it; one through another router does not
reach it: an entry that was invalidated or replaced elsewhere is served at most ``fresh_seconds`` longer while the cache
answers within ``wait_seconds``, and as it was before the outage while the cache is down or slow.
Its size is bounded by entries and by bytes, the least recently used going first.
"""

from __future__ import annotations

import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from subsecond.router.metrics import NEAR_CACHE_ENTRIES, NEAR_CACHE_EVICTIONS
from subsecond.v1 import cache_pb2


@dataclass(frozen=True)
class NearCacheLimits:
    max_entries: int
    max_bytes: int
    fresh_seconds: float
    stale_seconds: float
    wait_seconds: float


@dataclass(frozen=True)
class NearHit:
    """A near-cache answer as the cache's hit (its age as of now), and whether it is still fresh."""

    response: cache_pb2.LookupResponse
    fresh: bool


@dataclass(frozen=True)
class _Entry:
    hit: cache_pb2.LookupResponse
    # When the answer was created, on the near cache's clock (the cache reports an age, not a time).
    created: float
    stored: float
    size: int


class NearCache:
    def __init__(self, limits: NearCacheLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self._limits = limits
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0

    @property
    def size(self) -> tuple[int, int]:
        """Entries and bytes held now."""
        return len(self._entries), self._bytes

    def clear(self) -> None:
        """Forgets every entry (after an invalidation through this router)."""
        for key in list(self._entries):
            self._remove(key, None)

    def get(self, key: Hashable, *, max_tokens: int, max_age_seconds: int) -> NearHit | None:
        """The entry for ``key``, fresh or stale; None when there is none, or the caller's
        ``max_tokens`` or ``max_age_seconds`` rule it out (the cache service's rules)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        held = now - entry.stored
        if held > self._limits.stale_seconds:
            self._remove(key, "expired")
            return None
        age = now - entry.created
        answer = entry.hit.answer
        if (max_tokens and answer.completion_tokens > max_tokens) or (max_age_seconds and age > max_age_seconds):
            return None
        self._entries.move_to_end(key)
        hit = cache_pb2.LookupResponse()
        hit.CopyFrom(entry.hit)
        hit.age_seconds = age
        return NearHit(hit, fresh=held <= self._limits.fresh_seconds)

    def put(self, key: Hashable, hit: cache_pb2.LookupResponse, texts: tuple[str, ...] = ()) -> None:
        """Keeps ``hit`` (a hit of the cache, or a write-through as an exact hit of age 0) under ``key``,
        which holds ``texts`` (counted in the entry's bytes)."""
        kept = cache_pb2.LookupResponse(
            hit=True, tier=hit.tier, answer=hit.answer, similarity=hit.similarity, age_seconds=hit.age_seconds
        )
        size = kept.ByteSize() + sum(sys.getsizeof(text) for text in texts)
        if size > self._limits.max_bytes:
            return
        if key in self._entries:
            self._remove(key, None)
        now = self._clock()
        self._entries[key] = _Entry(kept, created=now - hit.age_seconds, stored=now, size=size)
        self._bytes += size
        while len(self._entries) > self._limits.max_entries or self._bytes > self._limits.max_bytes:
            self._remove(next(iter(self._entries)), "size")
        NEAR_CACHE_ENTRIES.set(len(self._entries))

    def _remove(self, key: Hashable, reason: str | None) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
        if reason is not None:
            NEAR_CACHE_EVICTIONS.labels(reason).inc()
        NEAR_CACHE_ENTRIES.set(len(self._entries))
