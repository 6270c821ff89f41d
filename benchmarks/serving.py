"""Benchmark of the serving path on this machine: starts the whole stack on free ports and drives
it with open-loop arrivals (requests start on a fixed schedule whatever the latency, and latency
is measured from the scheduled start, so queueing is not hidden).

Prints a row for each row of issue 11's table: p50/p95/p99 of exact hits (at each of
``--exact-rates``), of semantic hits with a fresh embedding, the router's added time to the first
chunk of a miss (the same kind of miss through the router and straight to Triton, in this run; with
the cache on and bypassed), the highest rate of exact hits sustained with p99 within
``--sustained-p99-ms`` (k6 through the load test's runner, loadtest/run.py, at each of
``--sustained-rates`` until one fails), and embeddings a second, one text per call and in batches;
writes them all to benchmarks/results/serving.json.

    .venv/bin/python benchmarks/serving.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import redis.asyncio as redis
from tritonclient.grpc import service_pb2, service_pb2_grpc

from subsecond.embedding.service import CACHE_KEY_PREFIX
from subsecond.generation.entry_model import EntryModel, is_final
from subsecond.generation.prompts import ModelPrompt
from subsecond.kit.prompt_identity import Sampling
from subsecond.v1 import (
    cache_pb2,
    cache_pb2_grpc,
    embedding_pb2,
    embedding_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
    types_pb2,
)
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

log = logging.getLogger("bench")
RESULTS = Path(__file__).resolve().parent / "results"
# The labelled pairs, in the repository (benchmarks/data/semantic/README.md gives their provenance).
DATA = Path(__file__).resolve().parent / "data" / "semantic" / "shared"
LOADTEST = Path(__file__).resolve().parents[1] / "loadtest"
# One-token words: texts of N of them have N + 2 tokens, so a batch of them is one model call.
WORDS = ("sea", "river", "cat", "dog", "red", "blue", "old", "new", "tea", "rice", "city", "road", "rain", "sun")


def median_difference_ms(ours: list[float], baseline: list[float]) -> float:
    return round(statistics.median(a - b for a, b in zip(ours, baseline, strict=True)) * 1000, 3)


def summary(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000.0
    return {
        "n": len(samples),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p95_ms": round(float(np.percentile(ms, 95)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


async def open_loop(
    rate: float, count: int, served_as: int, one: Callable[[int, float], Awaitable[int]]
) -> dict[str, float]:
    """Starts request i at i/rate seconds (``one(i, t0)`` returns how it was served) and summarises
    the latency of those served as expected, measured from their scheduled start. Requests served
    otherwise, and failed ones, are counted, not timed."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    latencies: list[float] = []
    other = failed = 0

    async def timed(i: int, t0: float) -> None:
        nonlocal other, failed
        try:
            served = await one(i, t0)
        except grpc.aio.AioRpcError:
            failed += 1
            return
        if served == served_as:
            latencies.append(time.perf_counter() - t0)
        else:
            other += 1

    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        if (delay := scheduled - loop.time()) > 0:
            await asyncio.sleep(delay)
        t0 = time.perf_counter() - max(0.0, loop.time() - scheduled)
        tasks.append(asyncio.create_task(timed(i, t0)))
    await asyncio.gather(*tasks)
    return summary(latencies) | {"rate_per_s": rate, "served_otherwise": other, "failed": failed}


async def first_and_total(
    stub: router_pb2_grpc.RouterStub, request: router_pb2.GenerateRequest, t0: float
) -> tuple[float, float, int]:
    first = None
    async for response in stub.Generate(request, timeout=120):
        if first is None and (response.text or response.HasField("done")):
            first = time.perf_counter() - t0
        if response.HasField("done"):
            return first or 0.0, time.perf_counter() - t0, response.done.served_by
    raise RuntimeError("stream ended without done")


STORED_ANSWER = cache_pb2.CachedAnswer(
    chunks=["A stored", " answer."], completion_tokens=3, finish_reason=types_pb2.FINISH_REASON_STOP
)


def cache_query(text: str) -> cache_pb2.CacheQuery:
    """The cache query the router makes for ``prompt(text)`` from the default tenant."""
    return cache_pb2.CacheQuery(
        tenant="local",
        model="small",
        messages=[types_pb2.ChatMessage(role="user", content=text)],
        sampling=types_pb2.SamplingParams(top_p=1.0),
    )


async def forget_embeddings(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    async for key in client.scan_iter(match=f"{CACHE_KEY_PREFIX}*", count=1000):
        await client.delete(key)
    await client.aclose()


def prompt(text: str, **fields: object) -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(prompt=text, **({"max_tokens": 96} | fields))  # type: ignore[arg-type]


async def bench(args: argparse.Namespace) -> dict[str, object]:
    run_dir = Path(tempfile.mkdtemp(prefix="subsecond-bench-"))
    environment = {"SUBSECOND_ROUTER_PROCESSES": str(args.router_processes)}
    stack = Stack(StackConfig(ports=Ports.free(), run_dir=run_dir, environment=environment))
    log.info("starting the stack (logs in %s)", run_dir)
    await stack.start()
    results: dict[str, object] = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "router_processes": args.router_processes,
    }
    try:
        async with (
            # As the stack's services call each other (its TLS and caller identities): a client of the
            # router, the router calling the cache, the cache calling the embedding service.
            stack.channel("router", as_service=None) as router_channel,
            stack.channel("cache") as cache_channel,
            stack.channel("embedding", as_service="cache") as embedding_channel,
        ):
            router = router_pb2_grpc.RouterStub(router_channel)
            cache = cache_pb2_grpc.CacheStub(cache_channel)
            embedder = embedding_pb2_grpc.EmbedderStub(embedding_channel)

            # Exact hits: one answer, asked again and again.
            hot = prompt("What is the capital of France? Answer in one sentence.")
            await first_and_total(router, hot, time.perf_counter())
            await asyncio.sleep(0.5)
            if (await first_and_total(router, hot, time.perf_counter()))[2] != types_pb2.SERVED_BY_EXACT:
                raise RuntimeError("the warm-up answer was not cached (truncated?); pick a shorter question")

            async def exact(i: int, t0: float) -> int:
                return (await first_and_total(router, hot, t0))[2]

            exact_hits = {}
            for rate in args.exact_rates:
                log.info("exact hits: %d at %.0f/s", args.hits, rate)
                exact_hits[f"{rate:g}_per_second"] = await open_loop(rate, args.hits, types_pb2.SERVED_BY_EXACT, exact)
            results["exact_hit"] = exact_hits

            # Semantic hits: answers stored under one side of duplicate-question pairs, asked with the
            # other side. Pairs whose other side would not hit are found first with direct lookups and
            # left out (a miss would start a generation); then the embedding cache is emptied, so every
            # timed request embeds its prompt afresh.
            lines = (args.data_dir / "qqp_duplicates_dev.jsonl").read_text().splitlines()
            pairs = [json.loads(line) for line in random.Random(7).sample(lines, 2 * args.hits)]
            for pair in pairs:
                await cache.Store(cache_pb2.StoreRequest(query=cache_query(pair["a"]), answer=STORED_ANSWER))
            hitting = []
            for pair in pairs:
                lookup = await cache.Lookup(cache_pb2.LookupRequest(query=cache_query(pair["b"]), semantic=True))
                if lookup.hit and lookup.tier == cache_pb2.CACHE_TIER_SEMANTIC:
                    hitting.append(pair["b"])
            await forget_embeddings(stack.redis_url)
            count = min(args.hits, len(hitting))
            log.info("semantic hits: %d distinct paraphrases at %.0f/s", count, args.semantic_rate)

            async def semantic(i: int, t0: float) -> int:
                return (await first_and_total(router, prompt(hitting[i]), t0))[2]

            probed = {"duplicate_pairs_probed": len(pairs), "share_that_hit": round(len(hitting) / len(pairs), 3)}
            results["semantic_hit"] = probed | (
                await open_loop(args.semantic_rate, count, types_pb2.SERVED_BY_SEMANTIC, semantic)
                if count
                else {"not_measured": "no paraphrase was a semantic hit (is the pair verifier built?)"}
            )

            # Misses: time to first chunk through the router, and straight to Triton, interleaved.
            # Triton called as the generation service calls it: the model's chat template, its entry model's shapes.
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{stack.config.ports.triton_grpc}")
            client = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            config = await client.ModelConfig(service_pb2.ModelConfigRequest(name="smollm2"))
            direct_model = DirectModel(
                EntryModel.from_config(config.config), ModelPrompt.load(stack.config.tokenizer_root / "smollm2")
            )
            router_ttft, bypass_ttft, triton_ttft = [], [], []
            log.info("misses: %d pairs (router, then Triton directly)", args.misses)
            for i in range(args.misses):
                # A fresh prefix each time: llama.cpp reuses the KV cache of a shared prompt prefix.
                question = f"({uuid.uuid4().hex[:8]}) Tell me a fact about the number {i + 17}."
                direct = f"({uuid.uuid4().hex[:8]}) Tell me a fact about the number {i + 17}."
                if i % 2:  # alternate which goes first
                    triton_ttft.append(await triton_first_token(client, direct_model, direct))
                t0 = time.perf_counter()
                first, _, served = await first_and_total(router, prompt(question, max_tokens=8), t0)
                if served != types_pb2.SERVED_BY_GENERATED:
                    raise RuntimeError(f"a unique prompt was served from the cache: {question!r}")
                router_ttft.append(first)
                bypass = prompt(f"({uuid.uuid4().hex[:8]}) Tell me a fact about the number {i + 17}.", max_tokens=8)
                bypass.cache.mode = router_pb2.CACHE_MODE_BYPASS
                t0 = time.perf_counter()
                bypass_ttft.append((await first_and_total(router, bypass, t0))[0])
                if not i % 2:
                    triton_ttft.append(await triton_first_token(client, direct_model, direct))
            await channel.close()
            results["miss_time_to_first_chunk"] = summary(router_ttft)
            results["miss_time_to_first_chunk_cache_bypassed"] = summary(bypass_ttft)
            results["triton_direct_time_to_first_token"] = summary(triton_ttft)
            # What the router path adds to Triton's own time to first token: with the cache lookup of a
            # miss (exact + embedding + vector search), and with the cache bypassed (the hops alone).
            results["router_added_time_to_first_chunk"] = {
                "miss_median_of_pairs_ms": median_difference_ms(router_ttft, triton_ttft),
                "cache_bypassed_median_of_pairs_ms": median_difference_ms(bypass_ttft, triton_ttft),
            }

            # Embeddings per second: one text per call (concurrent callers) vs 32 texts per call, of
            # mixed lengths (26-32 tokens, padded into calls of near lengths) and of one length (14
            # tokens). benchmarks/embedding_throughput.py measures the same loads on the service alone.
            results["embeddings_per_second"] = {
                "single_text_calls_16_concurrent": await embed_rate(embedder, 1, 16, args.embed_seconds, mixed_texts),
                "batch_of_32_calls_2_concurrent": await embed_rate(embedder, 32, 2, args.embed_seconds, mixed_texts),
                "batch_of_32_one_length_2_concurrent": await embed_rate(
                    embedder, 32, 2, args.embed_seconds, one_length_texts
                ),
            }
        results["exact_hits_sustained"] = await sustained(stack, run_dir, args)
    finally:
        await stack.stop()
    return results


@dataclass(frozen=True)
class DirectModel:
    entry: EntryModel
    prompt: ModelPrompt


async def triton_first_token(
    client: service_pb2_grpc.GRPCInferenceServiceStub, model: DirectModel, question: str
) -> float:
    text = model.prompt.render([{"role": "user", "content": question}])
    request = model.entry.request(text, 8, Sampling())
    finished = asyncio.Event()

    async def requests():  # type: ignore[no-untyped-def]
        yield request
        await finished.wait()

    t0 = time.perf_counter()
    first = None
    responses = client.ModelStreamInfer(requests())
    async for response in responses:
        if response.error_message:
            raise RuntimeError(response.error_message)
        if first is None:
            first = time.perf_counter() - t0
        if is_final(response.infer_response):
            break
    finished.set()
    responses.cancel()
    return first or 0.0


def mixed_texts(count: int) -> list[str]:
    return [f"benchmark sentence about {uuid.uuid4().hex}" for _ in range(count)]


def one_length_texts(count: int) -> list[str]:
    return [" ".join(random.choices(WORDS, k=12)) for _ in range(count)]


async def embed_rate(
    embedder: embedding_pb2_grpc.EmbedderStub,
    per_call: int,
    concurrency: int,
    seconds: float,
    texts_of: Callable[[int], list[str]],
) -> float:
    """Texts embedded per second; every text is new, so the embedding cache never answers."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker(w: int) -> None:
        nonlocal done
        n = 0
        while time.perf_counter() < deadline:
            await embedder.Embed(embedding_pb2.EmbedRequest(texts=texts_of(per_call)), timeout=30)
            done += per_call
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return round(done / (time.perf_counter() - started), 1)


async def sustained(stack: Stack, run_dir: Path, args: argparse.Namespace) -> dict[str, object]:
    """Exact hits (the load test's repeats, nothing else) from k6 at each rate, through the load test's
    own runner, until one's p99 passes ``--sustained-p99-ms`` or any request fails: the highest rate
    that held."""
    sys.path.insert(0, str(LOADTEST))  # run.py imports its report.py as a top-level module
    loadtest = importlib.import_module("run")
    tls = ["--tls", "--ca", str(stack.ca_file)] if stack.ca_file is not None else []
    options = loadtest.parser().parse_args(
        ["--mix", "repeats=1", "--duration", str(args.sustained_seconds), "--out", str(run_dir / "k6"), *tls]
    )
    target = stack.address("router")
    runs, highest = [], 0.0
    for rate in args.sustained_rates:
        log.info("exact hits sustained: k6 at %g/s for %gs", rate, args.sustained_seconds)
        result = await loadtest.run_once(options, target, rate, "steady", run_dir / "k6" / f"rate-{rate:g}", None)
        (phase,) = result.phases
        exact = phase["latency"].get("exact", {})
        held = phase["errors"] == 0 and exact.get("p99_ms") is not None and exact["p99_ms"] <= args.sustained_p99_ms
        runs.append({"rate": rate, "held": held} | {key: phase[key] for key in ("requests", "errors")} | exact)
        if not held:
            break
        highest = rate
    return {"p99_limit_ms": args.sustained_p99_ms, "highest_rate_held": highest, "runs": runs}


def table(results: dict[str, object]) -> str:
    """The issue's rows, subsecond's column."""

    def pcts(figures: object) -> str:
        f = dict(figures)  # type: ignore[call-overload]
        if "p50_ms" not in f:
            return f"not measured: {f.get('not_measured')}"
        return f"p50 {f['p50_ms']} / p95 {f['p95_ms']} / p99 {f['p99_ms']} ms"

    rows = [f"exact hit, whole stream, {rate.split('_')[0]}/s | {pcts(figures)}"
            for rate, figures in dict(results["exact_hit"]).items()]  # type: ignore[call-overload]  # fmt: skip
    rows.append(f"semantic hit incl. a fresh embedding | {pcts(results['semantic_hit'])}")
    added = dict(results["router_added_time_to_first_chunk"])  # type: ignore[call-overload]
    rows.append(
        f"time the front adds to the first chunk of a miss | {added['miss_median_of_pairs_ms']} ms (cache on), "
        f"{added['cache_bypassed_median_of_pairs_ms']} ms (cache bypassed), medians of pairs against Triton directly"
    )
    held = dict(results["exact_hits_sustained"])  # type: ignore[call-overload]
    last = held["runs"][-1] if held["runs"] else {}
    rows.append(
        f"exact hits sustained (k6 constant-arrival-rate) | {held['highest_rate_held']:g}/s at p99 <= "
        f"{held['p99_limit_ms']} ms; last run {last.get('rate')}/s: p99 {last.get('p99_ms')} ms, "
        f"{last.get('errors')} errors of {last.get('requests')}"
    )
    embeddings = dict(results["embeddings_per_second"])  # type: ignore[call-overload]
    rows.append(
        f"embeddings on {results['cpus']} cores | {embeddings['single_text_calls_16_concurrent']} texts/s single "
        f"calls, {embeddings['batch_of_32_calls_2_concurrent']} in batches of 32 (mixed lengths), "
        f"{embeddings['batch_of_32_one_length_2_concurrent']} in batches of 32 of one length"
    )
    return "\n".join(["| | subsecond |", "|---|---|", *(f"| {row} |" for row in rows)])


def rates(text: str) -> list[float]:
    return [float(rate) for rate in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--exact-rates", type=rates, default=[50.0, 100.0], help="exact-hit arrivals/s (default: 50,100)"
    )
    parser.add_argument(
        "--semantic-rate", type=float, default=25.0, help="semantic-hit arrivals/s (default: %(default)s)"
    )
    parser.add_argument("--hits", type=int, default=600, help="requests per hit scenario (default: %(default)s)")
    parser.add_argument("--misses", type=int, default=20, help="miss pairs, router and direct (default: %(default)s)")
    parser.add_argument("--embed-seconds", type=float, default=5.0, help="seconds per embedding scenario")
    parser.add_argument(
        "--sustained-rates",
        type=rates,
        default=[250.0, 500.0, 1000.0, 1500.0, 2000.0],
        help="k6 exact-hit rates tried in turn (default: 250,500,1000,1500,2000)",
    )
    parser.add_argument("--sustained-seconds", type=float, default=20.0, help="seconds per k6 rate (default: 20)")
    parser.add_argument("--sustained-p99-ms", type=float, default=10.0, help="p99 a sustained rate must hold")
    parser.add_argument(
        "--router-processes", type=int, default=2, help="SUBSECOND_ROUTER_PROCESSES of the stack (default: 2)"
    )
    parser.add_argument("--data-dir", type=Path, default=DATA, help="labelled pairs (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "serving.json", help="where the figures go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
