"""Faults under load, on the real stack: Redis, the cache service and the embedding service are
stopped (SIGSTOP) and killed (SIGKILL, then started again) in turn while an open-loop load of
exact hits and misses runs through the router. The exact hits (prompts answered before the
faults) must keep coming back as exact answers with the text cached before, never refused; after
each recovery the cache service must be answering the router's lookups again within about a second.
The measured version of this, with the issue's load and table: ``make chaos``."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
import pytest
from router_calls import call, metric

from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.stack.runner import Stack

pytestmark = pytest.mark.stack

PRIMED = [f"In one word, what colour is {thing}?" for thing in ("snow", "grass", "the sky", "a banana", "coal")]
HIT_RATE, MISS_RATE = 20.0, 1.0
FAULT_SECONDS = 3.0


def ask(prompt: str) -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(prompt=prompt, max_tokens=12)


@dataclass
class Outcomes:
    """What the load saw: per exact-hit request, how it ended."""

    hits: list[tuple[str, str]] = field(default_factory=list)  # (code or served_by, problem or "")
    misses: list[str] = field(default_factory=list)


async def open_loop(rate: float, until: float, one: Callable[[int], Awaitable[None]]) -> None:
    """Starts ``one(i)`` every 1/rate seconds until ``until`` (monotonic), whatever the latency."""
    tasks = []
    start = time.monotonic()
    i = 0
    while (scheduled := start + i / rate) < until:
        await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
        tasks.append(asyncio.create_task(one(i)))
        i += 1
    await asyncio.gather(*tasks)


async def load(router: router_pb2_grpc.RouterStub, answers: dict[str, str], seconds: float) -> Outcomes:
    outcomes = Outcomes()
    until = time.monotonic() + seconds

    async def hit(i: int) -> None:
        prompt = PRIMED[i % len(PRIMED)]
        try:
            got = await call(router, ask(prompt))
        except grpc.aio.AioRpcError as error:
            outcomes.hits.append((error.code().name, error.details() or ""))
            return
        served = types_pb2.ServedBy.Name(got.done.served_by)
        outcomes.hits.append((served, "" if got.text == answers[prompt] else f"wrong text {got.text!r}"))

    async def miss(i: int) -> None:
        try:
            await call(router, ask(f"Name a colour, please ({uuid.uuid4().hex[:8]})."))
            outcomes.misses.append("OK")
        except grpc.aio.AioRpcError as error:
            outcomes.misses.append(error.code().name)

    await asyncio.gather(open_loop(HIT_RATE, until, hit), open_loop(MISS_RATE, until, miss))
    return outcomes


async def cache_answers_again(stack: Stack, router: router_pb2_grpc.RouterStub) -> float:
    """Seconds until the cache service serves the router's exact lookups again (the near cache's
    copies go stale after a second, so the router asks the cache again by then)."""
    back = time.monotonic()
    before = metric(stack, "cache", "subsecond_cache_lookups_total", result="exact")
    while metric(stack, "cache", "subsecond_cache_lookups_total", result="exact") == before:
        assert time.monotonic() - back < 5.0, "the cache service was not used again"
        await call(router, ask(PRIMED[0]))
        await asyncio.sleep(0.05)
    return time.monotonic() - back


async def test_exact_answers_keep_flowing_through_every_fault(
    stack: Stack, router: router_pb2_grpc.RouterStub, cache: cache_pb2_grpc.CacheStub
) -> None:
    answers = {prompt: f"Answer number {i}." for i, prompt in enumerate(PRIMED)}
    for prompt, text in answers.items():  # stored as the router would store its answer to ask(prompt)
        query = cache_pb2.CacheQuery(
            tenant="local",
            model="small",
            messages=[types_pb2.ChatMessage(role="user", content=prompt)],
            sampling=types_pb2.SamplingParams(top_p=1.0),
        )
        answer = cache_pb2.CachedAnswer(chunks=[text], completion_tokens=3, finish_reason=types_pb2.FINISH_REASON_STOP)
        await cache.Store(cache_pb2.StoreRequest(query=query, answer=answer), timeout=10)
        again = await call(router, ask(prompt))
        assert (again.done.served_by, again.text) == (types_pb2.SERVED_BY_EXACT, text)

    faults = [(name, how) for name in ("redis", "cache", "embedding") for how in ("SIGSTOP", "SIGKILL")]
    recoveries: dict[str, float] = {}
    for name, how in faults:
        if how == "SIGSTOP":
            stack.signal(name, signal.SIGSTOP)
        else:
            stack.kill_process(name)
        try:
            outcomes = await load(router, answers, FAULT_SECONDS)
        finally:
            if how == "SIGSTOP":
                stack.signal(name, signal.SIGCONT)
            elif name == "redis":
                await stack.restart_redis()
            else:
                await stack.restart_service(name)
        label = f"{name} {how}"
        problems = [outcome for outcome in outcomes.hits if outcome != ("SERVED_BY_EXACT", "")]
        assert not problems, f"{label}: exact hits that were not served as before: {problems[:5]}"
        assert len(outcomes.hits) >= HIT_RATE * FAULT_SECONDS - 1, f"{label}: exact answers stopped flowing"
        assert set(outcomes.misses) <= {"OK", "RESOURCE_EXHAUSTED"}, f"{label}: misses {outcomes.misses}"
        recoveries[label] = await cache_answers_again(stack, router)
    slow = {label: round(seconds, 2) for label, seconds in recoveries.items() if seconds > 1.5}
    assert not slow, f"the cache was used again only after (s): {slow}"
