"""The router's OpenAI-compatible HTTP API in-process, through OpenAI's own Python client (sync and
async, streamed and not) and raw HTTP where the wire itself is the point (headers, server-sent
events, a client that hangs up). The router is the real one as ``python -m subsecond.router``
wires it, with its HTTP port on 0; behind it the real embedding service (the int8 model, its
Redis cache on a real redis-server), and the scripted cache and generation fakes of
test_router_service.py (the real ones need Qdrant, Triton and the models)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
import openai
import pytest
from redis_server import RedisServer
from test_router_service import ROUTES, FakeCache, FakeGenerator, Script, _serve, counted, until

from subsecond.embedding.service import definition as embedding_definition
from subsecond.embedding.settings import EmbeddingSettings
from subsecond.kit.server import RunningServer, start_server
from subsecond.router.auth import hash_key
from subsecond.router.service import wire
from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, cache_pb2_grpc, generation_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.embedding_export import export_model
from subsecond_tools.stack.redis import find_redis_server

KEY = "sk-http-test"
MODEL_DIR = Path(__file__).resolve().parents[2] / ".cache" / "models" / "all-minilm-l6-v2"
EXACT_HIT = cache_pb2.LookupResponse(
    hit=True,
    tier=cache_pb2.CACHE_TIER_EXACT,
    age_seconds=3.0,
    answer=cache_pb2.CachedAnswer(
        chunks=["Paris", " it is."], prompt_tokens=7, completion_tokens=3, finish_reason=types_pb2.FINISH_REASON_STOP
    ),
)


@dataclass
class Front:
    url: str
    cache: FakeCache
    generator: FakeGenerator
    grpc: router_pb2_grpc.RouterStub
    # OpenAI's clients, without retries (a retried 429 or 503 would hide what the router said).
    client: openai.OpenAI
    async_client: openai.AsyncOpenAI


@pytest.fixture(scope="module")
async def shared_front(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Front]:
    folder = tmp_path_factory.mktemp("http")
    redis_server = RedisServer(find_redis_server(), folder)  # the embedding cache's, for the module
    redis_server.start()
    (folder / "routes.yaml").write_text(ROUTES, encoding="utf-8")
    cache, generator = FakeCache(), FakeGenerator()
    cache_server, cache_port = await _serve(lambda s: cache_pb2_grpc.add_CacheServicer_to_server(cache, s))
    generation_server, generation_port = await _serve(
        lambda s: generation_pb2_grpc.add_GeneratorServicer_to_server(generator, s)
    )
    embedding_settings = EmbeddingSettings.from_env(
        {
            "SUBSECOND_EMBEDDING_PORT": "0",
            "SUBSECOND_EMBEDDING_METRICS_PORT": "0",
            "SUBSECOND_EMBEDDING_MODEL_DIR": str(export_model(MODEL_DIR)),
            "SUBSECOND_EMBEDDING_REDIS_URL": redis_server.url,
            "SUBSECOND_EMBEDDING_MAX_TEXTS_PER_REQUEST": "4",
        }
    )
    embedding: RunningServer = await start_server(embedding_settings.server, embedding_definition(embedding_settings))
    settings = RouterSettings.from_env(
        {
            "SUBSECOND_ROUTER_PORT": "0",
            "SUBSECOND_ROUTER_METRICS_PORT": "0",
            "SUBSECOND_ROUTER_HTTP_PORT": "0",
            "SUBSECOND_ROUTER_SHUTDOWN_GRACE_SECONDS": "1",
            "SUBSECOND_ROUTER_CACHE_URL": f"127.0.0.1:{cache_port}",
            "SUBSECOND_ROUTER_GENERATION_URL": f"127.0.0.1:{generation_port}",
            "SUBSECOND_ROUTER_EMBEDDING_URL": f"127.0.0.1:{embedding.port}",
            "SUBSECOND_ROUTER_STATIC_ROUTES_FILE": str(folder / "routes.yaml"),
            "SUBSECOND_ROUTER_TIERS": "small,large",
            "SUBSECOND_ROUTER_API_KEYS": f"{hash_key(KEY)}=acme:generate",
            "SUBSECOND_ROUTER_TENANT_MAX_STREAMS": "1",
        }
    )
    router = wire(settings)
    running = await start_server(settings.server, router.definition)
    assert router.http is not None
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    url = f"http://127.0.0.1:{router.http.port}"
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    async_client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    try:
        yield Front(url, cache, generator, router_pb2_grpc.RouterStub(channel), client, async_client)
    finally:
        client.close()
        await async_client.close()
        await channel.close()
        await running.stop(0)
        await embedding.stop(0)
        await generation_server.stop(0)
        await cache_server.stop(0)
        redis_server.stop()


@pytest.fixture
def front(shared_front: Front) -> Front:
    shared_front.cache.reset()
    shared_front.generator.reset()
    return shared_front


async def post(front: Front, path: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    """A raw POST: the status, the JSON body and the headers."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            front.url + path, data=json.dumps(body), headers={"Authorization": f"Bearer {KEY}", **(headers or {})}
        ) as response,
    ):
        return response.status, await response.json(), response.headers


# -- the OpenAI client, every way it calls ---------------------------------------------------------


async def test_the_sync_client_gets_a_generated_answer_with_usage_and_the_served_by_header(front: Front) -> None:
    def ask() -> Any:
        return front.client.chat.completions.with_raw_response.create(
            model="small", messages=[{"role": "user", "content": "Say hello"}], max_tokens=20
        )

    raw = await asyncio.to_thread(ask)
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello there."
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens, completion.usage.total_tokens) == (
        5,
        2,
        7,
    )
    assert completion.model == "small"
    assert raw.headers["x-subsecond-served-by"] == "generated"
    assert completion.id == "chatcmpl-" + raw.headers["x-request-id"]
    assert completion.model_extra["subsecond"]["served_by"] == "generated"
    assert front.generator.calls[0].max_tokens == 20
    await until(lambda: len(front.cache.stored("Say hello")) == 1)  # written through, as over gRPC


async def test_the_sync_client_streams_chunks_then_the_usage(front: Front) -> None:
    def ask() -> list[Any]:
        return list(
            front.client.chat.completions.create(
                model="small", messages=[{"role": "user", "content": "Stream please"}], stream=True
            )
        )

    chunks = await asyncio.to_thread(ask)
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "Hello there."
    assert [chunk.choices[0].finish_reason for chunk in chunks][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    assert chunks[-1].model_extra["subsecond"]["served_by"] == "generated"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)


async def test_the_async_client_gets_a_cache_hit_without_the_model(front: Front) -> None:
    front.cache.hit = EXACT_HIT
    completion = await front.async_client.chat.completions.create(
        model="small", messages=[{"role": "user", "content": "Capital of France?"}]
    )
    assert completion.choices[0].message.content == "Paris it is."
    assert completion.usage is not None and completion.usage.total_tokens == 10
    extras = completion.model_extra["subsecond"]
    assert (extras["served_by"], extras["cache_age_seconds"]) == ("exact", 3.0)
    assert front.generator.calls == []


async def test_the_async_client_streams_a_text_completion(front: Front) -> None:
    stream = await front.async_client.completions.create(model="auto", prompt="Tell me", stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(chunk.choices[0].text for chunk in chunks) == "Hello there."
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert front.generator.calls[0].messages[-1].content == "Tell me"


async def test_a_text_completion_without_streaming(front: Front) -> None:
    completion = await front.async_client.completions.create(model="small", prompt=["Once"], max_tokens=5)
    assert (completion.object, completion.choices[0].text) == ("text_completion", "Hello there.")


async def test_models_lists_the_tiers_and_auto(front: Front) -> None:
    models = await front.async_client.models.list()
    assert [model.id for model in models.data] == ["small", "large", "auto"]


async def test_embeddings_come_from_the_embedding_service_in_both_encodings(front: Front) -> None:
    # The client asks for base64 by default and decodes it.
    response = await front.async_client.embeddings.create(model="all-minilm-l6-v2", input=["a cat", "a dog"])
    vectors = np.array([item.embedding for item in response.data])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    status, body, _ = await post(front, "/v1/embeddings", {"model": "any", "input": "a cat"})
    assert status == 200
    assert np.allclose(body["data"][0]["embedding"], vectors[0], atol=1e-6)
    status, body, _ = await post(front, "/v1/embeddings", {"input": ["a cat"], "encoding_format": "base64"})
    assert np.allclose(np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), "<f4"), vectors[0])


async def test_an_embedding_request_over_the_services_limit_is_a_400(front: Front) -> None:
    status, body, _ = await post(front, "/v1/embeddings", {"input": ["a"] * 5})
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"


# -- one request path for both protocols -----------------------------------------------------------


async def test_the_same_prompt_over_http_and_grpc_is_one_cache_entry(front: Front) -> None:
    """Same tenant, model, conversation, sampling and revision: gRPC asks the cache what HTTP stored,
    and is answered from it (here by the router's near cache, keyed as the cache's exact tier is)."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]
    await front.async_client.chat.completions.create(model="small", messages=messages, max_tokens=30)
    await until(lambda: len(front.cache.stored("Why is the sky blue?")) == 1)
    request = router_pb2.GenerateRequest(model="small", max_tokens=30)
    for message in messages:
        request.messages.add(role=message["role"], content=message["content"])
    responses = [r async for r in front.grpc.Generate(request, metadata=[("x-api-key", KEY)])]
    assert responses[-1].done.served_by == types_pb2.SERVED_BY_EXACT
    assert "".join(r.text for r in responses) == "Hello there."
    assert len(front.generator.calls) == 1
    [stored] = front.cache.stored("Why is the sky blue?")
    assert stored.query == front.cache.lookups[0].query
    assert stored.query.tenant == "acme"


async def test_the_subsecond_extras_set_cache_policy_task_and_chunking(front: Front) -> None:
    status, body, headers = await post(
        front,
        "/v1/chat/completions",
        {
            "model": "small",
            "messages": [{"role": "user", "content": "Fresh one"}],
            "subsecond": {"cache": "bypass", "chunking": "sentence", "task": "classify"},
        },
        headers={"x-request-id": "trace-me-42"},
    )
    assert status == 200
    assert headers["x-request-id"] == "trace-me-42"
    assert body["choices"][0]["message"]["content"] == "Hello there."
    assert front.cache.lookups == []  # bypass: not looked up ...
    await asyncio.sleep(0.05)
    assert front.cache.stored("Fresh one") == []  # ... nor stored


async def test_a_static_route_answers_over_http_too(front: Front) -> None:
    status, body, headers = await post(
        front, "/v1/chat/completions", {"messages": [{"role": "user", "content": "What are your opening hours?"}]}
    )
    assert (status, headers["x-subsecond-served-by"]) == (200, "static")
    assert body["choices"][0]["message"]["content"] == "We are open from 9 to 5."
    assert body["subsecond"]["static_route"] == "hours"


async def test_http_calls_are_counted_under_their_protocol(front: Front) -> None:
    before = counted("subsecond_router_protocol_requests_total", protocol="http", code="OK")
    grpc_before = counted("subsecond_router_protocol_requests_total", protocol="grpc", code="OK")
    await post(front, "/v1/completions", {"prompt": "Count me"})
    assert counted("subsecond_router_protocol_requests_total", protocol="http", code="OK") == before + 1
    assert counted("subsecond_router_protocol_requests_total", protocol="grpc", code="OK") == grpc_before
    assert counted("subsecond_router_http_responses_total", route="/v1/completions", status="200") >= 1


# -- errors in OpenAI's shape ----------------------------------------------------------------------


async def test_errors_have_openais_shape_and_status(front: Front) -> None:
    async with openai.AsyncOpenAI(base_url=front.url + "/v1", api_key="wrong", max_retries=0) as stranger:
        with pytest.raises(openai.AuthenticationError) as unauthenticated:
            await stranger.models.list()
    assert unauthenticated.value.status_code == 401
    assert unauthenticated.value.body == {
        "message": "unknown x-api-key",
        "type": "authentication_error",
        "param": None,
        "code": "unauthenticated",
    }
    with pytest.raises(openai.NotFoundError) as not_found:
        await front.async_client.chat.completions.create(model="huge", messages=[{"role": "user", "content": "x"}])
    assert not_found.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await front.async_client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": "x"}], max_tokens=5000
        )
    assert (bad.value.param, bad.value.body["message"]) == (  # type: ignore[index]
        "max_tokens",
        "max_tokens: 5000 is over the limit of 1024",
    )
    one = [{"role": "user", "content": "x"}]
    status, body, _ = await post(front, "/v1/chat/completions", {"messages": one, "n": 2})
    assert (status, body["error"]["param"]) == (400, "n")
    status, body, _ = await post(front, "/v1/nothing", {})
    assert (status, body["error"]["type"]) == (404, "invalid_request_error")
    async with aiohttp.ClientSession() as session, session.post(front.url + "/v1/completions", data="{not json") as r:
        assert r.status == 400
        assert (await r.json())["error"]["message"].startswith("body: not JSON")


async def test_anonymous_calls_are_refused_when_keys_are_required(front: Front) -> None:
    async with aiohttp.ClientSession() as session, session.get(front.url + "/v1/models") as response:
        assert response.status == 401
        assert (await response.json())["error"]["message"] == "missing x-api-key metadata"
    status, _, _ = await post(front, "/v1/completions", {"prompt": "x"}, headers={"Authorization": "Bearer nope"})
    assert status == 401


async def test_a_miss_over_the_tenants_limit_is_a_429_with_retry_after(front: Front) -> None:
    hold = asyncio.Event()
    front.generator.scripts["Hold"] = Script(hold=hold)
    holding = asyncio.create_task(post(front, "/v1/completions", {"prompt": "Hold"}))
    await until(lambda: len(front.generator.calls) == 1)
    with pytest.raises(openai.RateLimitError) as limited:
        await front.async_client.completions.create(model="small", prompt="Another")
    assert limited.value.response.headers["Retry-After"] == "1"
    assert limited.value.body["message"] == "tenant acme has 1 generations running; retry later"
    hold.set()
    status, _, _ = await holding
    assert status == 200


@pytest.mark.parametrize(("fail", "status"), [(grpc.StatusCode.UNAVAILABLE, 503), (grpc.StatusCode.ABORTED, 500)])
async def test_a_generation_failure_before_any_text_is_its_status(
    front: Front, fail: grpc.StatusCode, status: int
) -> None:
    front.generator.scripts["Fail"] = Script(chunks=(), fail=fail)
    got, body, _ = await post(front, "/v1/completions", {"prompt": "Fail"})
    assert got == status
    assert body["error"]["code"] == ("unavailable" if status == 503 else "internal")


async def test_a_failure_after_the_stream_started_ends_it_with_an_error_event(front: Front) -> None:
    front.generator.scripts["Half"] = Script(chunks=("Half",), fail=grpc.StatusCode.ABORTED)
    with pytest.raises(openai.APIError) as failed:
        stream = await front.async_client.chat.completions.create(
            model="small", messages=[{"role": "user", "content": "Half"}], stream=True
        )
        [chunk async for chunk in stream]
    assert failed.value.message.startswith("generation failed (ABORTED)")


# -- a client that goes away ------------------------------------------------------------------------


async def test_a_client_that_disconnects_cancels_the_generation(front: Front) -> None:
    hold = asyncio.Event()
    front.generator.scripts["Leave"] = Script(chunks=("First", " never"), hold=hold)
    async with aiohttp.ClientSession() as session:
        response = await session.post(
            front.url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Leave"}], "stream": True},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        first = await response.content.readline()
        assert json.loads(first.removeprefix(b"data: "))["choices"][0]["delta"]["content"] == "First"
        response.close()  # hangs up with the generation still running
    await until(lambda: front.generator.cancelled == ["Leave"])
    await asyncio.sleep(0.05)
    assert front.cache.stored("Leave") == []
    hold.set()


async def test_health_and_readiness(front: Front) -> None:
    async with aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz"):
            async with session.get(front.url + path) as response:
                assert response.status == 200
