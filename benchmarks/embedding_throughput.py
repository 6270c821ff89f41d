"""Embeddings a second from the embedding service, for settings (or code) side by side.

Starts a redis-server and one embedding service process per variant (plaintext gRPC on loopback,
the embedding cache on, every text new so the cache never answers), then measures the serving
benchmark's three loads round by round, the variants interleaved within each round: single-text
calls from 16 callers, calls of 32 texts of mixed token lengths (26-32 tokens) from 2 callers, and
calls of 32 texts of one length (14 tokens) from 2 callers. For each it reports the median over the
rounds of texts a second (wall clock) and of texts per CPU-second of the service process; the
caller runs in this process, on the same cores. ``--profile DIR`` records each load of the first
variant with py-spy (one more round, not counted), as flame graphs and raw stacks.

    .venv/bin/python benchmarks/embedding_throughput.py --variant base --variant "w1t2 WORKERS=1 THREADS=2"
    .venv/bin/python benchmarks/embedding_throughput.py --variant "old SOURCE=/tmp/old-tree" --variant new

A variant is a name and ``KEY=VALUE`` settings (``SUBSECOND_EMBEDDING_KEY``); ``SOURCE=DIR`` runs the
service from another checkout's ``services/`` (a baseline commit's code, e.g. from ``git worktree``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from subsecond.v1 import embedding_pb2, embedding_pb2_grpc
from subsecond_tools.stack.redis import find_redis_server, redis_argv

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / ".cache" / "models" / "all-minilm-l6-v2"
WORDS = ("sea", "river", "cat", "dog", "red", "blue", "old", "new", "tea", "rice", "city", "road", "rain", "sun")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def mixed_texts(count: int) -> list[str]:
    """26-32 tokens each (a uuid's hex splits into many word pieces): serving.py's mixed texts."""
    return [f"benchmark sentence about {uuid.uuid4().hex}" for _ in range(count)]


def one_length_texts(count: int) -> list[str]:
    """14 tokens each (12 one-token words and the two special tokens); new texts every call."""
    return [" ".join(random.choices(WORDS, k=12)) for _ in range(count)]


@dataclass(frozen=True)
class Load:
    name: str
    per_call: int
    callers: int
    texts: Callable[[int], list[str]]


LOADS = (
    Load("single_text_calls_16_concurrent", 1, 16, mixed_texts),
    Load("batch_of_32_calls_2_concurrent", 32, 2, mixed_texts),
    Load("batch_of_32_one_length_2_concurrent", 32, 2, one_length_texts),
)


@dataclass
class Variant:
    name: str
    settings: dict[str, str]
    source: Path | None
    port: int = 0
    metrics_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    results: dict[str, list[tuple[float, float, float, float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        name, *pairs = spec.split()
        settings = dict(pair.split("=", 1) for pair in pairs)
        source = settings.pop("SOURCE", None)
        return cls(name, settings, Path(source) if source else None)

    def cpu_seconds(self) -> float:
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime

    def batches(self) -> tuple[float, float]:
        """Texts and batches the micro-batcher has run (its batch-size histogram's sum and count)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
        found = dict(re.findall(r"^subsecond_embedding_batch_size_texts_(sum|count) (\S+)$", text, re.MULTILINE))
        return float(found["sum"]), float(found["count"])


# Where a sampled stack's time goes: the innermost Python frame that holds one of these texts names
# it (py-spy's raw stacks: frames joined by ';', outermost first). Waits are idle threads, left out.
PROFILE_RULES = (
    ("model (ONNX Runtime)", "Session.run"),
    ("tokenizer", "encode_batch"),
    ("ids, padding, pooling (numpy)", "onnx_model.py"),
    ("Redis client", "redis/"),
    ("micro-batcher", "batching.py"),
    ("handler: keys, protobuf answer", "embedding/service.py"),
    ("kit wrappers: tracing, errors, metrics", "kit/tracing.py"),
    ("kit wrappers: tracing, errors, metrics", "kit/errors.py"),
    ("kit wrappers: tracing, errors, metrics", "prometheus_client/"),
)
IDLE_FRAMES = ("select (selectors.py", "wait (threading.py", "_worker (concurrent/futures/thread.py:8", "serve_forever")


def profile_shares(raw: Path) -> dict[str, float]:
    """Shares (%) of the service's busy samples, by PROFILE_RULES; the rest is gRPC and asyncio."""
    busy: dict[str, int] = {}
    for line in raw.read_text().splitlines():
        stack, count = line.rsplit(" ", 1)
        python = [frame for frame in stack.split(";") if ".py:" in frame]
        if not python or any(idle in python[-1] for idle in IDLE_FRAMES):
            continue  # an idle thread, or a native thread (gRPC's, ONNX Runtime's pool) with no Python
        part = next(
            (name for frame in reversed(python) for name, text in PROFILE_RULES if text in frame),
            "gRPC and asyncio (the rest)",
        )
        busy[part] = busy.get(part, 0) + int(count)
    total = sum(busy.values()) or 1
    return {part: round(100 * count / total, 1) for part, count in sorted(busy.items(), key=lambda kv: -kv[1])}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_service(variant: Variant, redis_url: str, log_dir: Path) -> None:
    variant.port, variant.metrics_port = free_port(), free_port()
    environment = {
        **os.environ,
        "SUBSECOND_EMBEDDING_PORT": str(variant.port),
        "SUBSECOND_EMBEDDING_METRICS_PORT": str(variant.metrics_port),
        "SUBSECOND_EMBEDDING_MODEL_DIR": str(MODEL_DIR),
        "SUBSECOND_EMBEDDING_REDIS_URL": redis_url,
        "SUBSECOND_EMBEDDING_LOG_LEVEL": "WARNING",
        **{f"SUBSECOND_EMBEDDING_{key}": value for key, value in variant.settings.items()},
    }
    if variant.source is not None:
        environment["PYTHONPATH"] = str(variant.source / "services")
    log = (log_dir / f"{variant.name}.log").open("wb")
    variant.process = subprocess.Popen(
        [sys.executable, "-m", "subsecond.embedding"], env=environment, stdout=log, stderr=subprocess.STDOUT
    )


async def wait_ready(stub: embedding_pb2_grpc.EmbedderStub, variant: Variant) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            await stub.Embed(embedding_pb2.EmbedRequest(texts=["ready?"]), timeout=5)
            return
        except grpc.aio.AioRpcError:
            assert variant.process is not None
            if variant.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"variant {variant.name}: the service did not start") from None
            await asyncio.sleep(0.5)


async def measure(stub: embedding_pb2_grpc.EmbedderStub, load: Load, seconds: float) -> float:
    """Texts a second for ``seconds`` of ``load``'s callers, each calling again when answered."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def caller() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await stub.Embed(embedding_pb2.EmbedRequest(texts=load.texts(load.per_call)), timeout=30)
            done += load.per_call

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(load.callers)))
    return done / (time.perf_counter() - started)


async def run(args: argparse.Namespace, variants: list[Variant]) -> dict[str, object]:
    loads = [load for load in LOADS if args.load is None or load.name in args.load]
    channels: list[grpc.aio.Channel] = []
    profiles: dict[str, dict[str, float]] = {}
    try:
        stubs = {}
        for variant in variants:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{variant.port}")
            channels.append(channel)
            stubs[variant.name] = embedding_pb2_grpc.EmbedderStub(channel)
            await wait_ready(stubs[variant.name], variant)
        for variant in variants:  # warm every path: lone texts, padded calls, both workers
            for load in loads:
                await measure(stubs[variant.name], load, 1.0)
        if args.profile is not None:
            args.profile.mkdir(parents=True, exist_ok=True)
            first = variants[0]
            assert first.process is not None
            for load in loads:
                spy = await asyncio.create_subprocess_exec(
                    str(Path(sys.executable).with_name("py-spy")),
                    "record", "--pid", str(first.process.pid), "--duration", str(int(args.seconds)),
                    "--rate", "250", "--native", "--format", "raw",
                    "--output", str(args.profile / f"{load.name}.txt"),
                )  # fmt: skip
                await asyncio.sleep(1.0)  # py-spy attaches
                await measure(stubs[first.name], load, args.seconds)
                await spy.wait()
                profiles[load.name] = profile_shares(args.profile / f"{load.name}.txt")
                print(f"profile of {load.name}: {profiles[load.name]}", flush=True)
        for round_ in range(args.rounds):
            for load in loads:
                order = variants if round_ % 2 == 0 else variants[::-1]
                for variant in order:
                    cpu, (texts_before, batches_before) = variant.cpu_seconds(), variant.batches()
                    started, caller_cpu = time.perf_counter(), time.process_time()
                    rate = await measure(stubs[variant.name], load, args.seconds)
                    texts = rate * (time.perf_counter() - started)
                    per_cpu = texts / max(variant.cpu_seconds() - cpu, 1e-9)
                    per_caller_cpu = texts / max(time.process_time() - caller_cpu, 1e-9)
                    texts_after, batches_after = variant.batches()
                    per_batch = (texts_after - texts_before) / max(batches_after - batches_before, 1)
                    variant.results.setdefault(load.name, []).append((rate, per_cpu, per_batch, per_caller_cpu))
                    print(
                        f"round {round_} {load.name} {variant.name}: {rate:.0f} texts/s, {per_cpu:.0f} per CPU-s, "
                        f"{per_batch:.1f} texts a batch, {per_caller_cpu:.0f} per caller CPU-s, "
                        f"load {os.getloadavg()[0]:.1f}",
                        flush=True,
                    )
        return {
            "cpus": os.cpu_count(),
            "load_average_at_end": os.getloadavg(),
            "seconds_per_measurement": args.seconds,
            "rounds": args.rounds,
            "profile_shares_of_busy_samples": profiles,
            "variants": {
                variant.name: {
                    "settings": variant.settings,
                    "source": str(variant.source) if variant.source else "this checkout",
                    **{
                        name: {
                            "texts_per_second_median": round(statistics.median(run[0] for run in runs), 1),
                            "texts_per_service_cpu_second_median": round(statistics.median(run[1] for run in runs), 1),
                            "texts_per_batch_median": round(statistics.median(run[2] for run in runs), 1),
                            "texts_per_caller_cpu_second_median": round(statistics.median(run[3] for run in runs), 1),
                            "texts_per_second_runs": [round(run[0], 1) for run in runs],
                        }
                        for name, runs in variant.results.items()
                    },
                }
                for variant in variants
            },
        }
    finally:
        for channel in channels:
            await channel.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", help='"NAME [KEY=VALUE ...]"; default: one, the defaults')
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the variants interleave in each")
    parser.add_argument(
        "--load", action="append", choices=[load.name for load in LOADS], help="only these loads (default: all)"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the first variant's service under each load into DIR")
    parser.add_argument(
        "--output",
        type=Path,
        default=REPO / "benchmarks" / "results" / "embedding_throughput.json",
        help="where to write the figures",
    )
    args = parser.parse_args()
    variants = [Variant.parse(spec) for spec in args.variant or ["default"]]
    work = Path(tempfile.mkdtemp(prefix="subsecond-embed-bench-"))
    redis_port = free_port()
    redis = subprocess.Popen(
        redis_argv(find_redis_server(), redis_port, work, persistent=False),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for variant in variants:
            start_service(variant, f"redis://127.0.0.1:{redis_port}/0", work)
        results = asyncio.run(run(args, variants))
    finally:
        for process in [*(variant.process for variant in variants if variant.process is not None), redis]:
            process.terminate()
            process.wait(timeout=30)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["variants"], indent=2))


if __name__ == "__main__":
    main()
