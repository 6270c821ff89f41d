"""The latency features on the real stack: workflows, static routes, the "auto" tier, paced replay,
prompt economy. Triton serves two tiers here: smollm2 (small) and gemma3 (large)."""

import json
import uuid
from pathlib import Path

import grpc
import pytest
from router_calls import call, metric, metric_at, store_counts, write_throughs

from subsecond.v1 import router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.stack.runner import Stack

pytestmark = pytest.mark.stack

BYPASS = router_pb2.CachePolicy(mode=router_pb2.CACHE_MODE_BYPASS)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "tier-examples.json"


def triton_requests(stack: Stack) -> float:
    """Inference requests Triton has received, over all models (its own counter)."""
    port = stack.config.ports.triton_metrics
    return metric_at(port, "nv_inference_request_success") + metric_at(port, "nv_inference_request_failure")


def step(step_id: str, prompt: str, max_tokens: int = 0) -> router_pb2.WorkflowStep:
    return router_pb2.WorkflowStep(id=step_id, request=router_pb2.GenerateRequest(prompt=prompt, max_tokens=max_tokens))


def onboarding(tag: str) -> router_pb2.WorkflowRequest:
    """The shipped example: two independent steps, then one that reads both."""
    return router_pb2.WorkflowRequest(
        inputs={"message": f"I want to track my runs ({tag})", "profile": "Ana, 34, runs three times a week"},
        steps=[
            step("intent", "In a few words, what does this user want? {{inputs.message}}", max_tokens=16),
            step("profile", "Summarise in one line: {{inputs.profile}}", max_tokens=16),
            step(
                "welcome",
                "Write one welcome sentence. Intent: {{steps.intent}}. Profile: {{steps.profile}}",
                max_tokens=24,
            ),
        ],
    )


async def test_onboarding_workflow_runs_independent_steps_concurrently(router: router_pb2_grpc.RouterStub) -> None:
    events = [event async for event in router.RunWorkflow(onboarding(uuid.uuid4().hex), timeout=120)]

    started = {e.step: e.at_seconds for e in events if e.HasField("started")}
    finished = {e.step: e.at_seconds for e in events if e.HasField("chunk") and e.chunk.HasField("done")}
    assert set(started) == set(finished) == {"intent", "profile", "welcome"}
    # Both independent steps started before either finished: they overlapped.
    assert max(started["intent"], started["profile"]) < min(finished["intent"], finished["profile"])
    assert started["welcome"] >= max(finished["intent"], finished["profile"])
    summary = events[-1].summary
    assert list(summary.critical_path)[-1] == "welcome"
    assert summary.total_seconds < summary.sequential_seconds
    assert all(e.chunk.done.served_by == types_pb2.SERVED_BY_GENERATED for e in events if e.chunk.HasField("done"))


async def test_a_bad_workflow_is_refused_naming_the_step_and_nothing_runs(
    stack: Stack, router: router_pb2_grpc.RouterStub
) -> None:
    before = triton_requests(stack)
    cycle = router_pb2.WorkflowRequest(steps=[step("a", "{{steps.b}}"), step("b", "{{steps.a}}")])
    bad_tier = onboarding("x")
    bad_tier.steps[1].request.model = "huge"
    for request, message in ((cycle, "step a: dependency cycle"), (bad_tier, "step profile: model: unknown tier")):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in router.RunWorkflow(request, timeout=30):
                pass
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (refused.value.details() or "")
    assert triton_requests(stack) == before


async def test_static_routes_answer_without_triton(stack: Stack, router: router_pb2_grpc.RouterStub) -> None:
    listed = await router.ListStaticRoutes(router_pb2.ListStaticRoutesRequest(), timeout=10)
    assert {route.name for route in listed.routes} >= {"extract-emails", "validate-email", "opening-hours"}

    before = triton_requests(stack)
    emails = await call(
        router, router_pb2.GenerateRequest(prompt="Mail ana@example.com or bo@example.org.", task="extract_emails")
    )
    valid = await call(router, router_pb2.GenerateRequest(prompt="Is ana@@example a valid email?"))
    hours = await call(router, router_pb2.GenerateRequest(prompt="What are your opening hours?"))
    assert emails.text == "ana@example.com\nbo@example.org"
    assert valid.text.startswith("invalid: ")
    assert hours.text.startswith("We are open Monday to Friday")
    for answer, route in ((emails, "extract-emails"), (valid, "validate-email"), (hours, "opening-hours")):
        assert answer.done.served_by == types_pb2.SERVED_BY_STATIC
        assert answer.done.static_route == route
    assert triton_requests(stack) == before
    assert metric(stack, "router", "subsecond_router_static_answers_total", route="extract-emails") >= 1


async def test_a_skeleton_route_sends_only_its_free_part_to_the_model(router: router_pb2_grpc.RouterStub) -> None:
    answer = await call(router, router_pb2.GenerateRequest(prompt="Welcome note for Ana"))
    assert answer.done.served_by == types_pb2.SERVED_BY_STATIC
    assert answer.text.startswith("Hi Ana, welcome aboard! ")
    assert answer.text.endswith(" Your manager will be in touch today.")
    middle = answer.text.removeprefix("Hi Ana, welcome aboard! ").removesuffix(" Your manager will be in touch today.")
    assert middle.strip()
    assert answer.done.completion_tokens > 0


async def test_auto_picks_the_labelled_tier_for_held_out_examples(router: router_pb2_grpc.RouterStub) -> None:
    held_out = json.loads(EXAMPLES.read_text())["test"]
    chosen = {}
    for tier, prompts in held_out.items():
        for prompt in prompts:
            # A unique suffix: every prompt misses the cache, so the lookup returns its embedding.
            request = router_pb2.GenerateRequest(
                prompt=f"{prompt} (#{uuid.uuid4().hex[:6]})", model="auto", max_tokens=4
            )
            answer = await call(router, request)
            chosen[prompt] = (tier, answer.done.model, answer.done.tier_reason)
    wrong = {prompt: c for prompt, c in chosen.items() if c[0] != c[1]}
    assert not wrong
    assert {reason for _, _, reason in chosen.values()} == {"centroid"}


async def test_auto_follows_task_hints_and_long_answers(router: router_pb2_grpc.RouterStub) -> None:
    tag = uuid.uuid4().hex[:6]
    classify = await call(
        router, router_pb2.GenerateRequest(prompt=f"Write a poem? {tag}", model="auto", task="classify", max_tokens=4)
    )
    long_answer = await call(router, router_pb2.GenerateRequest(prompt=f"Hi {tag}", model="auto", max_tokens=200))
    assert (classify.done.model, classify.done.tier_reason) == ("small", "task")
    assert (long_answer.done.model, long_answer.done.tier_reason) == ("large", "max_tokens")


async def test_cached_answers_replay_at_once_or_paced_like_the_model(
    stack: Stack, router: router_pb2_grpc.RouterStub
) -> None:
    question = router_pb2.GenerateRequest(
        messages=[
            types_pb2.ChatMessage(role="system", content="Answer in one short sentence."),
            types_pb2.ChatMessage(role="user", content=f"Name a colour of the rainbow. ({uuid.uuid4().hex[:6]})"),
        ],
        max_tokens=96,
    )
    stores = store_counts(stack)
    generated = await call(router, question)
    assert generated.done.finish_reason == types_pb2.FINISH_REASON_STOP  # only finished answers are cached
    assert (await write_throughs(stack, stores, result="stored"))["stored"] >= 1
    at_once = await call(router, question)
    question.replay = router_pb2.REPLAY_PACED
    paced = await call(router, question)

    assert at_once.done.served_by == paced.done.served_by == types_pb2.SERVED_BY_EXACT
    assert at_once.text == paced.text == generated.text
    assert at_once.chunks == 1
    assert paced.chunks == generated.chunks
    # Paced: the gaps between chunks are the model's, so the stream lasts about as long as the
    # generation's streaming did (its total less its time to first chunk); at once it does not.
    streaming = generated.done.total_seconds - generated.done.time_to_first_chunk_seconds
    assert paced.done.total_seconds > 0.5 * streaming > at_once.done.total_seconds


async def test_history_over_the_tier_budget_is_trimmed_and_max_tokens_capped(
    stack: Stack, router: router_pb2_grpc.RouterStub
) -> None:
    saved_before = metric(stack, "router", "subsecond_router_tokens_saved_total", model="small")
    filler = "Tell me more about the weather in spring and in autumn. " * 40  # ~560 tokens a turn
    history = [
        types_pb2.ChatMessage(role="system", content="Be brief."),
        types_pb2.ChatMessage(role="user", content=filler),
        types_pb2.ChatMessage(role="assistant", content=filler),
        types_pb2.ChatMessage(role="user", content=f"Now just say hello. {uuid.uuid4().hex[:6]}"),
    ]
    request = router_pb2.GenerateRequest(messages=history, model="small", max_tokens=600, cache=BYPASS)
    answer = await call(router, request)
    assert answer.done.trimmed_prompt_tokens >= 1000  # both filler turns dropped
    assert answer.done.prompt_tokens < 100  # what the model actually read
    saved = metric(stack, "router", "subsecond_router_tokens_saved_total", model="small") - saved_before
    assert saved >= answer.done.trimmed_prompt_tokens + (600 - 256)
