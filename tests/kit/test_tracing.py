"""Traces across the four hops, in-process: the real router (its HTTP API and gRPC) and, behind it, a
cache, an embedding and a generation service that are small scripted servicers (the real ones need
Redis, Qdrant, the models and Triton) run in the kit's own server shell and call each other through
the kit's channels, so every hop is a real gRPC call with the kit's tracing on both sides. Spans go to
an in-memory exporter under the OpenTelemetry SDK."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from subsecond.kit import tracing
from subsecond.kit.channels import open_channel
from subsecond.kit.server import RunningServer, ServiceDefinition, start_server
from subsecond.kit.settings import ServerSettings
from subsecond.kit.tracing import _add_trace_ids, export_requested
from subsecond.router.service import wire
from subsecond.router.settings import RouterSettings
from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    types_pb2,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
SHELL = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_seconds=0, log_level="INFO")


class Embedder(embedding_pb2_grpc.EmbedderServicer):
    async def Embed(self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext) -> Any:
        return embedding_pb2.EmbedResponse(embeddings=[embedding_pb2.Embedding(values=[1.0, 0.0])], dimensions=2)


class Cache(cache_pb2_grpc.CacheServicer):
    """Misses every lookup after embedding the prompt, as the real cache's semantic tier does."""

    def __init__(self, embedder: embedding_pb2_grpc.EmbedderStub) -> None:
        self.embedder = embedder
        self.stored = asyncio.Event()

    async def Lookup(self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext) -> Any:
        await self.embedder.Embed(embedding_pb2.EmbedRequest(texts=[request.query.messages[-1].content]))
        return cache_pb2.LookupResponse(hit=False)

    async def Store(self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext) -> Any:
        self.stored.set()
        return cache_pb2.StoreResponse(key="k")


class Generator(generation_pb2_grpc.GeneratorServicer):
    def __init__(self) -> None:
        # The traceparent of each call, as it arrived ("" for none).
        self.traceparents: list[str] = []

    async def Generate(
        self, request: generation_pb2.GenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        self.traceparents.append(dict(context.invocation_metadata() or ()).get("traceparent", ""))  # type: ignore[arg-type]
        yield generation_pb2.GenerationChunk(text="Hello.")
        yield generation_pb2.GenerationChunk(
            done=generation_pb2.GenerationDone(
                finish_reason=types_pb2.FINISH_REASON_STOP, prompt_tokens=3, completion_tokens=2
            )
        )


@dataclass
class Hops:
    http_url: str
    router: router_pb2_grpc.RouterStub
    cache: Cache
    generator: Generator
    spans: InMemorySpanExporter


async def serve(service: str, add: object, servicer: object) -> RunningServer:
    """One of the stand-in servicers above in the kit's server shell (the tracing tests share it)."""
    descriptor = {"Embedder": embedding_pb2, "Cache": cache_pb2, "Generator": generation_pb2}[service]
    definition = ServiceDefinition.for_servicer(
        descriptor.DESCRIPTOR.services_by_name[service],
        add,  # type: ignore[arg-type]
        servicer,
    )
    return await start_server(SHELL, definition)


@pytest.fixture(scope="module")
async def hops() -> AsyncIterator[Hops]:
    # The kit's tracer from an SDK provider of this module's own, recording into memory: not the
    # process's global provider, which the API lets a process set once, for every later test too.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracing, "tracer", provider.get_tracer("subsecond"))
        patch.setattr(tracing, "recording", lambda: True)
        async with _hops(spans) as running:
            yield running
    provider.shutdown()


@asynccontextmanager
async def _hops(spans: InMemorySpanExporter) -> AsyncIterator[Hops]:
    embedding = await serve("Embedder", embedding_pb2_grpc.add_EmbedderServicer_to_server, Embedder())
    embedding_channel = open_channel(f"127.0.0.1:{embedding.port}", ["subsecond.v1.Embedder"], SHELL)
    cache = Cache(embedding_pb2_grpc.EmbedderStub(embedding_channel))
    cache_server = await serve("Cache", cache_pb2_grpc.add_CacheServicer_to_server, cache)
    generator = Generator()
    generation = await serve("Generator", generation_pb2_grpc.add_GeneratorServicer_to_server, generator)
    settings = RouterSettings.from_env(
        {
            "SUBSECOND_ROUTER_PORT": "0",
            "SUBSECOND_ROUTER_METRICS_PORT": "0",
            "SUBSECOND_ROUTER_HTTP_PORT": "0",
            "SUBSECOND_ROUTER_SHUTDOWN_GRACE_SECONDS": "1",
            "SUBSECOND_ROUTER_CACHE_URL": f"127.0.0.1:{cache_server.port}",
            "SUBSECOND_ROUTER_GENERATION_URL": f"127.0.0.1:{generation.port}",
            "SUBSECOND_ROUTER_ALLOW_ANONYMOUS": "true",
            "SUBSECOND_ROUTER_NEAR_CACHE_ENTRIES": "0",
        }
    )
    router = wire(settings)
    running = await start_server(settings.server, router.definition)
    assert router.http is not None
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield Hops(
            f"http://127.0.0.1:{router.http.port}", router_pb2_grpc.RouterStub(channel), cache, generator, spans
        )
    finally:
        await channel.close()
        await running.stop(0)
        for server in (generation, cache_server, embedding):
            await server.stop(0)
        await embedding_channel.close()


def by_name(spans: tuple[ReadableSpan, ...], trace_id: str) -> dict[tuple[str, trace.SpanKind], list[ReadableSpan]]:
    """The trace's spans by name and kind (a hop may be made more than once: the cache's two lookups)."""
    found: dict[tuple[str, trace.SpanKind], list[ReadableSpan]] = {}
    for span in spans:
        assert span.context is not None
        if format(span.context.trace_id, "032x") == trace_id:
            found.setdefault((span.name, span.kind), []).append(span)
    return found


def ids(spans: list[ReadableSpan]) -> set[int]:
    return {span.context.span_id for span in spans if span.context is not None}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_miss_over_http_is_one_trace_across_router_cache_embedding_and_generation(hops: Hops) -> None:
    hops.spans.clear()
    hops.cache.stored.clear()
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            hops.http_url + "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "Trace me"}]},
            headers={"traceparent": TRACEPARENT},
        ) as response,
    ):
        assert response.status == 200
    await asyncio.wait_for(hops.cache.stored.wait(), 5)  # the write-through, after the last chunk
    await asyncio.sleep(0.1)  # its spans end when its call does
    spans = by_name(hops.spans.get_finished_spans(), TRACE_ID)
    server, client = trace.SpanKind.SERVER, trace.SpanKind.CLIENT
    [http] = spans[("POST /v1/chat/completions", server)]
    assert parent_of(http) == int(PARENT_ID, 16)  # continues the caller's trace
    [admission] = spans[("admission", trace.SpanKind.INTERNAL)]
    assert parent_of(admission) in ids([http])
    # Every hop: a client span in the caller, the callee's server span its child.
    for method in (
        "subsecond.v1.Cache/Lookup",
        "subsecond.v1.Embedder/Embed",
        "subsecond.v1.Generator/Generate",
        "subsecond.v1.Cache/Store",
    ):
        for callee in spans[(method, server)]:
            assert parent_of(callee) in ids(spans[(method, client)]), method
    # The cache's calls to the embedding service are made inside its lookups, the router's calls in its request.
    for embed in spans[("subsecond.v1.Embedder/Embed", client)]:
        assert parent_of(embed) in ids(spans[("subsecond.v1.Cache/Lookup", server)])
    for call in spans[("subsecond.v1.Cache/Lookup", client)] + spans[("subsecond.v1.Generator/Generate", client)]:
        assert parent_of(call) in ids([http])
    [generate] = spans[("subsecond.v1.Generator/Generate", server)]
    assert generate.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "subsecond.v1.Generator",
        "rpc.method": "Generate",
    }


async def test_a_grpc_call_continues_the_trace_of_its_metadata(hops: Hops) -> None:
    hops.spans.clear()
    request = router_pb2.GenerateRequest(prompt="Trace me too", cache=router_pb2.CachePolicy(mode=1))
    [_ async for _ in hops.router.Generate(request, metadata=[("traceparent", TRACEPARENT)])]
    spans = by_name(hops.spans.get_finished_spans(), TRACE_ID)
    [generate] = spans[("subsecond.v1.Router/Generate", trace.SpanKind.SERVER)]
    assert parent_of(generate) == int(PARENT_ID, 16)
    assert ("subsecond.v1.Generator/Generate", trace.SpanKind.SERVER) in spans
    assert ("subsecond.v1.Cache/Lookup", trace.SpanKind.CLIENT) not in spans  # cache: bypass


async def test_without_recording_a_callers_trace_still_reaches_every_hop(
    hops: Hops, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export off (no SDK provider: here, recording patched off): no span is made, but the caller's
    trace context is passed on unchanged, and a call without one sends none."""
    monkeypatch.setattr(tracing, "recording", lambda: False)
    hops.spans.clear()
    hops.generator.traceparents.clear()
    request = router_pb2.GenerateRequest(prompt="Pass it on", cache=router_pb2.CachePolicy(mode=1))
    [_ async for _ in hops.router.Generate(request, metadata=[("traceparent", TRACEPARENT)])]
    request.prompt = "Nothing to pass on"
    [_ async for _ in hops.router.Generate(request)]
    assert hops.generator.traceparents == [TRACEPARENT, ""]
    assert hops.spans.get_finished_spans() == ()


def test_log_records_carry_the_current_trace() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "message", None, None)
    with TracerProvider().get_tracer("test").start_as_current_span("work") as span:
        _add_trace_ids(record)
    assert record.trace_id == format(span.get_span_context().trace_id, "032x")  # type: ignore[attr-defined]
    outside = logging.LogRecord("x", logging.INFO, __file__, 1, "message", None, None)
    _add_trace_ids(outside)
    assert not hasattr(outside, "trace_id")


@pytest.mark.parametrize(
    ("environ", "exported"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
def test_export_is_off_unless_the_standard_variables_ask(environ: dict[str, str], exported: bool) -> None:
    assert export_requested(environ) is exported
