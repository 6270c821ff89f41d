"""Where a miss's time to first chunk goes: the real stack, traced, one miss at a time.

Starts the stack (``Stack``, TLS, as ``make bench`` runs it) with its spans exported over OTLP to a
collector in this process, and sends misses one after another, each kind in turn (the order rotates):

- ``bypassed``: through the router with ``cache: bypass`` (client -> router -> generation -> Triton);
- ``cache_on``: through the router with the cache on (the lookup first, then the generation);
- ``generation``: straight to the generation service, as the router calls it (its certificate);
- ``triton``: straight to Triton, as the generation service calls it (chat template, entry model).

Every router and generation-service call carries a trace context made here, so its spans can be
found: the router's server span (it received the call), its client spans (to the cache, to the
generation service), the generation service's server span and the events it adds ("triton request
sent", "triton first response", "first chunk"), and the router's "generation first chunk". The
client's own clock (the same wall clock: one machine) gives the send and the first chunk received.
Prints the median of each stage over the misses and the paired medians of first chunk against Triton
directly (the same pairing as ``benchmarks/serving.py``); writes ``benchmarks/results/miss_path.json``.

``--semantic N`` traces semantic hits instead (no misses): serving.py's semantic row, N fresh
paraphrases of stored questions at ``--semantic-rate`` open-loop through the router, each with a
trace context. A hit's marks are the router's spans, the cache service's span and the events it adds
("exact read", "embedding received", "searched", "judged", "answer read"), and the embedding
service's span of the cache's call; writes ``benchmarks/results/miss_path_semantic.json``.

    .venv/bin/python benchmarks/miss_path.py --misses 30
    .venv/bin/python benchmarks/miss_path.py --semantic 80
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import os
import random
import secrets
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

# benchmarks/serving.py, beside this script: its semantic-hit row, measured here in the same stack.
from serving import DATA, STORED_ANSWER, cache_query, first_and_total, forget_embeddings, open_loop, prompt
from tritonclient.grpc import service_pb2, service_pb2_grpc

from subsecond.generation.entry_model import EntryModel, is_final
from subsecond.generation.prompts import ModelPrompt
from subsecond.kit.prompt_identity import Sampling
from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    types_pb2,
)
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

log = logging.getLogger("miss_path")
RESULTS = Path(__file__).resolve().parent / "results"
MAX_TOKENS = 8
KINDS = ("bypassed", "cache_on", "generation", "triton")
# The cache service's events on its Lookup span, in the order a semantic hit reaches them.
CACHE_EVENTS = ("embedding received", "searched", "judged", "answer read")


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP trace receiver keeping every span's start, end and events by trace id."""

    def __init__(self) -> None:
        self.spans: dict[str, list[Span]] = defaultdict(list)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource in request.resource_spans:
            service = next(
                (a.value.string_value for a in resource.resource.attributes if a.key == "service.name"), "?"
            )
            for scope in resource.scope_spans:
                for span in scope.spans:
                    self.spans[span.trace_id.hex()].append(
                        Span(
                            service=service,
                            name=span.name,
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            start=span.start_time_unix_nano,
                            end=span.end_time_unix_nano,
                            events={event.name: event.time_unix_nano for event in span.events},
                        )
                    )
        return trace_service_pb2.ExportTraceServiceResponse()


@dataclass
class Span:
    service: str
    name: str
    span_id: str
    parent_id: str
    start: int
    end: int
    events: dict[str, int] = field(default_factory=dict)


@dataclass
class Miss:
    kind: str
    trace_id: str
    sent: int  # time.time_ns() at the client
    first: int


def traceparent() -> tuple[str, tuple[tuple[str, str], ...]]:
    trace_id = secrets.token_hex(16)
    return trace_id, (("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01"),)


def question(i: int) -> str:
    # A fresh prefix each time: llama.cpp reuses the KV cache of a shared prompt prefix.
    return f"({uuid.uuid4().hex[:8]}) Tell me a fact about the number {i + 17}."


async def through_router(stub: router_pb2_grpc.RouterStub, kind: str, i: int) -> Miss:
    request = router_pb2.GenerateRequest(prompt=question(i), max_tokens=MAX_TOKENS)
    if kind == "bypassed":
        request.cache.mode = router_pb2.CACHE_MODE_BYPASS
    trace_id, metadata = traceparent()
    sent, first = time.time_ns(), 0
    async for response in stub.Generate(request, metadata=metadata, timeout=60):
        if not first and (response.text or response.HasField("done")):
            first = time.time_ns()
        if response.HasField("done") and response.done.served_by != types_pb2.SERVED_BY_GENERATED:
            raise RuntimeError(f"a unique prompt was not generated: {request.prompt!r}")
    return Miss(kind, trace_id, sent, first)


async def to_generation(stub: generation_pb2_grpc.GeneratorStub, i: int) -> Miss:
    request = generation_pb2.GenerationRequest(
        model="small",
        messages=[types_pb2.ChatMessage(role="user", content=question(i))],
        max_tokens=MAX_TOKENS,
        sampling=types_pb2.SamplingParams(top_p=1.0),
    )
    trace_id, metadata = traceparent()
    sent, first = time.time_ns(), 0
    async for chunk in stub.Generate(request, metadata=metadata, timeout=60):
        if not first and (chunk.text or chunk.HasField("done")):
            first = time.time_ns()
    return Miss("generation", trace_id, sent, first)


async def to_triton(
    client: service_pb2_grpc.GRPCInferenceServiceStub, entry: EntryModel, prompt: ModelPrompt, i: int
) -> Miss:
    text = prompt.render([{"role": "user", "content": question(i)}])
    request = entry.request(text, MAX_TOKENS, Sampling())
    finished = asyncio.Event()

    async def requests():  # type: ignore[no-untyped-def]
        yield request
        await finished.wait()

    sent, first = time.time_ns(), 0
    responses = client.ModelStreamInfer(requests())
    async for response in responses:
        if response.error_message:
            raise RuntimeError(response.error_message)
        if not first:
            first = time.time_ns()
        if is_final(response.infer_response):
            break
    finished.set()
    responses.cancel()
    return Miss("triton", "", sent, first)


def stages(miss: Miss, spans: list[Span]) -> dict[str, float]:
    """Milliseconds between the marks of one traced miss (client clock and spans' clocks alike)."""
    by_name: dict[tuple[str, str], Span] = {}
    for span in spans:
        by_name.setdefault((span.service, span.name), span)
    marks: list[tuple[str, int]] = [("client sent", miss.sent)]
    beside: dict[str, float] = {}  # stages that run beside the chain of marks
    router = by_name.get(("subsecond-router", "subsecond.v1.Router/Generate"))
    lookup = [s for s in spans if s.service == "subsecond-router" and s.name.endswith("Cache/Lookup")]
    to_gen = next((s for s in spans if s.service == "subsecond-router" and s.name.endswith("Generator/Generate")), None)
    gen = by_name.get(("subsecond-generation", "subsecond.v1.Generator/Generate"))
    if router is not None:
        marks.append(("router received", router.start))
    if lookup:
        marks.append(("lookup sent", min(s.start for s in lookup)))
        # Inside the cache service: its call received, its call to the embedding service (the exact
        # tier's Redis GET runs beside it, timed apart below), the embedding service's span of that
        # call, then the cache's events: the vector search, the guard and verifier, the answer's GET.
        cache = by_name.get(("subsecond-cache", "subsecond.v1.Cache/Lookup"))
        embed = by_name.get(("subsecond-cache", "subsecond.v1.Embedder/Embed"))
        embedder = next(
            (s for s in spans if s.service == "subsecond-embedding" and embed and s.parent_id == embed.span_id), None
        )
        if cache is not None:
            marks.append(("cache received", cache.start))
        if embed is not None:
            marks.append(("cache called embedding", embed.start))
        if embedder is not None:
            marks.append(("embedding service received", embedder.start))
            marks.append(("embedding service answered", embedder.end))
        if cache is not None:
            marks.extend((f"cache: {event}", cache.events[event]) for event in CACHE_EVENTS if event in cache.events)
            marks.append(("cache answered", cache.end))
            if "exact read" in cache.events:
                beside["cache: exact GET (beside the embedding)"] = (cache.events["exact read"] - cache.start) / 1e6
        marks.append(("lookup answered", max(s.end for s in lookup)))
    if to_gen is not None:
        marks.append(("router called generation", to_gen.start))
    if gen is not None:
        marks.append(("generation received", gen.start))
        for event in ("triton request sent", "triton first response", "first chunk"):
            if event in gen.events:
                marks.append((f"generation: {event}", gen.events[event]))
    if router is not None and "generation first chunk" in router.events:
        marks.append(("router got first chunk", router.events["generation first chunk"]))
    marks.append(("client got first chunk", miss.first))
    out = {f"{a} -> {b}": (tb - ta) / 1e6 for (a, ta), (b, tb) in itertools.pairwise(marks)}
    out["total"] = (miss.first - miss.sent) / 1e6
    out.update(beside)
    if gen is not None and {"triton request sent", "triton first response"} <= gen.events.keys():
        # Robust to Triton's own spread: everything but Triton's time to its first response.
        triton = gen.events["triton first response"] - gen.events["triton request sent"]
        out["total outside Triton"] = out["total"] - triton / 1e6
    return out


async def run(args: argparse.Namespace) -> dict[str, object]:
    collector = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    otlp_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    environment = {
        "SUBSECOND_ROUTER_PROCESSES": str(args.router_processes),
        "SUBSECOND_ROUTER_SPECULATE": args.speculate,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "500",
        **{f"SUBSECOND_ROUTER_{name}": value for name, value in args.router_env},
    }
    if not args.traced:
        environment = {k: v for k, v in environment.items() if not k.startswith("OTEL_")}
    run_dir = Path(tempfile.mkdtemp(prefix="subsecond-miss-path-"))
    stack = Stack(StackConfig(ports=Ports.free(), run_dir=run_dir, environment=environment, tls=args.tls))
    log.info("starting the stack (logs in %s)", run_dir)
    await stack.start()
    misses: list[Miss] = []
    try:
        async with (
            stack.channel("router", as_service=None) as router_channel,
            stack.channel("generation", as_service="router") as generation_channel,
            stack.channel("cache") as cache_channel,
        ):
            router = router_pb2_grpc.RouterStub(router_channel)
            generation = generation_pb2_grpc.GeneratorStub(generation_channel)
            if args.semantic:
                traced = await traced_semantic_hits(stack, router, cache_pb2_grpc.CacheStub(cache_channel), args)
                await asyncio.sleep(1.5)  # the last spans exported
                return semantic_report(traced, collector, args)
            if args.semantic_hits:
                semantic = await semantic_hits(stack, router, cache_pb2_grpc.CacheStub(cache_channel), args)
            triton_channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.ports.triton_grpc}")
            triton = service_pb2_grpc.GRPCInferenceServiceStub(triton_channel)
            config = await triton.ModelConfig(service_pb2.ModelConfigRequest(name="smollm2"))
            entry = EntryModel.from_config(config.config)
            prompt = ModelPrompt.load(stack.config.tokenizer_root / "smollm2")
            one: dict[str, Callable[[int], object]] = {
                "bypassed": lambda i: through_router(router, "bypassed", i),
                "cache_on": lambda i: through_router(router, "cache_on", i),
                "generation": lambda i: to_generation(generation, i),
                "triton": lambda i: to_triton(triton, entry, prompt, i),
            }
            for i in range(-2, args.misses):  # two warm-up rounds, not kept
                for k in range(len(KINDS)):
                    kind = KINDS[(i + k) % len(KINDS)]
                    miss = await one[kind](i)  # type: ignore[misc]
                    if i >= 0:
                        misses.append(miss)
                    await asyncio.sleep(args.pause)  # the write-through and any other after-work end first
            await triton_channel.close()
        await asyncio.sleep(1.5)  # the last spans exported
        speculative = await speculative_counts(stack)
    finally:
        await stack.stop()
        await server.stop(None)
    results = report(misses, collector, args)
    if args.semantic_hits:
        results["semantic_hit"] = semantic
    results["speculative_generations"] = speculative
    return results


async def hitting_paraphrases(stack: Stack, cache: cache_pb2_grpc.CacheStub, wanted: int) -> list[str]:
    """As benchmarks/serving.py's semantic-hit row: answers stored under one side of QQP duplicate
    pairs, the other sides that are semantic hits (at most ``wanted``), their embeddings forgotten."""
    lines = (DATA / "qqp_duplicates_dev.jsonl").read_text().splitlines()
    pairs = [json.loads(line) for line in random.Random(7).sample(lines, 2 * wanted)]
    hitting = []
    for pair in pairs:
        # On a loaded machine a call may time out (the cache's Redis): that pair is left out.
        try:
            await cache.Store(cache_pb2.StoreRequest(query=cache_query(pair["a"]), answer=STORED_ANSWER))
            lookup = await cache.Lookup(cache_pb2.LookupRequest(query=cache_query(pair["b"]), semantic=True))
        except grpc.aio.AioRpcError as error:
            log.warning("pair left out: %s", error.details())
            continue
        if lookup.hit and lookup.tier == cache_pb2.CACHE_TIER_SEMANTIC:
            hitting.append(pair["b"])
    await forget_embeddings(stack.redis_url)
    return hitting[:wanted]


async def semantic_hits(
    stack: Stack, router: router_pb2_grpc.RouterStub, cache: cache_pb2_grpc.CacheStub, args: argparse.Namespace
) -> dict[str, float]:
    """benchmarks/serving.py's semantic-hit row: fresh paraphrases of stored questions, open loop."""
    hitting = await hitting_paraphrases(stack, cache, args.semantic_hits)
    log.info("semantic hits: %d distinct paraphrases at %.0f/s", len(hitting), args.semantic_rate)

    async def one(i: int, t0: float) -> int:
        return (await first_and_total(router, prompt(hitting[i]), t0))[2]

    return await open_loop(args.semantic_rate, len(hitting), types_pb2.SERVED_BY_SEMANTIC, one)


async def traced_semantic_hits(
    stack: Stack, router: router_pb2_grpc.RouterStub, cache: cache_pb2_grpc.CacheStub, args: argparse.Namespace
) -> tuple[dict[str, float], list[Miss]]:
    """The semantic-hit row with a trace context on each request: its latencies and each hit's marks
    at the client (those served otherwise are counted by open_loop, not traced)."""
    hitting = await hitting_paraphrases(stack, cache, args.semantic)
    log.info("traced semantic hits: %d distinct paraphrases at %.0f/s", len(hitting), args.semantic_rate)
    hits: list[Miss] = []

    async def one(i: int, t0: float) -> int:
        trace_id, metadata = traceparent()
        sent, first = time.time_ns(), 0
        async for response in router.Generate(prompt(hitting[i]), metadata=metadata, timeout=60):
            if not first and (response.text or response.HasField("done")):
                first = time.time_ns()
            if response.HasField("done"):
                if response.done.served_by == types_pb2.SERVED_BY_SEMANTIC:
                    hits.append(Miss("semantic", trace_id, sent, first))
                return response.done.served_by
        raise RuntimeError("stream ended without done")

    latency = await open_loop(args.semantic_rate, len(hitting), types_pb2.SERVED_BY_SEMANTIC, one)
    return latency, hits


def semantic_report(
    traced: tuple[dict[str, float], list[Miss]], collector: Collector, args: argparse.Namespace
) -> dict[str, object]:
    """The traced hits' latency (open loop, from each scheduled start) and the median of each stage."""
    latency, hits = traced
    per_stage: dict[str, list[float]] = defaultdict(list)
    for hit in hits if args.traced else ():
        for stage, ms in stages(hit, collector.spans.get(hit.trace_id, [])).items():
            per_stage[stage].append(ms)
    return {
        "semantic_hits": latency,
        "traced_hits": len(hits) if args.traced else 0,
        "router_processes": args.router_processes,
        "router_env": dict(args.router_env),
        "tls": args.tls,
        "load_average_before": list(args.load_before),
        "load_average_after": list(os.getloadavg()),
        "stages_p50_ms": {stage: round(statistics.median(values), 2) for stage, values in per_stage.items()},
    }


async def speculative_counts(stack: Stack) -> dict[str, float]:
    """The router's speculative generations by outcome, from its metrics page."""
    url = f"{'https' if stack.ca_file else 'http'}://127.0.0.1:{stack.config.ports.router_metrics}/metrics"
    page = await asyncio.to_thread(
        lambda: urllib.request.urlopen(url, context=stack.metrics_ssl_context(), timeout=10).read().decode()
    )
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(page):
        if family.name.startswith("subsecond_router_speculative_"):
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[sample.labels.get("outcome", "wasted_prompt_tokens")] = sample.value
    return counts


def report(misses: list[Miss], collector: Collector, args: argparse.Namespace) -> dict[str, object]:
    by_kind: dict[str, list[Miss]] = defaultdict(list)
    for miss in misses:
        by_kind[miss.kind].append(miss)
    results: dict[str, object] = {
        "misses_per_kind": args.misses,
        "traced": args.traced,
        "speculate": args.speculate,
        "router_processes": args.router_processes,
        "router_env": dict(args.router_env),
        "tls": args.tls,
        "load_average_before": list(args.load_before),
        "load_average_after": list(os.getloadavg()),
    }
    triton = [(m.first - m.sent) / 1e6 for m in by_kind["triton"]]
    for kind in KINDS:
        totals = [(m.first - m.sent) / 1e6 for m in by_kind[kind]]
        entry: dict[str, object] = {"first_chunk_p50_ms": round(statistics.median(totals), 2)}
        if kind != "triton":
            entry["added_over_triton_median_of_pairs_ms"] = round(
                statistics.median(a - b for a, b in zip(totals, triton, strict=True)), 2
            )
        if args.traced and kind != "triton":
            per_stage: dict[str, list[float]] = defaultdict(list)
            for miss in by_kind[kind]:
                for stage, ms in stages(miss, collector.spans.get(miss.trace_id, [])).items():
                    per_stage[stage].append(ms)
            entry["stages_p50_ms"] = {
                stage: round(statistics.median(values), 2) for stage, values in per_stage.items()
            }
        results[kind] = entry
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--misses", type=int, default=30, help="misses of each kind (default: %(default)s)")
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between misses (default: %(default)s)")
    parser.add_argument("--speculate", default="off", help="SUBSECOND_ROUTER_SPECULATE (default: %(default)s)")
    parser.add_argument("--router-processes", type=int, default=2, help="SUBSECOND_ROUTER_PROCESSES (default: 2)")
    parser.add_argument(
        "--semantic-hits", type=int, default=0, help="semantic hits at --semantic-rate first (default: none)"
    )
    parser.add_argument("--semantic-rate", type=float, default=25.0, help="their arrivals/s (default: 25)")
    parser.add_argument(
        "--semantic", type=int, default=0, help="trace this many semantic hits at --semantic-rate, and no misses"
    )
    parser.add_argument(
        "--router-env",
        type=lambda text: tuple(text.split("=", 1)),
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another SUBSECOND_ROUTER_<NAME> for the stack (repeatable), e.g. MAX_GENERATIONS=4",
    )
    parser.add_argument("--plaintext", dest="tls", action="store_false", help="the stack without TLS")
    parser.add_argument("--untraced", dest="traced", action="store_false", help="no spans (the figures alone)")
    parser.add_argument("--out", type=Path, help="where the figures go (default: results/miss_path[_semantic].json)")
    args = parser.parse_args()
    args.out = args.out or RESULTS / ("miss_path_semantic.json" if args.semantic else "miss_path.json")
    args.load_before = os.getloadavg()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
