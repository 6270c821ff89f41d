"""The kit's channels with export off when they are opened (no SDK provider in this process, as every
service runs without ``OTEL_EXPORTER_OTLP_ENDPOINT``): a real server in the kit's shell, on loopback."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_tracing import TRACEPARENT, Generator, serve

from subsecond.kit import tracing
from subsecond.kit.channels import open_channel
from subsecond.v1 import generation_pb2, generation_pb2_grpc


async def test_a_channel_opened_without_spans_passes_the_trace_on_and_never_makes_a_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its calls carry the current trace context, if any, and make no client span, even once spans are
    recorded: a channel decides when it is opened (the services set their provider before opening any)."""
    assert not tracing.recording()
    generator = Generator()
    server = await serve("Generator", generation_pb2_grpc.add_GeneratorServicer_to_server, generator)
    channel = open_channel(f"127.0.0.1:{server.port}", ["subsecond.v1.Generator"])
    stub = generation_pb2_grpc.GeneratorStub(channel)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("subsecond"))
    monkeypatch.setattr(tracing, "recording", lambda: True)
    try:
        [_ async for _ in stub.Generate(generation_pb2.GenerationRequest())]
        with tracing.server_span("caller", {"traceparent": TRACEPARENT}, {}) as caller:
            [_ async for _ in stub.Generate(generation_pb2.GenerationRequest())]
    finally:
        await channel.close()
        await server.stop(0)
        provider.shutdown()
    assert caller is not None
    made = caller.get_span_context()
    sent = f"00-{format(made.trace_id, '032x')}-{format(made.span_id, '016x')}-01"
    assert sent.startswith(TRACEPARENT[:36])  # the caller's span continues the trace it was given
    assert generator.traceparents == ["", sent]
    assert not [span for span in spans.get_finished_spans() if span.kind is trace.SpanKind.CLIENT]
    assert len([span for span in spans.get_finished_spans() if span.kind is trace.SpanKind.SERVER]) == 3
