"""Faults under load (issue 17's table): starts the whole stack on free ports, drives the router
with an open-loop mix of exact hits, semantic hits and misses from one tenant, and stops, kills
and restarts Redis and the cache service in turn while the load runs.

Phases, each ``--fault-seconds`` long: baseline; Redis stopped (SIGSTOP); Redis killed; cache
service stopped; cache service killed; cache service restarted (from the moment it is started
again); Redis restarted (killed and started at once; its append-only file keeps the answers).
Between phases the fault is undone and the load runs on, unmeasured, until the stack is whole.

Per phase it prints the calls that ended OK and RESOURCE_EXHAUSTED (and any other status), how
the OK ones were served, and latency p50/p99 of the exact-hit class and of every request, measured
from the scheduled start; answers that differ from the one stored are counted as wrong. For the
restarts, how long until the restarted piece answered the router's lookups again. Writes
benchmarks/results/chaos.json.

    .venv/bin/python benchmarks/chaos.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import ssl
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
from serving import RESULTS, cache_query, prompt

from subsecond.router.metrics import SERVED_BY
from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2_grpc, types_pb2
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

log = logging.getLogger("chaos")

EXACT, SEMANTIC, MISS = "exact", "semantic", "miss"
STOP = types_pb2.FINISH_REASON_STOP
COUNTRIES = (
    "France", "Germany", "Italy", "Spain", "Portugal", "Norway", "Sweden", "Poland",
    "Greece", "Egypt", "Kenya", "Japan", "Canada", "Peru", "Chile", "Vietnam",
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    kind: str  # the class the request was sent as
    started: float  # scheduled start, monotonic
    seconds: float
    code: str  # gRPC status name
    served_by: str  # exact, semantic, generated, static; "" when it failed
    wrong: bool  # a cached answer other than the one stored for its prompt


@dataclass(frozen=True)
class Phase:
    name: str
    start: float
    end: float
    note: str = ""


class Load:
    """Open-loop arrivals per class, each request timed from its scheduled start and recorded."""

    def __init__(self, router: router_pb2_grpc.RouterStub, args: argparse.Namespace) -> None:
        self._router = router
        self._deadline = args.deadline
        self.exact: dict[str, str] = {}
        self.semantic: dict[str, str] = {}
        self.outcomes: list[Outcome] = []
        self._stopped = asyncio.Event()

    async def run(self, rates: dict[str, float]) -> None:
        await asyncio.gather(*(self._arrivals(kind, rate) for kind, rate in rates.items() if rate > 0))

    def stop(self) -> None:
        self._stopped.set()

    async def _arrivals(self, kind: str, rate: float) -> None:
        tasks = []
        start = time.monotonic()
        i = 0
        while not self._stopped.is_set():
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
            tasks.append(asyncio.create_task(self._one(kind, i, scheduled)))
            i += 1
        await asyncio.gather(*tasks)

    async def _one(self, kind: str, i: int, scheduled: float) -> None:
        expected = ""
        if kind == EXACT:
            text, expected = list(self.exact.items())[i % len(self.exact)]
        elif kind == SEMANTIC:
            text, expected = list(self.semantic.items())[i % len(self.semantic)]
        else:
            text = f"({uuid.uuid4().hex[:8]}) Tell me a fact about the number {i + 17}."
        code, served_by, answer = "OK", "", ""
        try:
            async for response in self._router.Generate(prompt(text, max_tokens=8), timeout=self._deadline):
                answer += response.text
                if response.HasField("done"):
                    served_by = SERVED_BY[response.done.served_by]
        except grpc.aio.AioRpcError as error:
            code = error.code().name
        wrong = served_by in ("exact", "semantic") and bool(expected) and answer != expected
        self.outcomes.append(Outcome(kind, scheduled, time.monotonic() - scheduled, code, served_by, wrong))


def percentiles(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p99_ms": None}
    ms = np.array(seconds) * 1000.0
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1)}


def summarise(phase: Phase, outcomes: list[Outcome]) -> dict[str, object]:
    inside = [o for o in outcomes if phase.start <= o.started < phase.end]
    codes = Counter(o.code for o in inside)
    served = Counter(o.served_by for o in inside if o.code == "OK")
    exact_class = [o for o in inside if o.kind == EXACT]
    return {
        "phase": phase.name,
        "seconds": round(phase.end - phase.start, 1),
        "requests": len(inside),
        "ok": codes.pop("OK", 0),
        "resource_exhausted": codes.pop("RESOURCE_EXHAUSTED", 0),
        "other_errors": dict(codes),
        "served": {name: served.get(name, 0) for name in ("exact", "semantic", "generated")},
        "exact_class_ok": sum(o.code == "OK" for o in exact_class),
        "exact_class_resource_exhausted": sum(o.code == "RESOURCE_EXHAUSTED" for o in exact_class),
        "wrong_answers": sum(o.wrong for o in inside),
        "exact_class": percentiles([o.seconds for o in exact_class if o.code == "OK"]),
        # The slowest exact-class requests: when in the phase they started (s) and how long they took (ms).
        "exact_class_slowest": [
            (round(o.started - phase.start, 2), round(o.seconds * 1000, 1))
            for o in sorted(exact_class, key=lambda o: o.seconds)[-3:]
        ],
        "all": percentiles([o.seconds for o in inside if o.code == "OK"]),
        "note": phase.note,
    }


def table(rows: list[dict[str, object]]) -> str:
    def ms(values: object) -> str:
        assert isinstance(values, dict)
        return " / ".join("-" if values[k] is None else f"{values[k]:,}" for k in ("p50_ms", "p99_ms"))

    lines = [
        "| phase | OK | RESOURCE_EXHAUSTED | other errors | served exact / semantic / generated "
        "| exact-class p50 / p99 ms | all p50 / p99 ms | wrong | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        served = row["served"]
        assert isinstance(served, dict)
        lines.append(
            f"| {row['phase']} | {row['ok']}/{row['requests']} | {row['resource_exhausted']} "
            f"| {row['other_errors'] or 0} | {served['exact']} / {served['semantic']} / {served['generated']} "
            f"| {ms(row['exact_class'])} | {ms(row['all'])} | {row['wrong_answers']} | {row['note']} |"
        )
    return "\n".join(lines)


async def metric_total(port: int, sample: str, context: ssl.SSLContext | None) -> float:
    """The sum of the samples on the /metrics page at ``port`` (HTTPS trusting ``context`` when given)
    whose line starts with ``sample`` (a name and the start of its labels); 0 while nothing answers there."""
    try:
        connecting = asyncio.open_connection("127.0.0.1", port, ssl=context)
        reader, writer = await asyncio.wait_for(connecting, 1.0)
    except (OSError, TimeoutError):
        return 0.0
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    body = (await asyncio.wait_for(reader.read(), 2.0)).decode(errors="replace")
    writer.close()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(sample))


async def seconds_until_used(
    port: int, sample: str, since: float, context: ssl.SSLContext | None, give_up: float = 30.0
) -> str:
    """Seconds from ``since`` until the counter ``sample`` on the metrics page at ``port`` grows."""
    before = await metric_total(port, sample, context)
    while (await metric_total(port, sample, context)) <= before:
        if time.monotonic() - since > give_up:
            return f"not within {give_up:.0f} s"
        await asyncio.sleep(0.05)
    return f"{time.monotonic() - since:.2f} s"


async def prime(stack: Stack, cache: cache_pb2_grpc.CacheStub, load: Load, exact_count: int) -> None:
    """Answers stored straight into the cache: one per exact prompt, and one per country whose
    paraphrase the cache answers semantically (found with direct lookups)."""
    for i in range(exact_count):
        text = f"What is the speed of sound in medium number {i}? Answer in one sentence."
        load.exact[text] = f"About {300 + i} metres a second."
    questions = {f"What is the capital of {place}?": f"What's the capital city of {place}?" for place in COUNTRIES}
    stored = load.exact | {asked: f"The capital of {asked.split()[-1][:-1]}." for asked in questions}
    for text, answer in stored.items():
        cached = cache_pb2.CachedAnswer(chunks=[answer], completion_tokens=6, finish_reason=STOP)
        await cache.Store(cache_pb2.StoreRequest(query=cache_query(text), answer=cached), timeout=10)
    for asked, paraphrase in questions.items():
        lookup = await cache.Lookup(cache_pb2.LookupRequest(query=cache_query(paraphrase), semantic=True), timeout=10)
        if lookup.hit and lookup.tier == cache_pb2.CACHE_TIER_SEMANTIC:
            load.semantic[paraphrase] = stored[asked]
    if not load.semantic:
        raise RuntimeError("no paraphrase was a semantic hit; the semantic class would be empty")
    log.info("primed %d exact prompts and %d semantic paraphrases", len(load.exact), len(load.semantic))


async def chaos(args: argparse.Namespace) -> dict[str, object]:
    run_dir = Path(tempfile.mkdtemp(prefix="subsecond-chaos-"))
    stack = Stack(StackConfig(ports=Ports.free(), run_dir=run_dir))
    log.info("starting the stack (logs in %s)", run_dir)
    await stack.start()
    ports = stack.config.ports
    phases: list[Phase] = []
    try:
        async with (
            stack.channel("router", as_service=None) as router_channel,
            stack.channel("cache") as cache_channel,
        ):
            load = Load(router_pb2_grpc.RouterStub(router_channel), args)
            await prime(stack, cache_pb2_grpc.CacheStub(cache_channel), load, args.exact_prompts)
            running = asyncio.create_task(
                load.run({EXACT: args.exact_rate, SEMANTIC: args.semantic_rate, MISS: args.miss_rate})
            )
            await asyncio.sleep(args.settle_seconds)  # the near cache and connections as in steady use

            async def measured(name: str, fault: Callable[[], Awaitable[str]] | None = None) -> None:
                start = time.monotonic()
                note = ""
                if fault is not None:
                    waiting = asyncio.create_task(fault())
                    await asyncio.sleep(args.fault_seconds)
                    note = await waiting
                else:
                    await asyncio.sleep(args.fault_seconds)
                phases.append(Phase(name, start, time.monotonic(), note))
                log.info("phase done: %s %s", name, note)

            def stopped(name: str) -> Callable[[], Awaitable[str]]:
                async def fault() -> str:
                    stack.signal(name, signal.SIGSTOP)
                    return ""

                return fault

            def killed(name: str) -> Callable[[], Awaitable[str]]:
                async def fault() -> str:
                    stack.kill_process(name)
                    return ""

                return fault

            async def cache_restarted() -> str:
                started = time.monotonic()
                await stack.restart_service("cache")
                serving = time.monotonic() - started
                lookups = "subsecond_cache_lookups_total{"
                used = await seconds_until_used(ports.cache_metrics, lookups, started, stack.metrics_ssl_context())
                return f"serving {serving:.1f} s after its start; the router's lookups reached it at {used}"

            async def redis_restarted() -> str:
                stack.kill_process("redis")
                started = time.monotonic()
                await stack.restart_redis()
                back = time.monotonic() - started
                exact = 'subsecond_cache_lookups_total{result="exact"}'
                used = await seconds_until_used(ports.cache_metrics, exact, started, stack.metrics_ssl_context())
                return f"answering {back:.1f} s after the kill; exact hits from the cache again at {used}"

            await measured("baseline")
            await measured("Redis stopped (SIGSTOP)", stopped("redis"))
            stack.signal("redis", signal.SIGCONT)
            await asyncio.sleep(args.settle_seconds)
            await measured("Redis killed", killed("redis"))
            await stack.restart_redis()
            await asyncio.sleep(args.settle_seconds)
            await measured("cache service stopped (SIGSTOP)", stopped("cache"))
            stack.signal("cache", signal.SIGCONT)
            await asyncio.sleep(args.settle_seconds)
            await measured("cache service killed", killed("cache"))
            await measured("cache service restarted (data intact)", cache_restarted)
            await asyncio.sleep(args.settle_seconds)
            await measured("Redis restarted", redis_restarted)
            load.stop()
            await running
    finally:
        await stack.stop()
    rows = [summarise(phase, load.outcomes) for phase in phases]
    return {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "load": {
            "exact_per_s": args.exact_rate,
            "semantic_per_s": args.semantic_rate,
            "miss_per_s": args.miss_rate,
            "deadline_s": args.deadline,
            "fault_s": args.fault_seconds,
            "exact_prompts": len(load.exact),
            "semantic_prompts": len(load.semantic),
        },
        "phases": rows,
        "table": table(rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exact-rate", type=float, default=20.0, help="exact-hit arrivals/s (default: %(default)s)")
    parser.add_argument("--semantic-rate", type=float, default=5.0, help="semantic-hit arrivals/s (%(default)s)")
    parser.add_argument("--miss-rate", type=float, default=0.5, help="miss arrivals/s (default: %(default)s)")
    parser.add_argument("--deadline", type=float, default=15.0, help="client deadline, s (default: %(default)s)")
    parser.add_argument("--fault-seconds", type=float, default=8.0, help="length of each phase (default: %(default)s)")
    parser.add_argument("--settle-seconds", type=float, default=3.0, help="unmeasured load between phases")
    parser.add_argument("--exact-prompts", type=int, default=40, help="distinct exact-hit prompts (%(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS / "chaos.json", help="where the figures go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = asyncio.run(chaos(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(results["table"])


if __name__ == "__main__":
    main()
