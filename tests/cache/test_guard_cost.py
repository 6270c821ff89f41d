"""What the guard costs: bounded whatever the prompt's length, and never on the event loop.

The first tests time the real guard on 400-word prompts built to make its order-sensitive checks
work hardest (a long common tail, a long reordered middle). The service test runs the cache in the
kit's server shell against a real redis-server and the stand-in embedder, and holds the guard of one
lookup in its worker thread (the real guard, made to wait first: the only way to observe "meanwhile"
without a slow machine) while a health check and an exact hit are answered."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from fake_embedder import FakeEmbedder, towards
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis_server import RedisServer

from subsecond.cache import service as cache_service
from subsecond.cache.guard import MAX_DIFFERING_WORDS, SemanticDecision, _analyse, false_hit_reason
from subsecond.cache.service import definition
from subsecond.cache.settings import CacheSettings
from subsecond.kit.server import start_server
from subsecond.v1 import cache_pb2, cache_pb2_grpc, types_pb2

# Far above what the guard takes here (milliseconds) and far below what it took before its cost was
# bounded (over 25 s for a 400-word tail), so that a slow shared runner does not fail it.
BOUND_SECONDS = 0.5


def _words(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(count)]


def _hard_pairs(length: int) -> list[tuple[str, str]]:
    """Pairs of prompts of ``length`` words that keep every word and change their order."""
    words = _words(length, seed=length)
    half = length // 2
    swapped_far = words[:]
    swapped_far[1], swapped_far[-2] = swapped_far[-2], swapped_far[1]
    middle = MAX_DIFFERING_WORDS
    return [
        (" ".join(words), " ".join(words[half:] + words[:half])),  # two halves traded
        (" ".join(words), " ".join(swapped_far)),  # two words traded across the whole prompt
        (" ".join(words), " ".join(words[:middle][::-1] + words[middle:])),  # the longest middle judged
        (" ".join(words), " ".join(words[::-1])),
    ]


@pytest.mark.parametrize("length", [100, 200, 400])
def test_a_long_prompt_is_judged_within_a_bound(length: int) -> None:
    for query, candidate in _hard_pairs(length):
        _analyse.cache_clear()
        started = time.perf_counter()
        false_hit_reason(query, candidate)
        assert time.perf_counter() - started < BOUND_SECONDS


def test_prompts_that_differ_in_more_words_than_the_guard_judges_are_refused() -> None:
    words = _words(400, seed=1)
    rewritten = words[:100] + _words(MAX_DIFFERING_WORDS + 1, seed=2) + words[100 + MAX_DIFFERING_WORDS + 1 :]
    assert false_hit_reason(" ".join(words), " ".join(rewritten)) == "extent"
    within = words[:100] + _words(5, seed=3) + words[105:]
    assert false_hit_reason(" ".join(words), " ".join(within)) != "extent"


def test_a_swap_inside_a_long_prompt_is_still_seen() -> None:
    tail = " ".join(_words(400, seed=4))
    assert false_hit_reason(f"Convert Celsius to Fahrenheit. {tail}", f"Convert Fahrenheit to Celsius. {tail}") == (
        "direction"
    )


def _query(prompt: str) -> cache_pb2.CacheQuery:
    return cache_pb2.CacheQuery(
        tenant="acme",
        model="small",
        messages=[types_pb2.ChatMessage(role="user", content=prompt)],
        sampling=types_pb2.SamplingParams(temperature=0.0),
    )


async def test_health_and_exact_hits_are_answered_while_the_guard_judges(
    redis_server: RedisServer, fake_embedder: FakeEmbedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release, judging = threading.Event(), threading.Event()
    real = cache_service.accept_candidates

    def held(query: str, candidates: Sequence[tuple[str, float]], threshold: float) -> list[SemanticDecision]:
        judging.set()
        release.wait(10)
        return real(query, candidates, threshold)

    monkeypatch.setattr(cache_service, "accept_candidates", held)
    tail = " ".join(_words(400, seed=5))
    stored, asked, other = f"Summarise this in English: {tail}", f"Summarise this in French: {tail}", "Hi?"
    fake_embedder.vectors.update({stored: towards(0), asked: towards(5), other: towards(90)})
    settings = CacheSettings.from_env(
        {
            "SUBSECOND_CACHE_PORT": "0",
            "SUBSECOND_CACHE_METRICS_PORT": "0",
            "SUBSECOND_CACHE_REDIS_URL": redis_server.url,
            "SUBSECOND_CACHE_EMBEDDING_URL": fake_embedder.address,
            "SUBSECOND_CACHE_VECTOR_PATH": str(tmp_path / "vectors"),
        }
    )
    running = await start_server(settings.server, definition(settings))
    answer = cache_pb2.CachedAnswer(chunks=["ok"], finish_reason=types_pb2.FINISH_REASON_STOP, model="small")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            cache = cache_pb2_grpc.CacheStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            for prompt in (stored, other):
                await cache.Store(cache_pb2.StoreRequest(query=_query(prompt), answer=answer))

            pending = asyncio.ensure_future(cache.Lookup(cache_pb2.LookupRequest(query=_query(asked), semantic=True)))
            assert await asyncio.to_thread(judging.wait, 10)
            checked = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            exact = await cache.Lookup(cache_pb2.LookupRequest(query=_query(other)), timeout=1.0)
            assert not pending.done()
            release.set()
            found = await pending
    finally:
        release.set()
        await running.stop(0)

    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    assert exact.hit and exact.tier == cache_pb2.CACHE_TIER_EXACT
    assert not found.hit  # "English" for "French": one word swapped, refused by the guard
