"""Semantic hits with a fresh embedding, asked of the cache service alone (no router): Redis, the
embedding service and the cache service run as processes on free ports, plaintext.

Answers are stored under one side of QQP duplicate pairs; the other sides that are semantic hits are
found with a first lookup each, the embedding cache is emptied, and those prompts are asked again
open-loop at ``--rate`` (latency from each request's scheduled start). Prints p50/p95/p99 and, from
the services' metrics, the mean time of each hop during the timed lookups.

``--base-services DIR`` (an older checkout's ``services`` directory, e.g. from ``git archive``) with
``--base-model-dir`` runs that code as "before" too, the two interleaved for ``--rounds`` each;
``--without-verifier`` runs this checkout a second time with the pair verifier taken out of the
cache service (a stand-in that gives every pair probability 1 at once: the rules still run), which
is what the verifier costs a hit. ``--compare-env NAME=VALUE ...`` runs this checkout once more with
those environment variables set for its services (repeat it for more arms), and ``--verifier-calls N``
first times N calls of the pair verifier alone, built in this process as the cache builds it for each
arm with a verifier (its settings read from the arm's environment), the arms' calls interleaved pair
by pair. Several ``--rate`` values run each arm at each rate in every round::

    .venv/bin/python benchmarks/semantic_hit_cache.py --hits 80 --rounds 3
    .venv/bin/python benchmarks/semantic_hit_cache.py --hits 80 --rounds 3 --without-verifier
    .venv/bin/python benchmarks/semantic_hit_cache.py --hits 80 --rounds 3 --without-verifier \
        --rate 25 70 --verifier-calls 300 --compare-env SUBSECOND_CACHE_VERIFIER_THREADS=2

Writes every run and the medians to ``--out`` (default ``benchmarks/results/semantic_hit_cache.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import runpy
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as redis
from serving import cache_query

from subsecond.cache.settings import CacheSettings
from subsecond.cache.verifier import PairVerifier
from subsecond.embedding.service import CACHE_KEY_PREFIX
from subsecond.v1 import cache_pb2, cache_pb2_grpc, types_pb2
from subsecond_tools.stack.redis import find_redis_server, redis_argv

REPO_ROOT = Path(__file__).resolve().parents[1]
PAIRS_FILE = REPO_ROOT / "benchmarks" / "data" / "semantic" / "shared" / "qqp_duplicates_dev.jsonl"
ANSWER = cache_pb2.CachedAnswer(
    chunks=["An answer."], prompt_tokens=5, completion_tokens=2, finish_reason=types_pb2.FINISH_REASON_STOP
)
VERIFIER_DIR = REPO_ROOT / ".cache" / "models" / "pair-verifier"
# Calls of each verifier left out of --verifier-calls' figures: the first runs allocate ONNX Runtime's buffers.
VERIFIER_WARM_UP = 20
QUANTILES = ("p50_ms", "p95_ms", "p99_ms")
HOP_METRICS = (
    "subsecond_cache_lookup_duration_seconds",
    "subsecond_cache_hop_duration_seconds",
    "subsecond_embedding_request_duration_seconds",
    "subsecond_embedding_inference_duration_seconds",
)


SERVICES = ("redis", "embedding", "cache")
# The flag that makes this script the cache service with its verifier taken out (--without-verifier).
SERVE_UNVERIFIED = "--serve-cache-without-verifier"


@dataclass(frozen=True)
class Variant:
    name: str
    pythonpath: str | None  # the services' code, when not this checkout's
    model_dir: Path
    verifier: bool = True
    environment: tuple[tuple[str, str], ...] = ()  # set for the services (--compare-env)


class CertainVerifier:
    """The pair verifier's stand-in for --without-verifier: every pair, at once, probability 1."""

    def probability(self, cached: str, query: str) -> float:
        return 1.0


def serve_cache_without_verifier() -> None:
    """``python -m subsecond.cache`` with CertainVerifier in place of the trained verifier."""
    from subsecond.cache import service

    service.open_verifier = lambda *_: CertainVerifier()  # type: ignore[assignment,return-value]
    runpy.run_module("subsecond.cache", run_name="__main__")


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """The _sum and _count samples of the hop metrics on a service's /metrics."""
    samples = {}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
        for line in response.read().decode().splitlines():
            if line.startswith(HOP_METRICS) and ("_sum" in line or "_count" in line):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
    return samples


def hop_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean milliseconds of each metric (and label set) between two scrapes."""
    means = {}
    for name, total in after.items():
        if "_sum" in name:
            count = after[name.replace("_sum", "_count")] - before.get(name.replace("_sum", "_count"), 0.0)
            if count:
                means[name.replace("_sum", "")] = round((total - before.get(name, 0.0)) / count * 1e3, 2)
    return means


def cpu_seconds(process: subprocess.Popen[bytes]) -> float:
    """The user and system CPU a process has used (Linux /proc; its threads included)."""
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spawn_services(
    variant: Variant, ports: dict[str, int], redis_url: str, work: Path
) -> list[subprocess.Popen[bytes]]:
    """Redis, the embedding service and the cache service (SERVICES), as the variant's code runs them."""
    environment = dict(os.environ) | dict(variant.environment)
    if variant.pythonpath:
        environment["PYTHONPATH"] = variant.pythonpath
    return [
        subprocess.Popen(
            redis_argv(find_redis_server(), ports["redis"], work, persistent=False), stdout=subprocess.DEVNULL
        ),
        subprocess.Popen(
            [sys.executable, "-m", "subsecond.embedding"],
            env=environment
            | {
                "SUBSECOND_EMBEDDING_PORT": str(ports["embedding"]),
                "SUBSECOND_EMBEDDING_METRICS_PORT": str(ports["embedding_metrics"]),
                "SUBSECOND_EMBEDDING_MODEL_DIR": str(variant.model_dir),
                "SUBSECOND_EMBEDDING_REDIS_URL": redis_url,
                "SUBSECOND_EMBEDDING_LOG_LEVEL": "WARNING",
            },
        ),
        subprocess.Popen(
            [sys.executable, "-m", "subsecond.cache"]
            if variant.verifier
            else [sys.executable, str(Path(__file__).resolve()), SERVE_UNVERIFIED],
            env=environment
            | {
                "SUBSECOND_CACHE_PORT": str(ports["cache"]),
                "SUBSECOND_CACHE_METRICS_PORT": str(ports["cache_metrics"]),
                "SUBSECOND_CACHE_REDIS_URL": redis_url,
                "SUBSECOND_CACHE_EMBEDDING_URL": f"127.0.0.1:{ports['embedding']}",
                "SUBSECOND_CACHE_VECTOR_PATH": str(work / "vectors"),
                "SUBSECOND_CACHE_VERIFIER_DIR": str(VERIFIER_DIR),
                "SUBSECOND_CACHE_LOG_LEVEL": "WARNING",
            },
        ),
    ]


async def run(variant: Variant, pairs: list[dict[str, str]], hits: int, rate: float) -> dict[str, Any]:
    """One run's figures, with the mean of each hop from the services' metrics."""
    work = Path(tempfile.mkdtemp(prefix="semantic-hit-"))
    ports = {name: free_port() for name in ("redis", "embedding", "embedding_metrics", "cache", "cache_metrics")}
    redis_url = f"redis://127.0.0.1:{ports['redis']}/0"
    processes = spawn_services(variant, ports, redis_url, work)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{ports['cache']}") as channel:
            cache = cache_pb2_grpc.CacheStub(channel)
            await cache.Lookup(cache_pb2.LookupRequest(query=cache_query("warm up")), wait_for_ready=True, timeout=120)
            # On a loaded machine a call may time out (the cache's Redis): that pair is left out.
            stored = []
            for pair in pairs:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await cache.Store(cache_pb2.StoreRequest(query=cache_query(pair["a"]), answer=ANSWER))
                    stored.append(pair)
            hitting = []
            for pair in stored:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    found = await cache.Lookup(cache_pb2.LookupRequest(query=cache_query(pair["b"]), semantic=True))
                    if found.hit and found.tier == cache_pb2.CACHE_TIER_SEMANTIC:
                        hitting.append(pair["b"])
            client = redis.Redis.from_url(redis_url)
            async for key in client.scan_iter(match=f"{CACHE_KEY_PREFIX}*", count=1000):
                await client.delete(key)
            await client.aclose()
            hitting = hitting[:hits]
            latencies: list[float] = []
            served = 0

            async def one(text: str, at: float) -> None:
                nonlocal served
                await asyncio.sleep(max(0.0, at - time.perf_counter()))
                found = await cache.Lookup(cache_pb2.LookupRequest(query=cache_query(text), semantic=True))
                latencies.append(time.perf_counter() - at)
                served += found.tier == cache_pb2.CACHE_TIER_SEMANTIC

            before = scrape(ports["cache_metrics"]) | scrape(ports["embedding_metrics"])
            cpu_before = {name: cpu_seconds(process) for name, process in zip(SERVICES, processes, strict=True)}
            start = time.perf_counter() + 0.1
            await asyncio.gather(*(one(text, start + i / rate) for i, text in enumerate(hitting)))
            after = scrape(ports["cache_metrics"]) | scrape(ports["embedding_metrics"])
            cpu = {
                name: round((cpu_seconds(process) - cpu_before[name]) / len(latencies) * 1e3, 2)
                for name, process in zip(SERVICES, processes, strict=True)
            }
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait()
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "lookups": len(latencies),
        "semantic_hits": served,
        "p50_ms": round(cuts[49] * 1e3, 2),
        "p95_ms": round(cuts[94] * 1e3, 2),
        "p99_ms": round(cuts[98] * 1e3, 2),
        "load_average": round(os.getloadavg()[0], 1),
        "hops_ms": hop_means(before, after),
        "cpu_ms_per_lookup": cpu,
    }


def time_verifier_alone(variants: list[Variant], pairs: list[dict[str, str]]) -> dict[str, dict[str, float]]:
    """p50/p95/p99 milliseconds of one pair verifier call for each arm of this checkout with a verifier,
    built as its cache builds it (settings from the arm's environment); the arms take turns pair by
    pair, in an order reversed every pair, so that the machine's load falls on them alike."""
    verifiers = {
        variant.name: PairVerifier(
            VERIFIER_DIR, CacheSettings.from_env(dict(os.environ) | dict(variant.environment)).verifier_threads
        )
        for variant in variants
        if variant.verifier and variant.pythonpath is None
    }
    turns = list(verifiers.items())
    timings: dict[str, list[float]] = {name: [] for name in verifiers}
    for i, pair in enumerate(pairs):
        for name, verifier in turns if i % 2 == 0 else turns[::-1]:
            started = time.perf_counter()
            verifier.probability(pair["a"], pair["b"])
            if i >= VERIFIER_WARM_UP:
                timings[name].append(time.perf_counter() - started)
    figures = {}
    for name, seconds in timings.items():
        cuts = statistics.quantiles(seconds, n=100)
        figures[name] = {
            "calls": len(seconds),
            "p50_ms": round(cuts[49] * 1e3, 2),
            "p95_ms": round(cuts[94] * 1e3, 2),
            "p99_ms": round(cuts[98] * 1e3, 2),
            "load_average": round(os.getloadavg()[0], 1),
        }
    return figures


def assignment(text: str) -> tuple[str, str]:
    """One ``NAME=VALUE`` of --compare-env."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


async def main(args: argparse.Namespace) -> None:
    lines = PAIRS_FILE.read_text().splitlines()
    pairs = [json.loads(line) for line in random.Random(7).sample(lines, 2 * args.hits)]
    variants = [Variant("this checkout", None, args.model_dir)]
    if args.base_services:
        variants.insert(0, Variant("base", str(args.base_services), args.base_model_dir))
    for environment in args.compare_env:
        arm = "this checkout, " + " ".join(f"{name}={value}" for name, value in environment)
        variants.append(Variant(arm, None, args.model_dir, environment=tuple(environment)))
    if args.without_verifier:
        variants.append(Variant("without the verifier", None, args.model_dir, verifier=False))
    report: dict[str, Any] = {"hits": args.hits, "rates_per_s": args.rate}
    if args.verifier_calls:
        timed = [json.loads(line) for line in random.Random(11).sample(lines, VERIFIER_WARM_UP + args.verifier_calls)]
        report["verifier_alone"] = time_verifier_alone(variants, timed)
        for name, figures in report["verifier_alone"].items():
            print(f"verifier alone, {name}: {figures}", flush=True)
    arms = [(variant, rate) for rate in args.rate for variant in variants]

    def label(variant: Variant, rate: float) -> str:
        return variant.name if len(args.rate) == 1 else f"{variant.name} @ {rate:g}/s"

    results: dict[str, list[dict[str, Any]]] = {label(*arm): [] for arm in arms}
    for round_ in range(args.rounds):
        for variant, rate in arms if round_ % 2 == 0 else arms[::-1]:
            result = await run(variant, pairs, args.hits, rate)
            results[label(variant, rate)].append(result)
            print(round_, label(variant, rate), json.dumps(result), flush=True)
    medians = {
        name: {key: statistics.median(run[key] for run in runs) for key in (*QUANTILES, "load_average")}
        for name, runs in results.items()
    }
    for name, figures in medians.items():
        print(f"{name}: medians of {len(results[name])} runs {figures}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report | {"runs": results, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE_UNVERIFIED]:
        serve_cache_without_verifier()
        sys.exit()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hits", type=int, default=80, help="timed lookups per run (default: %(default)s)")
    parser.add_argument(
        "--rate", type=float, nargs="+", default=[25.0],
        help="lookups a second; given several, each arm runs at each (default: 25)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each variant, interleaved")
    parser.add_argument("--model-dir", type=Path, default=REPO_ROOT / ".cache" / "models" / "all-minilm-l6-v2")
    parser.add_argument("--base-services", type=Path, help="an older checkout's services directory")
    parser.add_argument("--base-model-dir", type=Path, help="the model that older code runs")
    parser.add_argument("--without-verifier", action="store_true", help="also run without the pair verifier")
    parser.add_argument(
        "--compare-env",
        type=assignment,
        nargs="+",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="also run this checkout with these environment variables set for its services (repeat for more arms)",
    )
    parser.add_argument(
        "--verifier-calls",
        type=int,
        default=0,
        metavar="N",
        help="first time N pair verifier calls alone for each arm of this checkout with a verifier (default: none)",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "results" / "semantic_hit_cache.json")
    asyncio.run(main(parser.parse_args()))
