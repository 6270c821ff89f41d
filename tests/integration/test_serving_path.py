"""End-to-end behaviour of the serving path through the router, on the real engines."""

import asyncio
import signal
import uuid

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from router_calls import call, metric, store_counts, write_throughs

from subsecond.router.chunking import SentenceChunker
from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    types_pb2,
)
from subsecond_tools.stack.runner import Stack

pytestmark = pytest.mark.stack

SYSTEM = "Answer in one short sentence."


def ask(prompt: str, **fields: object) -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(
        messages=[
            types_pb2.ChatMessage(role="system", content=SYSTEM),
            types_pb2.ChatMessage(role="user", content=prompt),
        ],
        **({"max_tokens": 96} | fields),  # type: ignore[arg-type]
    )


async def test_health_and_reflection(stack: Stack) -> None:
    async with stack.channel("router", as_service=None) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for reply in stub.ServerReflectionInfo(iter([request])):
            names = {service.name for service in reply.list_services_response.service}
            break
    assert {"subsecond.v1.Router", "grpc.health.v1.Health"} <= names


async def test_second_ask_is_an_exact_hit(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    stores = store_counts(stack)
    first = await call(router, ask("What is the capital of France?"))
    assert first.done.served_by == types_pb2.SERVED_BY_GENERATED
    assert first.done.finish_reason == types_pb2.FINISH_REASON_STOP
    assert first.text.strip() and first.chunks > 2  # streamed, not one blob
    assert first.done.completion_tokens > 0 and first.done.prompt_tokens > 0
    assert (await write_throughs(stack, stores, result="stored"))["stored"] >= 1
    second = await call(router, ask("What is the capital of France?"))
    assert second.done.served_by == types_pb2.SERVED_BY_EXACT
    assert second.text == first.text
    assert second.done.completion_tokens == first.done.completion_tokens
    assert second.done.time_to_first_chunk_seconds < first.done.time_to_first_chunk_seconds


async def test_paraphrase_is_a_semantic_hit_and_near_miss_is_generated(
    stack: Stack, router: router_pb2_grpc.RouterStub
) -> None:
    stores = store_counts(stack)
    original = await call(router, ask("How many legs does a spider have?"))
    assert original.done.finish_reason == types_pb2.FINISH_REASON_STOP
    assert (await write_throughs(stack, stores, result="stored"))["stored"] >= 1
    paraphrase = await call(router, ask("How many legs do spiders have?"))
    assert paraphrase.done.served_by == types_pb2.SERVED_BY_SEMANTIC
    assert paraphrase.text == original.text
    assert 0.0 < paraphrase.done.similarity <= 1.0
    near_miss = await call(router, ask("How many legs does a spider not have?"))
    assert near_miss.done.served_by == types_pb2.SERVED_BY_GENERATED


async def test_numbers_that_differ_never_share_an_answer(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    stores = store_counts(stack)
    first = await call(router, ask("What is 15% of 80?"))
    assert first.done.served_by == types_pb2.SERVED_BY_GENERATED
    await write_throughs(stack, stores)
    other = await call(router, ask("What is 15% of 90?"))
    assert other.done.served_by == types_pb2.SERVED_BY_GENERATED


async def test_tenants_never_see_each_others_entries(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    prompt = "Name one primary colour."
    stores = store_counts(stack)
    blue = await call(router, ask(prompt), key="key-blue")
    assert blue.done.served_by == types_pb2.SERVED_BY_GENERATED
    assert (await write_throughs(stack, stores, result="stored"))["stored"] >= 1
    assert (await call(router, ask(prompt), key="key-blue")).done.served_by == types_pb2.SERVED_BY_EXACT
    green = await call(router, ask(prompt), key="key-green")
    assert green.done.served_by == types_pb2.SERVED_BY_GENERATED


async def test_unknown_api_key_is_unauthenticated(router: router_pb2_grpc.RouterStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(router, ask("Hello?"), key="stolen")
    assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bad_input_is_invalid_argument_naming_the_field_and_nothing_runs(
    stack: Stack, router: router_pb2_grpc.RouterStub
) -> None:
    generated_before = metric(stack, "generation", "subsecond_generation_streams_total")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call(router, ask("Hello?", max_tokens=1_000_000))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_tokens" in (error.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as blank:
        await call(router, router_pb2.GenerateRequest(prompt="  "))
    assert blank.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert metric(stack, "generation", "subsecond_generation_streams_total") == generated_before


async def test_truncated_answers_are_not_cached(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    request = ask("Write a long story about a dragon.", max_tokens=4)
    stores = store_counts(stack)
    first = await call(router, request)
    assert first.done.finish_reason == types_pb2.FINISH_REASON_LENGTH
    assert (await write_throughs(stack, stores, result="skipped"))["skipped"] >= 1
    assert (await call(router, request)).done.served_by == types_pb2.SERVED_BY_GENERATED


async def test_cancelled_stream_stores_nothing_and_cancels_generation(
    stack: Stack, router: router_pb2_grpc.RouterStub, cache: cache_pb2_grpc.CacheStub
) -> None:
    prompt = f"Describe the history of Rome in detail. ({uuid.uuid4().hex[:6]})"
    cancelled_before = metric(stack, "generation", "subsecond_generation_streams_total", outcome="cancelled")
    stream = router.Generate(ask(prompt, max_tokens=400), timeout=120)
    async for response in stream:
        if response.text:
            break
    stream.cancel()
    await asyncio.sleep(1.0)
    assert (
        metric(stack, "generation", "subsecond_generation_streams_total", outcome="cancelled") == cancelled_before + 1
    )
    lookup = await cache.Lookup(
        cache_pb2.LookupRequest(
            query=cache_pb2.CacheQuery(
                tenant="local",
                model="small",
                messages=ask(prompt).messages,
                sampling=types_pb2.SamplingParams(top_p=1.0),
            ),
            semantic=False,
        )
    )
    assert not lookup.hit


async def test_deadline_exceeded_cancels_the_generation(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    cancelled_before = metric(stack, "generation", "subsecond_generation_streams_total", outcome="cancelled")
    errors_before = metric(stack, "generation", "subsecond_generation_streams_total", outcome="error")
    with pytest.raises(grpc.aio.AioRpcError) as error:
        async for _ in router.Generate(
            ask(f"Explain quantum physics. {uuid.uuid4().hex[:6]}", max_tokens=400), timeout=0.5
        ):
            pass
    assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(1.0)
    ended = metric(stack, "generation", "subsecond_generation_streams_total", outcome="cancelled") - cancelled_before
    ended += metric(stack, "generation", "subsecond_generation_streams_total", outcome="error") - errors_before
    assert ended == 1  # the generation did not run on after the deadline


async def test_identical_concurrent_misses_are_coalesced(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    request = ask(f"Give one tip for sleeping well. ({uuid.uuid4().hex[:6]})")
    streams_before = metric(stack, "generation", "subsecond_generation_streams_total")
    answers = await asyncio.gather(*(call(router, request) for _ in range(3)))
    assert len({answer.text for answer in answers}) == 1
    assert sum(answer.done.coalesced for answer in answers) >= 1
    assert metric(stack, "generation", "subsecond_generation_streams_total") - streams_before == 3 - sum(
        answer.done.coalesced for answer in answers
    )


async def test_sentence_chunking_streams_whole_sentences(router: router_pb2_grpc.RouterStub) -> None:
    request = router_pb2.GenerateRequest(
        prompt="Write three short sentences about the sea.",
        max_tokens=120,
        chunking=router_pb2.CHUNKING_SENTENCE,
        cache=router_pb2.CachePolicy(mode=router_pb2.CACHE_MODE_BYPASS),
    )
    pieces = [response.text async for response in router.Generate(request, timeout=120)]
    text = "".join(pieces)
    assert text.strip()
    offline = SentenceChunker()
    expected = [*offline.feed(text), offline.flush()]
    assert pieces == expected  # the stream was cut exactly at sentence ends, nothing lost
    assert len(pieces) >= 2


async def test_metrics_are_exported(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    await call(router, ask("What is the capital of France?"))
    assert metric(stack, "router", "subsecond_router_request_duration_seconds_count", served_by="exact") >= 1
    assert metric(stack, "router", "subsecond_router_time_to_first_chunk_seconds_count") >= 1
    assert metric(stack, "cache", "subsecond_cache_lookups_total", result="exact") >= 1
    assert metric(stack, "cache", "subsecond_cache_hop_duration_seconds_count", hop="redis") >= 1
    assert metric(stack, "embedding", "subsecond_embedding_batch_size_texts_count") >= 1
    assert metric(stack, "generation", "subsecond_generation_time_to_first_token_seconds_count", model="small") >= 1


async def test_redis_down_still_answers_and_counts_the_bypass(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    stack.stop_process("redis")
    try:
        bypassed_before = metric(stack, "router", "subsecond_router_cache_bypass_total", reason="redis")
        # A question never asked: one asked before is still answered, from the router's near cache (test_faults.py).
        answer = await call(router, ask(f"What is the capital of Peru? ({uuid.uuid4().hex[:6]})"))
        assert answer.done.served_by == types_pb2.SERVED_BY_GENERATED
        assert answer.text.strip()
        assert metric(stack, "router", "subsecond_router_cache_bypass_total", reason="redis") > bypassed_before
    finally:
        stack.start_redis()
        await asyncio.sleep(0.5)


async def test_sigterm_lets_the_request_in_flight_finish(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    stream = router.Generate(ask(f"Describe a forest. ({uuid.uuid4().hex[:6]})", max_tokens=64), timeout=120)
    texts = []
    async for response in stream:
        if not texts:
            stack.signal("router", signal.SIGTERM)
        texts.append(response.text)
        if response.HasField("done"):
            assert response.done.finish_reason in (
                types_pb2.FINISH_REASON_STOP,
                types_pb2.FINISH_REASON_LENGTH,
            )
    assert "".join(texts).strip()
    assert stack.stop_process("router") == 0
    await stack.restart_service("router")
