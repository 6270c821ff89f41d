"""Misses that do not wait for the semantic lookup (``SPECULATE=always``, else as named): the router in the kit's server
shell on port 0 in front of the fake cache and generation service of test_router_service.py (real
gRPC servers with scripted answers; the real ones need Redis, Qdrant, an embedding model and Triton).

The order of what happened is read from the fakes' shared journal (each entry written when a
lookup answered or a generation was asked for) and from events the test holds, never from timings.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import test_router_service
from test_router_service import Script, Stack, answer, counted, refused, text, until

from subsecond.kit.settings import SettingsError
from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, router_pb2, types_pb2

own_stack = test_router_service.own_stack
ALWAYS = {"SPECULATE": "always"}


@pytest.fixture
def router_env() -> dict[str, str]:
    """``own_stack``'s settings: speculating (the default is off), unless a test parametrises them."""
    return ALWAYS

STOP = types_pb2.FINISH_REASON_STOP
EMBEDDING = [0.6, 0.8, 0.0]
SEMANTIC_HIT = cache_pb2.LookupResponse(
    hit=True,
    tier=cache_pb2.CACHE_TIER_SEMANTIC,
    similarity=0.95,
    answer=cache_pb2.CachedAnswer(chunks=["From the cache."], completion_tokens=4, finish_reason=STOP),
)


def test_speculating_is_off_unless_set_and_a_mode_is_one_of_three() -> None:
    default = RouterSettings.from_env({})
    assert (default.speculate, default.speculate_share) == ("off", 0.5)
    spare = RouterSettings.from_env({"SUBSECOND_ROUTER_SPECULATE": "spare", "SUBSECOND_ROUTER_SPECULATE_SHARE": "0.25"})
    assert (spare.speculate, spare.speculate_share) == ("spare", 0.25)
    with pytest.raises(SettingsError, match="SPECULATE must be one of off, always, spare, not 'sometimes'"):
        RouterSettings.from_env({"SUBSECOND_ROUTER_SPECULATE": "sometimes"})


def speculated(outcome: str) -> float:
    return counted("subsecond_router_speculative_generations_total", outcome=outcome)


def wasted_tokens() -> float:
    return counted("subsecond_router_speculative_wasted_prompt_tokens_total")


async def test_a_miss_generates_while_the_semantic_tier_is_searched_and_serves_that_generation(
    own_stack: Stack,
) -> None:
    cache, generator = own_stack.cache, own_stack.generator
    cache.semantic_hold, cache.embedding = asyncio.Event(), EMBEDDING
    served = speculated("served")
    asking = asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt="New question")))

    await until(lambda: len(generator.calls) == 1)  # generating, while the semantic lookup is held
    assert len(cache.semantic_lookups) == 1
    cache.semantic_hold.set()
    responses = await asking

    assert cache.journal == ["lookup New question", "generate New question", "semantic New question"]
    assert text(responses) == "Hello there."
    assert responses[-1].done.served_by == types_pb2.SERVED_BY_GENERATED
    assert len(generator.calls) == 1  # the generation under way was the answer: not asked again
    (exact,) = cache.lookups
    (semantic,) = cache.semantic_lookups
    assert (exact.semantic, exact.skip_exact) == (False, False)
    assert (semantic.semantic, semantic.skip_exact, semantic.want_embedding) == (True, True, True)
    assert speculated("served") == served + 1
    # The write-through carries the embedding the semantic lookup computed: the cache embeds the miss once.
    await until(lambda: bool(cache.stored("New question")))
    assert list(cache.stored("New question")[0].embedding) == pytest.approx(EMBEDDING)


async def test_a_semantic_hit_cancels_the_generation_and_serves_the_cache(own_stack: Stack) -> None:
    cache, generator = own_stack.cache, own_stack.generator
    cache.semantic_hold = asyncio.Event()
    generator.scripts["Paraphrase"] = Script(chunks=("Generated", " text."), hold=asyncio.Event())
    cancelled, wasted = speculated("cancelled"), wasted_tokens()
    asking = asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt="Paraphrase")))

    await until(lambda: len(generator.calls) == 1)
    cache.hit = SEMANTIC_HIT  # the semantic tier finds a neighbour
    cache.semantic_hold.set()
    responses = await asking

    assert text(responses) == "From the cache."  # not a chunk of the generation reached the client
    assert responses[-1].done.served_by == types_pb2.SERVED_BY_SEMANTIC
    await until(lambda: generator.cancelled == ["Paraphrase"])  # the generation service's call was cancelled
    assert speculated("cancelled") == cancelled + 1
    assert wasted_tokens() == wasted + 3  # "Paraphrase": 10 characters, about 3 tokens
    await asyncio.sleep(0.1)
    assert cache.stored("Paraphrase") == []


@pytest.mark.parametrize("router_env", [{"SPECULATE": "off"}])
async def test_off_generates_only_after_the_whole_lookup_missed(own_stack: Stack) -> None:
    cache = own_stack.cache
    cache.embedding = EMBEDDING
    served = speculated("served")

    responses = await answer(own_stack, router_pb2.GenerateRequest(prompt="Old order"))

    assert text(responses) == "Hello there."
    assert cache.journal == ["lookup Old order", "generate Old order"]
    (lookup,) = cache.lookups
    assert (lookup.semantic, lookup.skip_exact, lookup.want_embedding) == (True, False, True)
    assert cache.semantic_lookups == []
    assert speculated("served") == served
    await until(lambda: bool(cache.stored("Old order")))
    assert list(cache.stored("Old order")[0].embedding) == pytest.approx(EMBEDDING)  # embedded once here too


async def test_an_exact_hit_starts_no_generation(own_stack: Stack) -> None:
    own_stack.cache.hit = cache_pb2.LookupResponse(
        hit=True, tier=cache_pb2.CACHE_TIER_EXACT, answer=cache_pb2.CachedAnswer(chunks=["Exact."], finish_reason=STOP)
    )
    responses = await answer(own_stack, router_pb2.GenerateRequest(prompt="Asked before"))
    assert text(responses) == "Exact."
    assert own_stack.cache.journal == ["lookup Asked before"]
    assert own_stack.generator.calls == [] and own_stack.cache.semantic_lookups == []


async def test_a_multi_turn_miss_asks_only_the_exact_tier(own_stack: Stack) -> None:
    """The semantic tier does not search conversations: there is nothing to wait for."""
    turns = [
        types_pb2.ChatMessage(role="user", content="Hi"),
        types_pb2.ChatMessage(role="assistant", content="Hello."),
        types_pb2.ChatMessage(role="user", content="And now?"),
    ]
    responses = await answer(own_stack, router_pb2.GenerateRequest(messages=turns))
    assert text(responses) == "Hello there."
    assert own_stack.cache.journal == ["lookup And now?", "generate And now?"]
    assert own_stack.cache.semantic_lookups == []


@pytest.mark.parametrize("router_env", [ALWAYS | {"TENANT_MAX_STREAMS": "1"}])
async def test_a_semantic_hit_is_served_when_the_limits_refused_its_generation(own_stack: Stack) -> None:
    cache, generator = own_stack.cache, own_stack.generator
    generator.scripts["Holds the slot"] = Script(hold=asyncio.Event())
    holding = asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt="Holds the slot")))
    await until(lambda: len(generator.calls) == 1)

    cache.hit = SEMANTIC_HIT
    responses = await answer(own_stack, router_pb2.GenerateRequest(prompt="A paraphrase"))
    assert text(responses) == "From the cache."  # the refusal of its speculative generation is dropped
    cache.hit = None
    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="A real miss"))
    assert error.details() == "tenant local has 1 generations running; retry later"
    holding.cancel()


@pytest.mark.parametrize("router_env", [{"SPECULATE": "spare", "MAX_GENERATIONS": "4", "SPECULATE_SHARE": "0.25"}])
async def test_spare_speculates_only_below_its_share_of_the_generation_limit(own_stack: Stack) -> None:
    cache, generator = own_stack.cache, own_stack.generator
    generator.scripts["First"] = Script(hold=asyncio.Event())
    first = asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt="First")))
    await until(lambda: len(generator.calls) == 1)
    assert len(cache.semantic_lookups) == 1  # none running: it speculated

    await answer(own_stack, router_pb2.GenerateRequest(prompt="Second"))  # one of 4 running: 25 % in use

    assert cache.journal[-2:] == ["lookup Second", "generate Second"]
    assert [lookup.semantic for lookup in cache.lookups] == [False, True]  # the second, one whole lookup
    assert len(cache.semantic_lookups) == 1
    first.cancel()


@pytest.mark.parametrize("router_env", [{"SPECULATE": "spare", "MAX_GENERATIONS": "4", "SPECULATE_SHARE": "0.25"}])
async def test_spare_counts_a_cancelled_speculation_until_its_prefill_would_have_ended(own_stack: Stack) -> None:
    cache, generator = own_stack.cache, own_stack.generator
    generator.scripts["Warm"] = Script(delay=1.0)  # the tier's first chunk takes a second
    await answer(own_stack, router_pb2.GenerateRequest(prompt="Warm"))
    cache.hit = SEMANTIC_HIT
    await answer(own_stack, router_pb2.GenerateRequest(prompt="A paraphrase"))  # speculated, then cancelled
    assert len(cache.semantic_lookups) == 2

    # Nothing runs in the router, but the backend still reads the cancelled prompt: no slot to spare.
    await answer(own_stack, router_pb2.GenerateRequest(prompt="Another paraphrase"))
    assert len(cache.semantic_lookups) == 2 and cache.lookups[-1].semantic
    await asyncio.sleep(1.2)  # that prefill is over
    await answer(own_stack, router_pb2.GenerateRequest(prompt="A third paraphrase"))
    assert len(cache.semantic_lookups) == 3


async def test_a_call_cancelled_during_the_semantic_lookup_cancels_its_generation(own_stack: Stack) -> None:
    cache, generator = own_stack.cache, own_stack.generator
    cache.semantic_hold = asyncio.Event()
    generator.scripts["Gone"] = Script(hold=asyncio.Event())
    call = own_stack.router.Generate(router_pb2.GenerateRequest(prompt="Gone"), timeout=5)
    reading = asyncio.create_task(anext(aiter(call)))
    await until(lambda: len(generator.calls) == 1 and len(cache.semantic_lookups) == 1)
    call.cancel()
    await until(lambda: generator.cancelled == ["Gone"])
    reading.cancel()
    cache.semantic_hold.set()


def _centroids(folder: Path) -> Path:
    path = folder / "centroids.json"
    path.write_text(json.dumps({"small": [[1.0, 0.0, 0.0]], "large": [[0.0, 1.0, 0.0]]}), encoding="utf-8")
    return path


@pytest.fixture
def auto_env(tmp_path: Path) -> dict[str, str]:
    return {
        "TIERS": "small,large",
        "AUTO_LARGE_TIER": "large",
        "TIER_CENTROIDS_FILE": str(_centroids(tmp_path)),
        **ALWAYS,
    }


async def test_auto_waits_for_the_embedding_when_the_centroids_decide(tmp_path: Path, auto_env: dict[str, str]) -> None:
    async with test_router_service.running_stack(tmp_path, auto_env) as stack:
        stack.cache.embedding = EMBEDDING  # nearer the large tier's centroid

        undecided = await answer(stack, router_pb2.GenerateRequest(prompt="Tell me about it", model="auto"))
        stack.cache.semantic_hold = asyncio.Event()
        yes_no = router_pb2.GenerateRequest(prompt="Yes or no?", model="auto", task="yes_no")
        deciding = asyncio.create_task(answer(stack, yes_no))
        await until(lambda: len(stack.generator.calls) == 2)
        stack.cache.semantic_hold.set()
        decided = await deciding

        assert (undecided[-1].done.model, undecided[-1].done.tier_reason) == ("large", "centroid")
        assert (decided[-1].done.model, decided[-1].done.tier_reason) == ("small", "task")
        assert stack.cache.journal == [
            "lookup Tell me about it",  # the whole lookup, then the generation on the tier its embedding chose
            "generate Tell me about it",
            "lookup Yes or no?",  # the task decides: generating while the semantic tier is searched
            "generate Yes or no?",
            "semantic Yes or no?",
        ]
