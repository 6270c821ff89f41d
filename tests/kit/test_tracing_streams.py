"""Server spans of server-streaming calls, on a real gRPC server in the kit's shell with spans recorded
by the OpenTelemetry SDK into memory: a stream read to its end, one the client cancels in the middle
(gRPC then closes the handler's generator from another task, in another context than the one its span
was made current in) and one whose handler fails. Each span must end exactly once, with the status of
how its call ended, and OpenTelemetry must never log that it failed to detach a context."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_tracing import serve

from subsecond.kit import tracing
from subsecond.kit.channels import open_channel
from subsecond.kit.errors import Internal
from subsecond.v1 import generation_pb2, generation_pb2_grpc

METHOD = "subsecond.v1.Generator/Generate"
CHUNKS = 20


class Streamer(generation_pb2_grpc.GeneratorServicer):
    """Streams CHUNKS chunks a few milliseconds apart, or fails after the first when the model asks."""

    def __init__(self) -> None:
        # Each call's trace id, as seen by the handler at every chunk: the span must be current in it.
        self.trace_ids: list[set[int]] = []

    async def Generate(
        self, request: generation_pb2.GenerationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[generation_pb2.GenerationChunk]:
        seen: set[int] = set()
        self.trace_ids.append(seen)
        for index in range(CHUNKS):
            seen.add(trace.get_current_span().get_span_context().trace_id)
            if index == 1 and request.model == "fail":
                raise Internal("the stream broke")
            # Large enough that a client that stops reading leaves the handler waiting at its yield.
            yield generation_pb2.GenerationChunk(text=f"{index} " + "x" * 200_000)
            await asyncio.sleep(0.002)


async def _finished(spans: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    """The server spans, once ``count`` of them have ended (a cancelled call's ends after the client
    has gone), and a little longer, so that a span ended twice would show."""
    for _ in range(500):
        server = [span for span in spans.get_finished_spans() if span.kind is trace.SpanKind.SERVER]
        if len(server) >= count:
            await asyncio.sleep(0.05)
            return [span for span in spans.get_finished_spans() if span.kind is trace.SpanKind.SERVER]
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} server spans never ended")


async def test_streamed_calls_end_their_server_span_once_without_detaching_in_another_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    streamer = Streamer()
    with pytest.MonkeyPatch.context() as patch, caplog.at_level(logging.ERROR, logger="opentelemetry.context"):
        patch.setattr(tracing, "tracer", provider.get_tracer("subsecond"))
        patch.setattr(tracing, "recording", lambda: True)
        running = await serve("Generator", generation_pb2_grpc.add_GeneratorServicer_to_server, streamer)
        channel = open_channel(f"127.0.0.1:{running.port}", ["subsecond.v1.Generator"])
        stub = generation_pb2_grpc.GeneratorStub(channel)
        try:
            rounds = 8
            for _ in range(rounds):
                whole = [chunk async for chunk in stub.Generate(generation_pb2.GenerationRequest(model="all"))]
                assert len(whole) == CHUNKS
                call: Any = stub.Generate(generation_pb2.GenerationRequest(model="cancel"))
                await call.read()
                await asyncio.sleep(0.05)  # the server's writes now wait for the client to read
                call.cancel()
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    [_ async for _ in stub.Generate(generation_pb2.GenerationRequest(model="fail"))]
                assert failed.value.code() is grpc.StatusCode.INTERNAL
            server = await _finished(spans, 3 * rounds)
        finally:
            await channel.close()
            await running.stop(0)
            provider.shutdown()
    assert len(server) == 3 * rounds  # each ended once
    assert len({span.context.span_id for span in server if span.context is not None}) == 3 * rounds
    assert all(span.name == METHOD for span in server)
    statuses = sorted(span.status.status_code.name for span in server)
    # Read to the end and cancelled by the client: unset, as OpenTelemetry's gRPC conventions have a
    # server's CANCELLED; failed: an error.
    assert statuses == ["ERROR"] * rounds + ["UNSET"] * 2 * rounds
    # The handler ran in its call's span at every chunk, each call in a trace of its own.
    assert all(len(seen) == 1 and 0 not in seen for seen in streamer.trace_ids)
    assert {span.context.trace_id for span in server if span.context is not None} == set().union(*streamer.trace_ids)
    detach_failures = [record for record in caplog.records if record.name == "opentelemetry.context"]
    assert detach_failures == [], [record.getMessage() for record in detach_failures]
