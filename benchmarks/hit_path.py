"""Where an exact hit's time goes: the router's hit against this machine's floor for a Python gRPC server.

Targets, all up at once and all serving TLS with the same certificate, as the local stack's router does:

- ``echo``: a bare grpc.aio server (no interceptor, no health, no metrics) whose ``Router/Generate`` yields
  one prebuilt final message: what any Python server costs a call here;
- ``near``: the real router (``python -m subsecond.router``, the local stack's settings) answering from
  its near cache;
- ``cache-served``: the same router with the near cache off, so every hit makes the hop to the cache;

each router with ``PROCESSES`` of ``--router-processes``; on request (``--targets``) also ``shell-echo``, the
echo's servicer in the kit's server shell, and ``sync-echo``, the echo on gRPC's synchronous server; and
with ``--baseline`` a second set of routers running another source tree's code (an A/B in one run).
The cache is a stand-in process (the kit's server shell, mutual TLS and the caller check as in the
stack) that answers every ``Lookup`` with an exact hit. Each round sends ``--calls`` calls at ``--rate``
a second, open loop, to every target in turn (the order rotating between rounds), from this process's
grpc.aio client (latency from the scheduled start, as benchmarks/serving.py measures); the CPU of the
client and of each server process tree is read over each round. With ``--k6`` the same targets are then
driven by k6 (a compiled client; its iteration time, which covers the stream), and with
``--loadtest-rates`` by the load test's own k6 run (loadtest/run.py) at each rate, ``--loadtest-rounds``
times with rates and targets interleaved (``--py-spy``: the server sampled meanwhile, time per call by
function). ``--own-path-rounds`` measures subsecond's own path of a near hit without gRPC, in one thread,
for this tree and the baseline in turn. Medians over rounds go to benchmarks/results/hit_path.json.

    .venv/bin/python benchmarks/hit_path.py [--rate 100] [--calls 600] [--rounds 3] [--k6]
    .venv/bin/python benchmarks/hit_path.py --targets near --router-processes 2 --rounds 0
        --baseline /tmp/base --loadtest-rates 200,250,300 --loadtest-rounds 3 [--py-spy 30]  (one line)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from serving import first_and_total, open_loop, prompt

from subsecond.kit.server import ServiceDefinition, start_server
from subsecond.kit.settings import EnvReader, ServerSettings
from subsecond.v1 import cache_pb2, cache_pb2_grpc, router_pb2, router_pb2_grpc, types_pb2
from subsecond_tools.stack.certificates import StackCertificates, write_certificates

log = logging.getLogger("hit_path")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
K6 = Path(sys.executable).parent / "k6"
PY_SPY = Path(sys.executable).parent / "py-spy"
PROFILE_HZ = 200
QUESTION = "What is the capital of France? Answer in one sentence."
ANSWER = cache_pb2.CachedAnswer(
    chunks=["Paris is the capital", " of France."], completion_tokens=8, finish_reason=types_pb2.FINISH_REASON_STOP
)
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The near cache off: every hit makes the hop to the cache.
NEAR_CACHE_OFF = {"NEAR_CACHE_FRESH_SECONDS": "0", "NEAR_CACHE_STALE_SECONDS": "0"}


class Echo(router_pb2_grpc.RouterServicer):
    """Answers every Generate with one prebuilt final message, as a near-cache hit's stream is one message."""

    REPLY = router_pb2.GenerateResponse(
        text="Paris is the capital of France.", done=router_pb2.Completion(served_by=types_pb2.SERVED_BY_EXACT)
    )

    async def Generate(
        self, request: router_pb2.GenerateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[router_pb2.GenerateResponse]:
        yield self.REPLY


class ExactHits(cache_pb2_grpc.CacheServicer):
    """The stand-in cache: every lookup an exact hit, every store accepted."""

    async def Lookup(
        self, request: cache_pb2.LookupRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LookupResponse:
        return cache_pb2.LookupResponse(hit=True, tier=cache_pb2.CACHE_TIER_EXACT, answer=ANSWER, age_seconds=1.0)

    async def Store(
        self, request: cache_pb2.StoreRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StoreResponse:
        return cache_pb2.StoreResponse()


def router_credentials() -> grpc.ServerCredentials:
    """The router's certificate and key, named by its settings in the environment."""
    cert, key = (Path(os.environ[f"SUBSECOND_ROUTER_TLS_{name}_FILE"]).read_bytes() for name in ("CERT", "KEY"))
    return grpc.ssl_server_credentials([(key, cert)])


async def serve_echo(port: int) -> None:
    """The bare server, with the router's certificate from its settings in the environment."""
    server = grpc.aio.server()
    router_pb2_grpc.add_RouterServicer_to_server(Echo(), server)
    server.add_secure_port(f"127.0.0.1:{port}", router_credentials())
    await server.start()
    await server.wait_for_termination()


class SyncEcho(router_pb2_grpc.RouterServicer):
    """Echo's answer from gRPC's thread-pool server, whose handlers are plain generators."""

    def Generate(  # type: ignore[override]
        self, request: router_pb2.GenerateRequest, context: grpc.ServicerContext
    ) -> Iterator[router_pb2.GenerateResponse]:
        yield Echo.REPLY


async def serve_sync_echo(port: int) -> None:
    """The bare server on gRPC's synchronous stack (a thread pool), for comparison only."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    router_pb2_grpc.add_RouterServicer_to_server(SyncEcho(), server)
    server.add_secure_port(f"127.0.0.1:{port}", router_credentials())
    server.start()
    await asyncio.to_thread(server.wait_for_termination)


async def serve_shell_echo(port: int) -> None:
    """The same servicer in the kit's server shell (its interceptors, health, reflection, metrics), with
    the router's TLS settings: what the shell costs a call, before any of the router's code."""
    env = EnvReader(os.environ, "SUBSECOND_ROUTER_")
    settings = ServerSettings.read(env, default_port=port, default_metrics_port=0)
    definition = ServiceDefinition.for_servicer(
        router_pb2.DESCRIPTOR.services_by_name["Router"], router_pb2_grpc.add_RouterServicer_to_server, Echo()
    )
    running = await start_server(settings, definition)
    await running.server.wait_for_termination()


async def serve_cache(port: int) -> None:
    """The stand-in cache in the kit's shell, with the cache's TLS settings from the environment."""
    settings = ServerSettings.read(EnvReader(os.environ, "SUBSECOND_CACHE_"), default_port=port, default_metrics_port=0)
    definition = ServiceDefinition.for_servicer(
        cache_pb2.DESCRIPTOR.services_by_name["Cache"], cache_pb2_grpc.add_CacheServicer_to_server, ExactHits()
    )
    running = await start_server(settings, definition)
    await running.server.wait_for_termination()


async def own_path(calls: int) -> None:
    """Prints the CPU of subsecond's own path of a near-cache hit (``RouterService.generate`` iterated
    to its end in this thread: no gRPC server, no client), µs a call, over ``calls`` calls; the router's
    settings from the environment, its near cache filled by one lookup of the stand-in cache first."""
    from subsecond.router.service import wire
    from subsecond.router.settings import RouterSettings

    service = wire(RouterSettings.from_env(os.environ)).definition
    servicer = _servicer(service)
    request = prompt(QUESTION)

    async def one() -> None:
        async for _ in servicer.generate({}, request, None, "grpc"):
            pass

    for _ in range(200):  # the near cache filled, the code paths warm
        await one()
    started = time.thread_time()
    for _ in range(calls):
        await one()
    print(f"{(time.thread_time() - started) / calls * 1e6:.2f}")


class _Registered:
    """Stands in for the server the servicers are registered on: keeps the method handlers."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.handlers |= handlers


def _servicer(definition: ServiceDefinition) -> Any:
    """The servicer ``definition`` registers (the router's ``RouterService``): its Generate's owner."""
    registered = _Registered()
    definition.register(registered)  # type: ignore[arg-type]
    return registered.handlers["Generate"].unary_stream.__self__


SERVERS = {"echo": serve_echo, "sync-echo": serve_sync_echo, "shell-echo": serve_shell_echo, "cache": serve_cache}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants (a supervisor's workers), from /proc."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Target:
    name: str
    port: int
    process: subprocess.Popen[bytes]


def router_environment(port: int, cache_port: int, processes: int, certificates: StackCertificates) -> dict[str, str]:
    """The local stack's router settings (benchmarks/serving.py's router), its cache the stand-in."""
    prefix = "SUBSECOND_ROUTER_"
    settings = {
        "PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "PROCESSES": str(processes),
        "CACHE_URL": f"127.0.0.1:{cache_port}",
        "GENERATION_URL": f"127.0.0.1:{free_port()}",
        "EMBEDDING_URL": f"127.0.0.1:{free_port()}",
        "TIERS": "small,large",
        "ALLOW_ANONYMOUS": "true",
        "AUTO_LARGE_TIER": "large",
        "TIER_MAX_TOKENS": "small=256,large=512",
        "TIER_PROMPT_TOKENS": "small=1024,large=1024",
        "STATIC_ROUTES_FILE": str(REPO / "examples" / "static-routes.yaml"),
        "LOG_LEVEL": "WARNING",
    }
    tls = certificates.environment("router", mutual=False)
    return {**os.environ, **{prefix + k: v for k, v in settings.items()}, **tls}


@contextmanager
def started(argv: list[str], env: dict[str, str], log_file: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log_file.open("ab") as out:
        process = subprocess.Popen(argv, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


async def wait_answering(stub: router_pb2_grpc.RouterStub, name: str) -> None:
    request = prompt(QUESTION)
    for _ in range(600):  # a minute: a loaded machine starts a router slowly
        try:
            if (await first_and_total(stub, request, time.perf_counter()))[2] == types_pb2.SERVED_BY_EXACT:
                return
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{name} never answered an exact hit")


async def python_round(target: Target, stub: router_pb2_grpc.RouterStub, rate: float, calls: int) -> dict[str, float]:
    request = prompt(QUESTION)

    async def one(i: int, t0: float) -> int:
        return (await first_and_total(stub, request, t0))[2]

    client_before, server_before = time.process_time(), tree_cpu_seconds(target.process.pid)
    figures = await open_loop(rate, calls, types_pb2.SERVED_BY_EXACT, one)
    client_cpu = time.process_time() - client_before
    server_cpu = tree_cpu_seconds(target.process.pid) - server_before
    cpu = {"client_cpu_us_per_call": client_cpu / calls * 1e6, "server_cpu_us_per_call": server_cpu / calls * 1e6}
    return figures | cpu


async def k6_round(
    target: Target, rate: float, seconds: float, ca_file: Path, out: Path, points: bool
) -> dict[str, float]:
    """One k6 run; ``points``: k6 also writes every sample as JSON, as loadtest/run.py has it do."""
    summary_path = out / f"k6-{target.name}.json"
    env = {
        **os.environ,
        "TARGET": f"127.0.0.1:{target.port}",
        "RATE": str(rate),
        "DURATION": str(seconds),
        "CA": str(ca_file),
        "PROTO_DIR": str(REPO / "proto"),
        "PROMPT": QUESTION,
    }
    argv = [str(K6), "run", "--quiet", "--no-color", "--no-usage-report", "--address", "127.0.0.1:0",
            "--summary-export", str(summary_path),
            *(["--out", f"json={out / 'points.json'}"] if points else []), str(HERE / "hit_path.js")]  # fmt: skip
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = tree_cpu_seconds(target.process.pid)
    k6 = await asyncio.create_subprocess_exec(*argv, env=env, stdout=asyncio.subprocess.DEVNULL)
    await k6.wait()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = tree_cpu_seconds(target.process.pid) - server_before
    metrics = json.loads(summary_path.read_text())["metrics"]
    iteration = metrics["iteration_duration"]
    calls = iteration["count"]
    k6_cpu = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    return {
        "n": calls,
        "p50_ms": round(iteration["med"], 3),
        "p95_ms": round(iteration["p(95)"], 3),
        "p99_ms": round(iteration["p(99)"], 3),
        "client_cpu_us_per_call": k6_cpu / calls * 1e6,
        "server_cpu_us_per_call": server_cpu / calls * 1e6,
    }


async def loadtest_run(
    target: Target, rate: float, seconds: float, ca_file: Path, out: Path, profile: Path | None = None
) -> dict[str, object]:
    """The load test's own k6 run (loadtest/run.py: its script, every sample written as JSON), exact hits
    only, at ``rate`` for ``seconds``: its p99 and the CPU per call of k6 and of the server. With
    ``profile``, py-spy samples the server's process tree meanwhile and writes its stacks there."""
    sys.path.insert(0, str(REPO / "loadtest"))  # run.py imports its report.py as a top-level module
    loadtest = importlib.import_module("run")
    options = loadtest.parser().parse_args(
        ["--mix", "repeats=1", "--duration", str(seconds), "--tls", "--ca", str(ca_file), "--out", str(out)]
    )
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_before = tree_cpu_seconds(target.process.pid)
    spying = None if profile is None else await py_spy(target.process.pid, seconds, profile)
    result = await loadtest.run_once(options, f"127.0.0.1:{target.port}", rate, "steady", out / f"{rate:g}", None)
    if spying is not None:
        await spying.wait()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    server_cpu = tree_cpu_seconds(target.process.pid) - server_before
    (phase,) = result.phases
    calls = max(1, int(phase["requests"]))
    k6_cpu = children.ru_utime + children.ru_stime - children_before.ru_utime - children_before.ru_stime
    return {"rate": rate, "requests": calls, "errors": phase["errors"]} | phase["latency"].get("exact", {}) | {
        "client_cpu_us_per_call": round(k6_cpu / calls * 1e6),
        "server_cpu_us_per_call": round(server_cpu / calls * 1e6),
    }


async def py_spy(pid: int, seconds: float, out: Path) -> asyncio.subprocess.Process:
    """py-spy sampling ``pid`` and its workers (not pausing them) for ``seconds``, its stacks written to
    ``out`` (one line per stack: frames by function, ``;``-separated, and the samples that had it)."""
    argv = [str(PY_SPY), "record", "--pid", str(pid), "--subprocesses", "--nonblocking", "--function",
            "--full-filenames", "--format", "raw", "--rate", str(PROFILE_HZ), "--duration", str(round(seconds)),
            "--output", str(out)]  # fmt: skip
    return await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.DEVNULL)


def profile_by_function(stacks: Path, calls: int, top: int) -> dict[str, object]:
    """Time per call by function, from py-spy's stacks: ``self`` where the function was running, ``total``
    where it was on the stack; the ``top`` of subsecond's own functions by total, the ``top`` of all by
    self, and the samples whose running function was subsecond's, gRPC's, or anything else's. py-spy
    samples threads that are not idle, which on a loaded machine includes waiting for a core: compare
    shares, not these figures with the CPU measured from /proc."""
    self_samples: dict[str, int] = {}
    total_samples: dict[str, int] = {}
    by_owner = {"subsecond": 0, "grpc": 0, "other": 0}
    for line in stacks.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        names = [_function(frame) for frame in frames.split(";")[1:]]  # the first is the process
        if not names:
            continue
        n = int(count)
        self_samples[names[-1]] = self_samples.get(names[-1], 0) + n
        for name in set(names):
            total_samples[name] = total_samples.get(name, 0) + n
        leaf = names[-1]
        by_owner["subsecond" if "/subsecond/" in leaf else "grpc" if "/grpc/" in leaf else "other"] += n

    def us_per_call(samples: int) -> float:
        return round(samples / PROFILE_HZ / calls * 1e6, 1)

    own = sorted((name for name in total_samples if "/subsecond/" in name), key=lambda n: -total_samples[n])[:top]
    running = sorted(self_samples, key=lambda n: -self_samples[n])[:top]
    return {
        "sampled_us_per_call": us_per_call(sum(by_owner.values())),
        "running_us_per_call": {owner: us_per_call(n) for owner, n in by_owner.items()},
        "running_most": {name.split("/site-packages/")[-1]: us_per_call(self_samples[name]) for name in running},
        "functions": [
            {
                "function": name.split("/services/")[-1],
                "total_us": us_per_call(total_samples[name]),
                "self_us": us_per_call(self_samples.get(name, 0)),
            }
            for name in own
        ],
    }


def _function(frame: str) -> str:
    """``name (path:line)`` as ``path:name``."""
    name, _, where = frame.partition(" (")
    return f"{where.rsplit(':', 1)[0]}:{name}"


def medians(rounds: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(r[key] for r in rounds), 3) for key in rounds[0]} | {"rounds": len(rounds)}


async def bench(args: argparse.Namespace, run_dir: Path) -> dict[str, object]:
    certificates = write_certificates(run_dir / "tls", ["router", "cache"])
    cache_port = free_port()
    me = [sys.executable, str(HERE / "hit_path.py")]
    specs: list[tuple[str, list[str], dict[str, str], int]] = []
    echo_port = free_port()
    echo_env = {**os.environ, **certificates.environment("router", mutual=False)}
    if "echo" in args.targets:
        specs.append(("echo", [*me, "--serve", "echo", "--port", str(echo_port)], echo_env, echo_port))
    for name in ("sync-echo", "shell-echo"):
        if name in args.targets:
            port = free_port()
            specs.append((name, [*me, "--serve", name, "--port", str(port)], echo_env, port))
    for processes in args.router_processes:
        for name, near in (("near", {}), ("cache-served", NEAR_CACHE_OFF)):
            if name not in args.targets:
                continue
            trees = {"": None} | ({" base": args.baseline} if args.baseline is not None else {})
            for label, tree in trees.items():
                port = free_port()
                env = router_environment(port, cache_port, processes, certificates)
                env.update({f"SUBSECOND_ROUTER_{k}": v for k, v in near.items()})
                env.update(args.router_env)
                if tree is not None:  # the baseline's router code first on the path
                    env["PYTHONPATH"] = os.pathsep.join([str(tree / "services"), env.get("PYTHONPATH", "")])
                specs.append((f"{name} P={processes}{label}", [sys.executable, "-m", "subsecond.router"], env, port))
    cache_argv = [*me, "--serve", "cache", "--port", str(cache_port)]
    results: dict[str, object] = {"rate_per_s": args.rate, "calls_per_round": args.calls}
    results["load_before"] = os.getloadavg()
    with ExitStack() as processes:
        cache_env = {**os.environ, **certificates.environment("cache")}
        processes.enter_context(started(cache_argv, cache_env, run_dir / "cache.log"))
        targets = [
            Target(name, port, processes.enter_context(started(argv, env, run_dir / f"{name.replace(' ', '-')}.log")))
            for name, argv, env, port in specs
        ]
        credentials = grpc.ssl_channel_credentials(certificates.ca_file.read_bytes())
        channels = {t.name: grpc.aio.secure_channel(f"127.0.0.1:{t.port}", credentials) for t in targets}
        stubs = {name: router_pb2_grpc.RouterStub(channel) for name, channel in channels.items()}
        for target in targets:
            await wait_answering(stubs[target.name], target.name)
            for _ in range(200):  # warm-up: connections, the near cache, the code paths
                await first_and_total(stubs[target.name], prompt(QUESTION), time.perf_counter())
        python: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
        for r in range(args.rounds):
            for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
                figures = await python_round(target, stubs[target.name], args.rate, args.calls)
                log.info("round %d %s: %s", r, target.name, figures)
                python[target.name].append(figures)
        if args.rounds:
            results["python_client"] = {name: medians(rounds) for name, rounds in python.items()}
        for channel in channels.values():
            await channel.close()
        if args.k6:
            k6: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
            for r in range(args.k6_rounds):
                for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
                    seconds = args.calls / args.rate
                    figures = await k6_round(target, args.rate, seconds, certificates.ca_file, run_dir, args.k6_points)
                    log.info("k6 round %d %s: %s", r, target.name, figures)
                    k6[target.name].append(figures)
            results["k6_client"] = {name: medians(rounds) for name, rounds in k6.items()}
        if args.own_path_rounds:
            results["own_path"] = await own_path_rounds(args, me, cache_port, certificates)
        if args.loadtest_rates:
            # Interleaved: each round runs every rate against every target (the order rotating), so a
            # change in the machine's load falls on both sides of an A/B alike.
            loadtest: dict[str, list[dict[str, object]]] = {t.name: [] for t in targets}
            for r in range(args.loadtest_rounds):
                for rate in args.loadtest_rates:
                    for target in targets[r % len(targets) :] + targets[: r % len(targets)]:
                        stacks = run_dir / f"stacks-{target.name.replace(' ', '-')}-{rate:g}-{r}.txt"
                        measured = await loadtest_run(
                            target, rate, args.loadtest_seconds, certificates.ca_file, run_dir / "loadtest",
                            stacks if args.py_spy else None,
                        )
                        if args.py_spy:
                            calls = int(measured["requests"])  # type: ignore[call-overload]
                            measured["profile"] = profile_by_function(stacks, calls, args.py_spy)
                        log.info("load test round %d %s: %s", r, target.name, measured)
                        loadtest[target.name].append(measured | {"round": r, "load": os.getloadavg()[0]})
            results["loadtest"] = loadtest
    results["load_after"] = os.getloadavg()
    return results


async def own_path_rounds(
    args: argparse.Namespace, me: list[str], cache_port: int, certificates: StackCertificates
) -> dict[str, object]:
    """subsecond's own path of a near-cache hit (``own_path``), this tree's and the baseline's in turn,
    each round a process of each: CPU µs a call, the median over rounds and every round's."""
    trees = [("near", None)] + ([("near base", args.baseline)] if args.baseline is not None else [])
    rounds: dict[str, list[float]] = {name: [] for name, _ in trees}
    for r in range(args.own_path_rounds):
        for name, tree in trees[r % len(trees) :] + trees[: r % len(trees)]:
            env = router_environment(free_port(), cache_port, 1, certificates)
            env |= {f"SUBSECOND_ROUTER_{k}": "3600" for k in NEAR_CACHE_OFF}  # one fill serves every call
            if tree is not None:
                env["PYTHONPATH"] = os.pathsep.join([str(tree / "services"), env.get("PYTHONPATH", "")])
            measuring = await asyncio.create_subprocess_exec(
                *me, "--own-path", str(args.own_path_calls), env=env, stdout=asyncio.subprocess.PIPE
            )
            out, _ = await measuring.communicate()
            rounds[name].append(float(out.decode().split()[-1]))
            log.info("own path round %d %s: %.1f us a call", r, name, rounds[name][-1])
    return {name: {"cpu_us_per_call": round(statistics.median(v), 1), "rounds": v} for name, v in rounds.items()}


def table(results: dict[str, object]) -> str:
    lines = [
        "| client | target | p50 ms | p95 ms | p99 ms | client CPU µs/call | server CPU µs/call |",
        "|---|---|---|---|---|---|---|",
    ]
    for client in ("python_client", "k6_client"):
        for name, f in dict(results.get(client, {})).items():  # type: ignore[call-overload]
            lines.append(
                f"| {client.split('_')[0]} | {name} | {f['p50_ms']} | {f['p95_ms']} | {f['p99_ms']} | "
                f"{f['client_cpu_us_per_call']:.0f} | {f['server_cpu_us_per_call']:.0f} |"
            )
    own: dict[str, dict[str, float]] = results.get("own_path", {})  # type: ignore[assignment]
    lines += [f"own path of a near hit, {name}: {own[name]['cpu_us_per_call']} µs a call" for name in own]
    runs: dict[str, list[dict[str, float]]] = results.get("loadtest", {})  # type: ignore[assignment]
    if runs:
        lines += ["", "| load test: target | rate/s | rounds | p50 ms | p95 ms | p99 ms (each round) | failed | "
                  "server CPU µs/call |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, target_runs in runs.items():
        for rate in dict.fromkeys(run["rate"] for run in target_runs):
            at = [run for run in target_runs if run["rate"] == rate]

            def median(key: str, at: list[dict[str, float]] = at) -> float:
                return statistics.median(run.get(key, float("nan")) for run in at)

            each = ", ".join(f"{run.get('p99_ms', float('nan')):.1f}" for run in at)
            lines.append(
                f"| {name} | {rate:g} | {len(at)} | {median('p50_ms'):.2f} | {median('p95_ms'):.2f} | "
                f"{median('p99_ms'):.2f} ({each}) | {sum(run['errors'] for run in at):g} | "
                f"{median('server_cpu_us_per_call'):.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="arrivals a second (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=600, help="calls per target and round (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the Python client, 0: none (default: 3)")
    parser.add_argument("--k6", action="store_true", help="then drive the same targets with k6")
    parser.add_argument("--k6-rounds", type=int, default=2, help="rounds of k6 (default: %(default)s)")
    parser.add_argument("--k6-points", action="store_true", help="k6 writes every sample as JSON (as the load test)")
    parser.add_argument(
        "--router-processes", type=lambda text: [int(n) for n in text.split(",")], default=[1, 2],
        help="PROCESSES of the routers measured, comma-separated (default: 1,2)",
    )
    parser.add_argument(
        "--router-env", action="append", default=[], type=lambda text: tuple(text.split("=", 1)),
        help="NAME=VALUE added to every router's SUBSECOND_ROUTER_ settings (repeatable)",
    )
    parser.add_argument(
        "--targets", type=lambda text: text.split(","), default=["echo", "near", "cache-served"],
        help="which of echo, sync-echo, shell-echo, near, cache-served (default: echo, near, cache-served)",
    )
    parser.add_argument(
        "--loadtest-rates", type=lambda text: [float(r) for r in text.split(",")], default=[],
        help="then the load test's own k6 run (loadtest/run.py) at each of these rates, against each target",
    )
    parser.add_argument("--loadtest-seconds", type=float, default=15.0, help="seconds per load-test rate")
    parser.add_argument("--loadtest-rounds", type=int, default=1, help="interleaved rounds of the load test")
    parser.add_argument(
        "--py-spy", type=int, default=0, metavar="TOP",
        help="py-spy samples each load-test run's server: time per call by function, subsecond's TOP functions",
    )  # fmt: skip
    parser.add_argument(
        "--baseline", type=Path, help="another source tree (git archive of a commit): its routers run beside these"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "hit_path.json")
    parser.add_argument(
        "--own-path-rounds", type=int, default=0,
        help="rounds of subsecond's own path of a near hit in one thread, no gRPC (this tree and --baseline)",
    )  # fmt: skip
    parser.add_argument("--own-path-calls", type=int, default=3000, help="calls per own-path round")
    parser.add_argument("--own-path", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve", choices=tuple(SERVERS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.serve is not None:
        asyncio.run(SERVERS[args.serve](args.port))
        return
    if args.own_path is not None:
        asyncio.run(own_path(args.own_path))
        return
    args.router_env = {f"SUBSECOND_ROUTER_{k}": v for k, v in args.router_env}
    with tempfile.TemporaryDirectory(prefix="subsecond-hit-path-") as directory:
        try:
            results = asyncio.run(bench(args, Path(directory)))
        except RuntimeError:
            for log_file in Path(directory).glob("*.log"):
                log.error("%s:\n%s", log_file.name, log_file.read_text()[-3000:])
            raise
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
