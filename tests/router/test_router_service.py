"""The Router servicer in-process: the real servicer in the kit's server shell on loopback port 0,
in front of a cache and a generation service that are fakes (the real ones need Redis, Qdrant,
an embedding model and Triton), each a real gRPC server on port 0 with scripted answers that
records what it was asked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from subsecond.kit.server import RunningServer, start_server
from subsecond.router.auth import hash_key
from subsecond.router.service import definition
from subsecond.router.settings import RouterSettings
from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    types_pb2,
)

STOP, LENGTH = types_pb2.FINISH_REASON_STOP, types_pb2.FINISH_REASON_LENGTH
ROUTES = """
- name: hours
  regex: "opening hours"
  answer: {template: "We are open from 9 to 5."}
- name: welcome
  task: welcome
  answer: {skeleton: "Welcome aboard! {{generate: Greet a new runner}} See you soon."}
"""


@dataclass
class Script:
    """What the fake generation service does for one prompt."""

    chunks: tuple[str, ...] = ("Hello", " there.")
    finish_reason: int = STOP
    # Ends the call with this status after the chunks.
    fail: grpc.StatusCode | None = None
    # When set, waited for after the first chunk.
    hold: asyncio.Event | None = None
    # Seconds before the first chunk (a prompt's prefill).
    delay: float = 0.0


class FakeGenerator(generation_pb2_grpc.GeneratorServicer):
    def __init__(self, journal: list[str] | None = None) -> None:
        # What the fakes did, in order, shared with the cache's fake (the order of lookups and generations).
        self.journal = [] if journal is None else journal
        self.reset()

    def reset(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.calls: list[generation_pb2.GenerationRequest] = []
        self.budgets: list[float] = []
        self.cancelled: list[str] = []

    def prompts(self) -> list[str]:
        return [call.messages[-1].content for call in self.calls]

    async def Generate(
        self, request: generation_pb2.GenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        self.calls.append(request)
        self.budgets.append(context.time_remaining() or 0.0)
        prompt = request.messages[-1].content
        self.journal.append(f"generate {prompt}")
        script = self.scripts.get(prompt, Script())
        try:
            await asyncio.sleep(script.delay)
            for i, text in enumerate(script.chunks):
                yield generation_pb2.GenerationChunk(text=text)
                if i == 0 and script.hold is not None:
                    await script.hold.wait()
            if script.fail is not None:
                await context.abort(script.fail, f"scripted {script.fail.name}")
            yield generation_pb2.GenerationChunk(
                done=generation_pb2.GenerationDone(
                    finish_reason=script.finish_reason, prompt_tokens=5, completion_tokens=2
                )
            )
        except asyncio.CancelledError:
            self.cancelled.append(prompt)
            raise


class FakeCache(cache_pb2_grpc.CacheServicer):
    """``hit`` is what the whole lookup finds; a lookup of one tier (the router's speculative misses ask
    the exact tier alone, then the semantic tier alone) finds it only if that tier would have."""

    def __init__(self, journal: list[str] | None = None) -> None:
        self.journal = [] if journal is None else journal
        self.reset()

    def reset(self) -> None:
        self.hit: cache_pb2.LookupResponse | None = None
        self.fail: grpc.StatusCode | None = None
        # When set, a lookup waits for it (a stopped cache service: the connection is up, nothing answers).
        self.hold: asyncio.Event | None = None
        # When set, a lookup of the semantic tier alone waits for it as well.
        self.semantic_hold: asyncio.Event | None = None
        # The prompt's embedding, returned by a miss that searched the semantic tier when asked for it.
        self.embedding: list[float] = []
        # Lookups that ask the exact tier (one per request that reached the cache), and those of the
        # semantic tier alone that follow them on a speculative miss.
        self.lookups: list[cache_pb2.LookupRequest] = []
        self.semantic_lookups: list[cache_pb2.LookupRequest] = []
        self.stores: list[cache_pb2.StoreRequest] = []

    def stored(self, prompt: str) -> list[cache_pb2.StoreRequest]:
        """The write-throughs of ``prompt`` (those of an earlier test may still arrive after it ended)."""
        return [store for store in self.stores if store.query.messages[-1].content == prompt]

    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        (self.semantic_lookups if request.skip_exact else self.lookups).append(request)
        if self.hold is not None:
            await self.hold.wait()
        if request.skip_exact and self.semantic_hold is not None:
            await self.semantic_hold.wait()
        if self.fail is not None:
            await context.abort(self.fail, "scripted failure")
        found = self._found(request)
        self.journal.append(f"{'semantic' if request.skip_exact else 'lookup'} {request.query.messages[-1].content}")
        return found

    def _found(self, request: cache_pb2.LookupRequest) -> cache_pb2.LookupResponse:
        found = self.hit or cache_pb2.LookupResponse(hit=False)
        in_exact_tier = found.tier == cache_pb2.CACHE_TIER_EXACT or found.bypassed == "redis"
        if (in_exact_tier and request.skip_exact) or (not in_exact_tier and not request.semantic):
            return cache_pb2.LookupResponse(hit=False)
        if not found.hit and request.semantic and request.want_embedding:
            return cache_pb2.LookupResponse(bypassed=found.bypassed, embedding=self.embedding)
        return found

    async def Store(
        self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StoreResponse:
        self.stores.append(request)
        return cache_pb2.StoreResponse(key="k")

    async def Stats(
        self, request: cache_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StatsResponse:
        return cache_pb2.StatsResponse(semantic_backend="fake")


@dataclass
class Stack:
    router: router_pb2_grpc.RouterStub
    cache: FakeCache
    generator: FakeGenerator
    cache_server: grpc.aio.Server
    generation_server: grpc.aio.Server
    # Where the cache server listens (to start a new one there, as a restarted cache service).
    cache_port: int


async def _serve(register: Callable[[grpc.aio.Server], None]) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def _settings(cache_port: int, generation_port: int, routes: Path, **env: str) -> RouterSettings:
    prefixed = {f"SUBSECOND_ROUTER_{name}": value for name, value in env.items()}
    return RouterSettings.from_env(
        {
            "SUBSECOND_ROUTER_PORT": "0",
            "SUBSECOND_ROUTER_METRICS_PORT": "0",
            "SUBSECOND_ROUTER_SHUTDOWN_GRACE_SECONDS": "1",
            "SUBSECOND_ROUTER_CACHE_URL": f"127.0.0.1:{cache_port}",
            "SUBSECOND_ROUTER_GENERATION_URL": f"127.0.0.1:{generation_port}",
            "SUBSECOND_ROUTER_STATIC_ROUTES_FILE": str(routes),
            # Most tests call as the default tenant; tests/router/test_auth.py checks keys.
            "SUBSECOND_ROUTER_ALLOW_ANONYMOUS": "true",
            **prefixed,
        }
    )


@asynccontextmanager
async def running_stack(folder: Path, router_env: dict[str, str]) -> AsyncIterator[Stack]:
    routes = folder / "routes.yaml"
    routes.write_text(ROUTES, encoding="utf-8")
    journal: list[str] = []
    cache, generator = FakeCache(journal), FakeGenerator(journal)
    cache_server, cache_port = await _serve(lambda s: cache_pb2_grpc.add_CacheServicer_to_server(cache, s))
    generation_server, generation_port = await _serve(
        lambda s: generation_pb2_grpc.add_GeneratorServicer_to_server(generator, s)
    )
    settings = _settings(cache_port, generation_port, routes, **router_env)
    running: RunningServer = await start_server(settings.server, definition(settings))
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Stack(router_pb2_grpc.RouterStub(channel), cache, generator, cache_server, generation_server, cache_port)
    finally:
        await channel.close()
        await running.stop(0)
        await generation_server.stop(0)
        await cache_server.stop(0)


@pytest.fixture(scope="module")
async def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    async with running_stack(tmp_path_factory.mktemp("router"), {}) as stack:
        yield stack


@pytest.fixture
def stack(shared_stack: Stack) -> Stack:
    """The module's router with its fakes reset: for tests that leave the router as they found it."""
    shared_stack.cache.reset()
    shared_stack.generator.reset()
    return shared_stack


@pytest.fixture
def router_env() -> dict[str, str]:
    """Settings of ``own_stack`` (names without the prefix); a test changes them by parametrising ``router_env``."""
    return {}


@pytest.fixture
async def own_stack(tmp_path: Path, router_env: dict[str, str]) -> AsyncIterator[Stack]:
    """A router of its own, for a test that changes settings or leaves a breaker open."""
    async with running_stack(tmp_path, router_env) as stack:
        yield stack


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def answer(
    stack: Stack, request: router_pb2.GenerateRequest, *, key: str = "", deadline_seconds: float = 5
) -> list[router_pb2.GenerateResponse]:
    metadata = [("x-api-key", key)] if key else None
    return [
        response async for response in stack.router.Generate(request, timeout=deadline_seconds, metadata=metadata)
    ]


async def refused(stack: Stack, request: router_pb2.GenerateRequest, *, key: str = "") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await answer(stack, request, key=key)
    return error.value


async def until(condition: Callable[[], bool], tries: int = 1000) -> None:
    """Polls ``condition`` (state the fake servers' handlers change) every 5 ms until it holds."""
    for _ in range(tries):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the condition never held")


def text(responses: list[router_pb2.GenerateResponse]) -> str:
    return "".join(response.text for response in responses)


# -- static route, cache, generation: in that order ------------------------------------------------


async def test_a_static_route_answers_without_the_cache_or_the_model(stack: Stack) -> None:
    responses = await answer(stack, router_pb2.GenerateRequest(prompt="What are your opening hours?"))
    assert text(responses) == "We are open from 9 to 5."
    done = responses[-1].done
    assert (done.served_by, done.static_route) == (types_pb2.SERVED_BY_STATIC, "hours")
    assert stack.cache.lookups == [] and stack.generator.calls == []

    listed = await stack.router.ListStaticRoutes(router_pb2.ListStaticRoutesRequest(), timeout=5)
    assert [(r.name, r.regex, r.task, r.answer) for r in listed.routes] == [
        ("hours", "opening hours", "", "template"),
        ("welcome", "", "welcome", "skeleton"),
    ]


async def test_a_skeleton_sends_its_fixed_text_and_generates_only_its_free_part(stack: Stack) -> None:
    responses = await answer(stack, router_pb2.GenerateRequest(prompt="I just joined", task="welcome"))
    assert text(responses) == "Welcome aboard! Hello there. See you soon."
    assert responses[0].text == "Welcome aboard! "  # the fixed text went out before the model was asked
    assert stack.generator.prompts() == ["Greet a new runner"]
    assert [lookup.query.messages[-1].content for lookup in stack.cache.lookups] == ["Greet a new runner"]
    done = responses[-1].done
    assert (done.served_by, done.static_route, done.model) == (types_pb2.SERVED_BY_STATIC, "welcome", "small")
    assert (done.prompt_tokens, done.completion_tokens, done.finish_reason) == (5, 2, STOP)


async def test_a_cache_hit_is_replayed_without_the_model(stack: Stack) -> None:
    stack.cache.hit = cache_pb2.LookupResponse(
        hit=True,
        tier=cache_pb2.CACHE_TIER_SEMANTIC,
        similarity=0.97,
        age_seconds=12.0,
        answer=cache_pb2.CachedAnswer(
            chunks=["Cached", " answer."], prompt_tokens=3, completion_tokens=4, finish_reason=STOP
        ),
    )
    responses = await answer(stack, router_pb2.GenerateRequest(prompt="Hello?", max_tokens=50))
    assert [(r.text, r.index) for r in responses] == [("Cached answer.", 0)]  # at once: one message
    done = responses[-1].done
    assert done.served_by == types_pb2.SERVED_BY_SEMANTIC
    assert (done.similarity, done.cache_age_seconds, done.model, done.tier_reason) == (
        pytest.approx(0.97),
        12.0,
        "small",
        "cached",
    )
    assert (done.prompt_tokens, done.completion_tokens) == (3, 4)
    assert stack.generator.calls == []  # SPECULATE=always starts (and cancels) one: tests/router/test_speculation.py
    lookup = stack.cache.lookups[0]
    assert (lookup.query.tenant, lookup.query.model, lookup.max_tokens) == ("local", "small", 50)
    assert lookup.query.sampling.top_p == 1.0


async def test_a_paced_hit_keeps_its_chunks(stack: Stack) -> None:
    stack.cache.hit = cache_pb2.LookupResponse(
        hit=True,
        tier=cache_pb2.CACHE_TIER_EXACT,
        answer=cache_pb2.CachedAnswer(chunks=["One", " two"], chunk_offsets_seconds=[0.0, 0.05], finish_reason=STOP),
    )
    responses = await answer(stack, router_pb2.GenerateRequest(prompt="Count", replay=router_pb2.REPLAY_PACED))
    assert [r.text for r in responses] == ["One", " two", ""]
    assert responses[-1].done.served_by == types_pb2.SERVED_BY_EXACT
    assert responses[-1].done.total_seconds >= 0.05


async def test_a_miss_is_streamed_chunk_by_chunk_then_written_through_once(stack: Stack) -> None:
    hold = asyncio.Event()
    stack.generator.scripts["Tell me"] = Script(chunks=("First.", " Second."), hold=hold)
    stored = counted("subsecond_router_cache_stores_total", result="stored")
    stream = stack.router.Generate(router_pb2.GenerateRequest(prompt="Tell me"), timeout=5)
    first = await anext(aiter(stream))
    assert first.text == "First."  # forwarded while the model still holds the rest
    assert stack.cache.stored("Tell me") == []
    hold.set()
    rest = [response async for response in stream]
    assert [r.text for r in rest] == [" Second.", ""]
    done = rest[-1].done
    assert (done.served_by, done.model, done.tier_reason, done.coalesced) == (
        types_pb2.SERVED_BY_GENERATED,
        "small",
        "default",
        False,
    )
    await until(lambda: bool(stack.cache.stored("Tell me")))
    (store,) = stack.cache.stored("Tell me")
    assert list(store.answer.chunks) == ["First.", " Second."]
    assert (store.query.tenant, store.query.model, store.answer.finish_reason) == ("local", "small", STOP)
    assert len(store.answer.chunk_offsets_seconds) == 2
    # The fake records the Store when it arrives; the router counts it when the reply is back.
    await until(lambda: counted("subsecond_router_cache_stores_total", result="stored") == stored + 1)
    assert stack.generator.calls[0].max_tokens == 128  # the tier's default


async def test_sentence_chunking_regroups_the_stream(stack: Stack) -> None:
    stack.generator.scripts["Two sentences"] = Script(chunks=("It is", " late. Go", " home."))
    request = router_pb2.GenerateRequest(prompt="Two sentences", chunking=router_pb2.CHUNKING_SENTENCE)
    assert [r.text for r in await answer(stack, request)] == ["It is late. ", "Go home."]


async def test_a_truncated_answer_is_not_written_through(stack: Stack) -> None:
    stack.generator.scripts["Long"] = Script(finish_reason=LENGTH)
    skipped = counted("subsecond_router_cache_stores_total", result="skipped")
    responses = await answer(stack, router_pb2.GenerateRequest(prompt="Long"))
    assert responses[-1].done.finish_reason == LENGTH
    assert counted("subsecond_router_cache_stores_total", result="skipped") == skipped + 1
    await asyncio.sleep(0.1)
    assert stack.cache.stored("Long") == []


async def test_a_cancelled_call_cancels_the_generation_and_stores_nothing(stack: Stack) -> None:
    stack.generator.scripts["Slow"] = Script(hold=asyncio.Event())
    call = stack.router.Generate(router_pb2.GenerateRequest(prompt="Slow"), timeout=5)
    assert (await anext(aiter(call))).text == "Hello"
    call.cancel()
    await until(lambda: stack.generator.cancelled == ["Slow"])
    await asyncio.sleep(0.1)
    assert stack.cache.stored("Slow") == []


async def test_identical_concurrent_misses_share_one_generation(stack: Stack) -> None:
    hold = asyncio.Event()
    stack.generator.scripts["Same"] = Script(hold=hold)
    joined = counted("subsecond_router_coalesced_requests_total")
    first = asyncio.create_task(answer(stack, router_pb2.GenerateRequest(prompt="Same")))
    await until(lambda: len(stack.generator.calls) == 1)
    second = asyncio.create_task(answer(stack, router_pb2.GenerateRequest(prompt="  Same ")))  # same once normalised
    await until(lambda: counted("subsecond_router_coalesced_requests_total") == joined + 1)
    hold.set()
    answers = await asyncio.gather(first, second)
    assert [text(responses) for responses in answers] == ["Hello there.", "Hello there."]
    assert [responses[-1].done.coalesced for responses in answers] == [False, True]
    assert len(stack.generator.calls) == 1
    await until(lambda: bool(stack.cache.stored("Same")))
    await asyncio.sleep(0.05)
    assert len(stack.cache.stored("Same")) == 1


async def test_a_failing_cache_is_bypassed_and_the_answer_generated(own_stack: Stack) -> None:
    own_stack.cache.fail = grpc.StatusCode.INTERNAL
    bypassed = counted("subsecond_router_cache_bypass_total", reason="cache_service")
    responses = await answer(own_stack, router_pb2.GenerateRequest(prompt="Anyone?"))
    assert responses[-1].done.served_by == types_pb2.SERVED_BY_GENERATED
    assert counted("subsecond_router_cache_bypass_total", reason="cache_service") == bypassed + 1
    # The breaker is open now: the next request does not wait for the cache at all.
    await answer(own_stack, router_pb2.GenerateRequest(prompt="Anyone else?"))
    assert len(own_stack.cache.lookups) == 1
    assert counted("subsecond_router_cache_bypass_total", reason="cache_service") == bypassed + 2


async def test_a_stopped_cache_is_bypassed_and_the_answer_generated(own_stack: Stack) -> None:
    await own_stack.cache_server.stop(0)
    bypassed = counted("subsecond_router_cache_bypass_total", reason="cache_service")
    responses = await answer(own_stack, router_pb2.GenerateRequest(prompt="Still there?"))
    assert text(responses) == "Hello there."
    assert counted("subsecond_router_cache_bypass_total", reason="cache_service") == bypassed + 1


async def test_a_backend_the_cache_skipped_is_counted(stack: Stack) -> None:
    stack.cache.hit = cache_pb2.LookupResponse(hit=False, bypassed="qdrant")
    bypassed = counted("subsecond_router_cache_bypass_total", reason="qdrant")
    await answer(stack, router_pb2.GenerateRequest(prompt="Semantic?"))
    assert counted("subsecond_router_cache_bypass_total", reason="qdrant") == bypassed + 1


async def test_cache_bypass_neither_looks_up_nor_stores(stack: Stack) -> None:
    bypass = router_pb2.CachePolicy(mode=router_pb2.CACHE_MODE_BYPASS)
    await answer(stack, router_pb2.GenerateRequest(prompt="Private", cache=bypass))
    await asyncio.sleep(0.1)
    assert stack.cache.lookups == [] and stack.cache.stored("Private") == []


# -- every error code ------------------------------------------------------------------------------


async def test_a_bad_field_is_invalid_argument_naming_it(stack: Stack) -> None:
    invalid = counted("subsecond_router_requests_total", code="INVALID_ARGUMENT")
    error = await refused(stack, router_pb2.GenerateRequest(prompt="x", max_tokens=5000))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "max_tokens: 5000 is over the limit of 1024"
    assert counted("subsecond_router_requests_total", code="INVALID_ARGUMENT") == invalid + 1
    assert stack.cache.lookups == [] and stack.generator.calls == []


@pytest.mark.parametrize(
    "router_env", [{"API_KEYS": f"{hash_key('key-a')}=tenant-a:generate", "ALLOW_ANONYMOUS": "false"}]
)
async def test_keys_are_checked_when_configured(own_stack: Stack) -> None:
    for key, details in (("", "missing x-api-key metadata"), ("nope", "unknown x-api-key")):
        error = await refused(own_stack, router_pb2.GenerateRequest(prompt="x"), key=key)
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, details)
    await answer(own_stack, router_pb2.GenerateRequest(prompt="x"), key="key-a")
    assert own_stack.cache.lookups[0].query.tenant == "tenant-a"


@pytest.mark.parametrize("router_env", [{"TENANT_MAX_STREAMS": "1"}])
async def test_a_tenant_over_its_generation_limit_is_resource_exhausted(own_stack: Stack) -> None:
    hold = asyncio.Event()
    own_stack.generator.scripts["Hold"] = Script(hold=hold)
    holding = asyncio.create_task(answer(own_stack, router_pb2.GenerateRequest(prompt="Hold")))
    await until(lambda: len(own_stack.generator.calls) == 1)
    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="Another"))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == "tenant local has 1 generations running; retry later"
    hold.set()
    await holding
    await answer(own_stack, router_pb2.GenerateRequest(prompt="Another"))  # the slot was given back


@pytest.mark.parametrize(
    ("fail", "code", "details"),
    [
        (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, "generation unavailable: scripted UNAVAILABLE"),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "deadline exceeded while waiting for generation",
        ),
        (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INTERNAL, "generation failed (FAILED_PRECONDITION)"),
        # RESOURCE_EXHAUSTED sheds the misses that follow: tests/router/test_router_faults.py.
    ],
)
async def test_a_generation_failure_is_mapped_and_nothing_is_stored(
    stack: Stack, fail: grpc.StatusCode, code: grpc.StatusCode, details: str
) -> None:
    stack.generator.scripts["Fail"] = Script(chunks=(), fail=fail)
    before = counted("subsecond_router_requests_total", code=code.name)
    error = await refused(stack, router_pb2.GenerateRequest(prompt="Fail"))
    assert error.code() == code
    assert (error.details() or "").startswith(details)
    assert counted("subsecond_router_requests_total", code=code.name) == before + 1
    await asyncio.sleep(0.1)
    assert stack.cache.stored("Fail") == []


async def test_generation_down_is_unavailable(own_stack: Stack) -> None:
    await own_stack.generation_server.stop(0)
    error = await refused(own_stack, router_pb2.GenerateRequest(prompt="Anyone?"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert (error.details() or "").startswith("generation unavailable: ")


async def test_downstream_calls_carry_the_callers_deadline(stack: Stack) -> None:
    await answer(stack, router_pb2.GenerateRequest(prompt="Quick"), deadline_seconds=3)
    # The caller's 3 s (give or take the clocks' rounding), not DEFAULT_DEADLINE_SECONDS' 60.
    assert 0 < stack.generator.budgets[0] < 3.5


# -- workflows -------------------------------------------------------------------------------------


def step(step_id: str, prompt: str, **request: object) -> router_pb2.WorkflowStep:
    return router_pb2.WorkflowStep(id=step_id, request=router_pb2.GenerateRequest(prompt=prompt, **request))  # type: ignore[arg-type]


async def events(stack: Stack, request: router_pb2.WorkflowRequest) -> list[router_pb2.WorkflowEvent]:
    return [event async for event in stack.router.RunWorkflow(request, timeout=5)]


async def test_independent_steps_overlap_and_the_dependent_one_reads_them(stack: Stack) -> None:
    hold = asyncio.Event()
    stack.generator.scripts |= {
        "Intent of runs": Script(chunks=("runs",), hold=hold),
        "Profile of Ana": Script(chunks=("Ana",), hold=hold),
    }
    workflow = router_pb2.WorkflowRequest(
        inputs={"who": "Ana"},
        steps=[
            step("intent", "Intent of runs", max_tokens=16),
            step("profile", "Profile of {{inputs.who}}"),
            step("welcome", "Welcome {{steps.profile}}, who wants {{steps.intent}}", model="small"),
        ],
        chunking=router_pb2.CHUNKING_SENTENCE,
    )
    running = asyncio.create_task(events(stack, workflow))
    await until(lambda: len(stack.generator.calls) == 2)  # both independent steps are generating
    hold.set()
    streamed = await running
    prompts = stack.generator.prompts()
    assert sorted(prompts[:2]) == ["Intent of runs", "Profile of Ana"]
    assert prompts[2] == "Welcome Ana, who wants runs"
    assert {call.messages[-1].content: call.max_tokens for call in stack.generator.calls}["Intent of runs"] == 16
    summary = streamed[-1].summary
    assert summary.critical_path[-1] == "welcome"
    done = [event.chunk.done for event in streamed if event.chunk.HasField("done")]
    assert [d.served_by for d in done] == [types_pb2.SERVED_BY_GENERATED] * 3


async def test_a_failing_step_ends_the_workflow_and_cancels_the_others(stack: Stack) -> None:
    fail_now = asyncio.Event()
    stack.generator.scripts |= {
        "Fails": Script(chunks=("partial",), fail=grpc.StatusCode.FAILED_PRECONDITION, hold=fail_now),
        "Waits": Script(hold=asyncio.Event()),
    }
    workflow = router_pb2.WorkflowRequest(steps=[step("waits", "Waits"), step("fails", "Fails")])
    failed = counted("subsecond_router_workflows_total", code="INTERNAL")
    running = asyncio.create_task(events(stack, workflow))
    await until(lambda: len(stack.generator.calls) == 2)
    fail_now.set()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await running
    assert error.value.code() == grpc.StatusCode.INTERNAL
    details = error.value.details() or ""
    assert details.startswith("step fails failed: generation failed (FAILED_PRECONDITION)")
    assert details.endswith("; the other steps were cancelled")
    await until(lambda: stack.generator.cancelled == ["Waits"])
    assert counted("subsecond_router_workflows_total", code="INTERNAL") == failed + 1


async def test_a_bad_workflow_is_refused_naming_the_step_before_anything_runs(stack: Stack) -> None:
    cycle = router_pb2.WorkflowRequest(steps=[step("a", "{{steps.b}}"), step("b", "{{steps.a}}")])
    bad_tier = router_pb2.WorkflowRequest(steps=[step("a", "x"), step("b", "y", model="huge")])
    for workflow, details in (
        (cycle, "step a: dependency cycle among steps a, b"),
        (bad_tier, "step b: model: unknown tier 'huge'"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await events(stack, workflow)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (error.value.details() or "").startswith(details)
    assert stack.cache.lookups == [] and stack.generator.calls == []
