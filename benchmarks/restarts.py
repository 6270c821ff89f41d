"""What a restart of each piece of the stack costs on this machine: Redis, the cache, embedding and
generation services, Triton and the router, each stopped and started again in turn under the stack
runner (as `subsecond up` runs them), with everything else left running.

For each piece: how long it took to stop (SIGTERM; Redis also killed with SIGKILL), how long until it
reported up again (Redis answering PING, Triton ready, a service SERVING on grpc.health.v1), and how long
until the router served through it again the request that needs it (an exact hit for Redis, the cache
and the router; a semantic hit for embedding; a generated answer for generation and Triton), counted
from the start command. What is lost: Redis is filled with answers through the cache service first and
counted after; for the others, whether the answer cached before the restart is still an exact hit.
Writes benchmarks/results/restarts.json.

    .venv/bin/python benchmarks/restarts.py --help
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import signal
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
import redis.asyncio as redis

from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.stack.runner import Ports, Stack, StackConfig

log = logging.getLogger("restarts")
RESULTS = Path(__file__).resolve().parent / "results"
QUESTION = "What is the capital of France? Answer in one sentence."
PARAPHRASE = "What's the capital city of France? Answer in one sentence."
PROBE_INTERVAL_SECONDS = 0.02
GIVE_UP_SECONDS = 300.0

EXACT, SEMANTIC, GENERATED = types_pb2.SERVED_BY_EXACT, types_pb2.SERVED_BY_SEMANTIC, types_pb2.SERVED_BY_GENERATED


async def served_by(router: router_pb2_grpc.RouterStub, request: router_pb2.GenerateRequest) -> int | None:
    """How the router served the request, or None if it failed."""
    try:
        async for response in router.Generate(request, timeout=30):
            if response.HasField("done"):
                return int(response.done.served_by)
    except grpc.aio.AioRpcError:
        return None
    return None


def ask(text: str, *, bypass: bool = False) -> router_pb2.GenerateRequest:
    mode = router_pb2.CACHE_MODE_BYPASS if bypass else router_pb2.CACHE_MODE_USE
    return router_pb2.GenerateRequest(prompt=text, max_tokens=24, cache=router_pb2.CachePolicy(mode=mode))


async def seconds_until(check: Callable[[], Awaitable[bool]], since: float) -> float:
    """Seconds from ``since`` until ``check`` first holds, trying every PROBE_INTERVAL_SECONDS."""
    while not await check():
        if time.monotonic() - since > GIVE_UP_SECONDS:
            raise TimeoutError("the piece never served again")
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)
    return round(time.monotonic() - since, 3)


async def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except redis.RedisError:
        return False
    finally:
        await client.aclose()


async def fill(cache: cache_pb2_grpc.CacheStub, count: int) -> list[str]:
    """Stores ``count`` answers through the cache service; their Redis keys."""
    queries = [
        cache_pb2.CacheQuery(
            tenant="restarts",
            model="small",
            messages=[types_pb2.ChatMessage(role="user", content=f"stored question {i}")],
            sampling=types_pb2.SamplingParams(top_p=1.0),
        )
        for i in range(count)
    ]
    answer = cache_pb2.CachedAnswer(
        chunks=["An answer."], completion_tokens=3, finish_reason=types_pb2.FINISH_REASON_STOP
    )
    return [(await cache.Store(cache_pb2.StoreRequest(query=query, answer=answer))).key for query in queries]


async def still_cached(url: str, keys: list[str]) -> int:
    """How many of the keys Redis holds (asked directly: a lookup through the cache could be a bypass)."""
    client = redis.Redis.from_url(url)
    try:
        return sum([bool(await client.exists(key)) for key in keys])
    finally:
        await client.aclose()


async def restart(
    stack: Stack,
    router: router_pb2_grpc.RouterStub,
    piece: str,
    probe: router_pb2.GenerateRequest,
    expected: int,
    sig: signal.Signals = signal.SIGTERM,
) -> dict[str, object]:
    """Stops ``piece`` (``sig``), starts it again, and times each step."""
    stopping = time.monotonic()
    if sig != signal.SIGTERM:
        stack.signal(piece, sig)
    code = await asyncio.to_thread(stack.stop_process, piece)
    stop_seconds = round(time.monotonic() - stopping, 3)
    starting = time.monotonic()
    if piece == "redis":
        stack.start_redis()
        up = await seconds_until(lambda: redis_answers(stack.redis_url), starting)
    elif piece == "triton":
        await asyncio.to_thread(stack.start_triton)
        await stack.wait_triton()
        up = round(time.monotonic() - starting, 3)
    else:
        await stack.restart_service(piece)
        up = round(time.monotonic() - starting, 3)

    async def serves() -> bool:
        return await served_by(router, probe) == expected

    serving = await seconds_until(serves, starting)
    exact_after = await served_by(router, ask(QUESTION)) == EXACT
    result: dict[str, object] = {
        "piece": piece,
        "signal": sig.name,
        "exit_code": code,
        "stop_s": stop_seconds,
        "up_s": up,
        "serving_again_s": serving,
        "probe": types_pb2.ServedBy.Name(expected),
        "cached_answer_still_exact": exact_after,
    }
    log.info("%s", result)
    return result


async def bench(args: argparse.Namespace) -> dict[str, object]:
    run_dir = Path(tempfile.mkdtemp(prefix="subsecond-restarts-"))
    stack = Stack(StackConfig(ports=Ports.free(), run_dir=run_dir))
    log.info("starting the stack in %s", run_dir)
    await stack.start()
    results: dict[str, object] = {"machine": platform.platform(), "cpus": os.cpu_count()}
    try:
        async with (
            stack.channel("router", as_service=None) as router_channel,
            stack.channel("cache") as cache_channel,
        ):
            router = router_pb2_grpc.RouterStub(router_channel)
            cache = cache_pb2_grpc.CacheStub(cache_channel)
            await served_by(router, ask(QUESTION))  # generated, then cached
            assert await served_by(router, ask(QUESTION)) == EXACT
            assert await served_by(router, ask(PARAPHRASE)) == SEMANTIC

            rows = []
            for sig in (signal.SIGTERM, signal.SIGKILL):
                keys = await fill(cache, args.answers)
                row = await restart(stack, router, "redis", ask(QUESTION), EXACT, sig)
                row["answers_kept"] = f"{await still_cached(stack.redis_url, keys)} of {len(keys)}"
                rows.append(row)
            rows.append(await restart(stack, router, "cache", ask(QUESTION), EXACT))
            rows.append(await restart(stack, router, "embedding", ask(PARAPHRASE), SEMANTIC))
            rows.append(await restart(stack, router, "generation", ask(QUESTION, bypass=True), GENERATED))
            rows.append(await restart(stack, router, "triton", ask(QUESTION, bypass=True), GENERATED))
            rows.append(await restart(stack, router, "router", ask(QUESTION), EXACT))
            results["restarts"] = rows
    finally:
        await stack.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--answers", type=int, default=2000, help="answers stored before each Redis restart (default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "restarts.json", help="where the figures go")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = asyncio.run(bench(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
