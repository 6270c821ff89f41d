"""What the HTTP front door adds to an exact hit, against gRPC, in the same run.

The router runs in this process as ``python -m subsecond.router`` wires it (its HTTP API on a port of
its own), in front of a cache service that answers every lookup with the same exact hit (a stand-in:
the real cache's time is the same for both protocols and would only add noise to their difference)
and no generation at all. Its near cache is off, so every request makes the real gRPC lookup.
Requests alternate between the protocols one at a time (closed loop, so neither queues behind the
other), each timed by its client from sending to the last byte: a gRPC ``Generate`` stream with
``grpc.aio``, and an HTTP ``POST /v1/chat/completions`` with aiohttp, streamed (SSE) and not.
Prints p50/p95/p99 per protocol and the median differences; writes benchmarks/results/http_front.json.

Then what tracing costs an exact hit (kit/tracing.py): with export off (the OpenTelemetry API's no-op,
as every service runs without ``OTEL_EXPORTER_OTLP_ENDPOINT``), the tracing work of one exact hit timed
alone (the caller's context read from metadata, the router's server, admission and client spans with
the context written out, the cache's server span), against the hit's p50; and the same run again with
the SDK recording every span into a batch processor whose exporter drops them (export on, minus the
network).

    .venv/bin/python benchmarks/http_front.py --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from subsecond.kit.server import start_server
from subsecond.kit.tracing import _TracedCalls, server_span, span
from subsecond.router.service import wire
from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "What is the capital of France?"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
HIT = cache_pb2.LookupResponse(
    hit=True,
    tier=cache_pb2.CACHE_TIER_EXACT,
    answer=cache_pb2.CachedAnswer(
        chunks=["Paris", " is the capital", " of France."],
        completion_tokens=8,
        finish_reason=types_pb2.FINISH_REASON_STOP,
    ),
)


class AlwaysHit(cache_pb2_grpc.CacheServicer):
    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        return HIT


class Dropped(SpanExporter):
    def export(self, spans: object) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def tracing_work_us(metadata: dict[str, str], rounds: int = 20_000) -> float:
    """Microseconds of the tracing work one exact hit does in router and cache, through the kit's own
    functions: the router's server span, its admission span, its lookup call's context, the cache's
    server span. ``metadata``: what the caller sent (with or without a ``traceparent``)."""

    class Sent:
        """The call as a channel would start it: the metadata it carries, and done at once."""

        def __init__(self, metadata: grpc.aio.Metadata | None) -> None:
            self.metadata = metadata

        def add_done_callback(self, callback: Callable[[object], None]) -> None:
            callback(self)

    def sent(request: object, *, metadata: grpc.aio.Metadata | None = None, **_: object) -> Sent:
        return Sent(metadata)

    lookup = _TracedCalls("/subsecond.v1.Cache/Lookup", sent, spans=True)
    attributes = {"rpc.system": "grpc"}
    started = time.perf_counter()
    for _ in range(rounds):
        with server_span("generate", metadata, attributes):
            with span("admission"):
                pass
            carried = lookup(None)
            with server_span("lookup", dict(carried.metadata or ()), attributes):
                pass
    return (time.perf_counter() - started) / rounds * 1e6


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50_ms": at(0.50), "p95_ms": at(0.95), "p99_ms": at(0.99), "n": len(ordered)}


async def bench(requests: int, warmup: int) -> dict[str, object]:
    cache_server = grpc.aio.server()
    cache_pb2_grpc.add_CacheServicer_to_server(AlwaysHit(), cache_server)
    cache_port = cache_server.add_insecure_port("127.0.0.1:0")
    await cache_server.start()
    settings = RouterSettings.from_env(
        {
            "SUBSECOND_ROUTER_PORT": "0",
            "SUBSECOND_ROUTER_METRICS_PORT": "0",
            "SUBSECOND_ROUTER_HTTP_PORT": "0",
            "SUBSECOND_ROUTER_CACHE_URL": f"127.0.0.1:{cache_port}",
            "SUBSECOND_ROUTER_ALLOW_ANONYMOUS": "true",
            "SUBSECOND_ROUTER_NEAR_CACHE_ENTRIES": "0",
            # Every lookup hits, on a busy machine too: no generation (there is none) and no timeout.
            "SUBSECOND_ROUTER_SPECULATE": "off",
            "SUBSECOND_ROUTER_CACHE_TIMEOUT_MS": "5000",
            "SUBSECOND_ROUTER_LOG_LEVEL": "WARNING",
        }
    )
    router = wire(settings)
    running = await start_server(settings.server, router.definition)
    assert router.http is not None
    url = f"http://127.0.0.1:{router.http.port}/v1/chat/completions"
    body = {"model": "small", "messages": [{"role": "user", "content": PROMPT}]}
    request = router_pb2.GenerateRequest(model="small", prompt=PROMPT)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel, aiohttp.ClientSession() as http:
            stub = router_pb2_grpc.RouterStub(channel)

            async def over_grpc() -> None:
                responses = [r async for r in stub.Generate(request)]
                assert responses[-1].done.served_by == types_pb2.SERVED_BY_EXACT

            async def over_http() -> None:
                async with http.post(url, json=body) as response:
                    assert response.headers["x-subsecond-served-by"] == "exact"
                    await response.read()

            async def over_sse() -> None:
                async with http.post(url, json={**body, "stream": True}) as response:
                    text = await response.read()
                    assert text.endswith(b"data: [DONE]\n\n")

            kinds: dict[str, Callable[[], Awaitable[None]]] = {"grpc": over_grpc, "http": over_http, "sse": over_sse}
            samples: dict[str, list[float]] = {kind: [] for kind in kinds}
            for i in range(warmup + requests):
                for kind, call in kinds.items():
                    started = time.perf_counter()
                    await call()
                    if i >= warmup:
                        samples[kind].append(time.perf_counter() - started)
    finally:
        await running.stop(0)
        await cache_server.stop(0)
    medians = {kind: statistics.median(values) for kind, values in samples.items()}
    return {
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "exact_hit": {kind: percentiles(values) for kind, values in samples.items()},
        "http_minus_grpc_p50_ms": (medians["http"] - medians["grpc"]) * 1000,
        "sse_minus_grpc_p50_ms": (medians["sse"] - medians["grpc"]) * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per protocol")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per protocol first")
    args = parser.parse_args()
    without = asyncio.run(tracing_work_us({}))
    with_context = asyncio.run(tracing_work_us({"traceparent": TRACEPARENT}))
    results = asyncio.run(bench(args.requests, args.warmup))
    grpc_p50_us = results["exact_hit"]["grpc"]["p50_ms"] * 1000  # type: ignore[index]
    results["tracing_export_off"] = {
        "work_us": without,
        "work_us_with_traceparent": with_context,
        "share_of_grpc_p50": without / grpc_p50_us,
        "share_of_grpc_p50_with_traceparent": with_context / grpc_p50_us,
    }
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    trace.set_tracer_provider(provider)
    recorded = asyncio.run(bench(args.requests, args.warmup))
    on = asyncio.run(tracing_work_us({"traceparent": TRACEPARENT}, rounds=2_000))
    results["tracing_export_on"] = {"exact_hit": recorded["exact_hit"], "work_us": on}
    provider.shutdown()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "http_front.json").write_text(json.dumps(results, indent=2) + "\n")
    print("| exact hit | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|")
    for kind, row in results["exact_hit"].items():  # type: ignore[attr-defined]
        print(f"| {kind} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p99_ms']:.2f} |")
    http, sse = results["http_minus_grpc_p50_ms"], results["sse_minus_grpc_p50_ms"]
    print(f"HTTP - gRPC, p50: {http:+.2f} ms (SSE: {sse:+.2f} ms)")
    off = results["tracing_export_off"]
    print(
        f"tracing, export off: {off['work_us']:.1f} us an exact hit ({off['share_of_grpc_p50']:.2%} of gRPC's p50), "
        f"{off['work_us_with_traceparent']:.1f} us with a caller's traceparent "
        f"({off['share_of_grpc_p50_with_traceparent']:.2%})"
    )
    print(f"tracing, spans recorded: {results['tracing_export_on']['work_us']:.1f} us an exact hit")
    for kind, row in results["tracing_export_on"]["exact_hit"].items():  # type: ignore[index]
        print(f"| {kind}, spans recorded | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {row['p99_ms']:.2f} |")


if __name__ == "__main__":
    main()
