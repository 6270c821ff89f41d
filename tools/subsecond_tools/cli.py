"""The ``subsecond`` command: run the stack on one machine, and ask it questions.

subsecond prepare            build the ONNX embedding model, embed the tier examples, unpack tritonserver
subsecond up                 run Redis, Triton and the four services until Ctrl-C
subsecond ask "question"     stream an answer from the router and say how it was served
subsecond workflow FILE      run a workflow (YAML or JSON) and show its steps as they run
subsecond routes             list the router's static routes
subsecond cache stats|invalidate   read or clear the cache through the router (admin keys)

Every command that calls the router speaks TLS to it when it knows a CA: ``--ca`` (or
``$SUBSECOND_CA_FILE``), else the local stack's (``.cache/run/tls/ca.pem``, written by ``subsecond
up``) when ``--router`` is on loopback; ``--cert``/``--key`` present a client certificate;
``--plaintext`` forces plaintext (``subsecond up --insecure``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
from pathlib import Path

import grpc

from subsecond.router.auth import SCOPES, hash_key
from subsecond.v1 import router_pb2, router_pb2_grpc, types_pb2

SERVED_BY = {
    types_pb2.SERVED_BY_EXACT: "exact cache",
    types_pb2.SERVED_BY_SEMANTIC: "semantic cache",
    types_pb2.SERVED_BY_GENERATED: "generated",
    types_pb2.SERVED_BY_STATIC: "static route",
}
FINISH = {types_pb2.FINISH_REASON_STOP: "stop", types_pb2.FINISH_REASON_LENGTH: "length"}


def _prepare(_: argparse.Namespace) -> int:
    from subsecond_tools.embedding_export import export_model
    from subsecond_tools.stack.runner import StackConfig
    from subsecond_tools.stack.tier_examples import build_tier_embeddings
    from subsecond_tools.stack.triton import ensure_tritonserver
    from subsecond_tools.verifier_train import build as build_verifier

    config = StackConfig()
    export_model(config.model_dir)
    build_verifier(config.verifier_dir, config.semantic_data_dir)
    build_tier_embeddings(config.model_dir, config.tier_embeddings)
    ensure_tritonserver(config.tools_dir)
    return 0


def _up(args: argparse.Namespace) -> int:
    from subsecond_tools.stack.runner import Stack, StackConfig

    stack = Stack(StackConfig(tls=not args.insecure))

    async def run() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        print("starting Redis, Triton and the services (first start loads the models)...", flush=True)
        await stack.start()
        ports = stack.config.ports
        scheme = "https" if stack.ca_file else "http"
        grpcurl = f"-cacert {stack.ca_file}" if stack.ca_file else "-plaintext"
        curl = f"--cacert {stack.ca_file} {scheme}" if stack.ca_file else scheme
        services = "\n".join(
            f"  {service:<11} {stack.address(service)}   (metrics {scheme}://localhost:{port}/metrics)"
            for service, port in (
                ("router", ports.router_metrics),
                ("cache", ports.cache_metrics),
                ("embedding", ports.embedding_metrics),
                ("generation", ports.generation_metrics),
            )
        )
        security = (
            f"  TLS         mutual between the services, TLS on the router; CA {stack.ca_file}\n"
            if stack.ca_file
            else "  TLS         off (--insecure): plaintext, inner services check service tokens\n"
        )
        print(
            f"\nsubsecond is up:\n{services}\n"
            f"  HTTP API    {scheme}://localhost:{ports.router_http}/v1   (OpenAI-compatible, served by the router)\n"
            f"  triton      127.0.0.1:{ports.triton_grpc} (gRPC), metrics http://127.0.0.1:{ports.triton_metrics}/metrics\n"
            f"  redis       {stack.redis_url}\n"
            f"{security}"
            f"  logs        {stack.config.run_dir}/\n\n"
            'Try:  .venv/bin/subsecond ask "What is the capital of France?"   (twice: the second is a cache hit)\n'
            f"      grpcurl {grpcurl} 127.0.0.1:{ports.router} list\n"
            f"      curl -N {curl}://localhost:{ports.router_http}/v1/chat/completions "
            "-H 'content-type: application/json' "
            """-d '{"model": "auto", "stream": true, "messages": [{"role": "user", "content": "Hi!"}]}'\n\n"""
            "Ctrl-C stops everything.",
            flush=True,
        )
        await stopping.wait()
        print("\nstopping...", flush=True)
        await stack.stop()
        print("stopped; nothing left running.", flush=True)

    asyncio.run(run())
    return 0


def _ask(args: argparse.Namespace) -> int:
    request = router_pb2.GenerateRequest(
        prompt=args.prompt,
        model=args.model,
        max_tokens=args.max_tokens,
        sampling=types_pb2.SamplingParams(temperature=args.temperature),
        cache=router_pb2.CachePolicy(mode=f"CACHE_MODE_{args.cache.upper()}"),
        chunking=router_pb2.CHUNKING_SENTENCE if args.sentences else router_pb2.CHUNKING_TOKEN,
        task=args.task,
        replay=router_pb2.REPLAY_PACED if args.paced else router_pb2.REPLAY_AT_ONCE,
    )
    metadata = _metadata(args)

    async def run() -> int:
        async with _router_channel(args) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            try:
                async for response in stub.Generate(request, timeout=args.timeout, metadata=metadata):
                    sys.stdout.write(("\n" if args.sentences and response.index else "") + response.text)
                    sys.stdout.flush()
                    if response.HasField("done"):
                        print(f"\n\n[{_describe(response.done)}]", file=sys.stderr)
            except grpc.aio.AioRpcError as error:
                print(f"\nerror: {error.code().name}: {error.details()}", file=sys.stderr)
                return 1
        return 0

    return asyncio.run(run())


def _describe(done: router_pb2.Completion) -> str:
    """One line on how an answer was served."""
    served = SERVED_BY.get(done.served_by, "?")
    if done.served_by == types_pb2.SERVED_BY_SEMANTIC:
        served += f", similarity {done.similarity:.3f}"
    if done.static_route:
        served += f" {done.static_route}"
    parts = [
        served + (f", cached {done.cache_age_seconds:.0f} s ago" if done.cache_age_seconds else ""),
        f"model {done.model or '-'}" + (f" ({done.tier_reason})" if done.tier_reason else ""),
        f"first chunk {done.time_to_first_chunk_seconds * 1000:.1f} ms, total {done.total_seconds * 1000:.1f} ms",
        f"{done.prompt_tokens} prompt + {done.completion_tokens} completion tokens",
        f"finish {FINISH.get(done.finish_reason, '?')}",
    ]
    if done.trimmed_prompt_tokens:
        parts.append(f"history trimmed by ~{done.trimmed_prompt_tokens} tokens")
    if done.coalesced:
        parts.append("coalesced")
    return "; ".join(parts)


def _workflow(args: argparse.Namespace) -> int:
    import yaml
    from google.protobuf.json_format import ParseDict, ParseError

    try:
        document = yaml.safe_load(Path(args.file).read_text(encoding="utf-8"))
        request = ParseDict(document, router_pb2.WorkflowRequest())
    except (OSError, yaml.YAMLError, ParseError) as error:
        print(f"error: {args.file}: {error}", file=sys.stderr)
        return 2
    for pair in args.input:
        name, _, value = pair.partition("=")
        request.inputs[name] = value
    metadata = _metadata(args)

    async def run() -> int:
        async with _router_channel(args) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            texts: dict[str, list[str]] = {}
            try:
                async for event in stub.RunWorkflow(request, timeout=args.timeout, metadata=metadata):
                    at = f"{event.at_seconds * 1000:8.1f} ms"
                    if event.HasField("started"):
                        after = f" (after {', '.join(event.started.depends_on)})" if event.started.depends_on else ""
                        print(f"{at}  {event.step} started{after}", file=sys.stderr)
                    elif event.HasField("chunk"):
                        texts.setdefault(event.step, []).append(event.chunk.text)
                        if event.chunk.HasField("done"):
                            print(f"{at}  {event.step} finished [{_describe(event.chunk.done)}]", file=sys.stderr)
                    elif event.HasField("summary"):
                        summary = event.summary
                        for step, pieces in texts.items():
                            print(f"\n## {step}\n{''.join(pieces).strip()}")
                        print(
                            f"\n[workflow {summary.total_seconds * 1000:.0f} ms; critical path "
                            f"{' -> '.join(summary.critical_path)} {summary.critical_path_seconds * 1000:.0f} ms; "
                            f"steps one after another would take {summary.sequential_seconds * 1000:.0f} ms]",
                            file=sys.stderr,
                        )
            except grpc.aio.AioRpcError as error:
                print(f"\nerror: {error.code().name}: {error.details()}", file=sys.stderr)
                return 1
        return 0

    return asyncio.run(run())


def _routes(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _router_channel(args) as channel:
            listed = await router_pb2_grpc.RouterStub(channel).ListStaticRoutes(
                router_pb2.ListStaticRoutesRequest(), timeout=10, metadata=_metadata(args)
            )
        for route in listed.routes:
            matches = " and ".join(filter(None, [f"task {route.task}" if route.task else "", route.regex]))
            print(f"{route.name:20} {route.answer:22} {matches}")
        if not listed.routes:
            print("no static routes (set SUBSECOND_ROUTER_STATIC_ROUTES_FILE)")
        return 0

    return asyncio.run(run())


def _router_channel(args: argparse.Namespace) -> grpc.aio.Channel:
    """A channel to ``--router``: TLS when a CA is known (see the module's docstring), presenting
    ``--cert``/``--key`` if given; plaintext with ``--plaintext`` or when no CA is known."""
    ca = None if args.plaintext else Path(args.ca) if args.ca else _local_stack_ca(args.router)
    if ca is None:
        return grpc.aio.insecure_channel(args.router)
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca.read_bytes(),
            private_key=Path(args.key).read_bytes() if args.key else None,
            certificate_chain=Path(args.cert).read_bytes() if args.cert else None,
        )
    except OSError as error:
        raise SystemExit(f"error: {error}") from None
    return grpc.aio.secure_channel(args.router, credentials)


def _local_stack_ca(router: str) -> Path | None:
    """The CA of the stack `subsecond up` runs, when ``router`` is on loopback and that stack has TLS."""
    from subsecond_tools.stack.runner import StackConfig

    host = router.rpartition(":")[0].strip("[]")
    ca = StackConfig().run_dir / "tls" / "ca.pem"
    return ca if host in {"127.0.0.1", "localhost", "::1"} and ca.is_file() else None


def _metadata(args: argparse.Namespace) -> list[tuple[str, str]] | None:
    return [("x-api-key", args.api_key)] if args.api_key else None


def _hash_key(args: argparse.Namespace) -> int:
    """Prints the API_KEYS entry of a key read from the terminal (never from the command line, which
    the shell's history and the process list would keep)."""
    key = getpass.getpass("key: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    if not key:
        print("error: empty key", file=sys.stderr)
        return 1
    print(f"{hash_key(key)}={args.tenant}:{'+'.join(args.scope or ['generate', 'workflow'])}")
    return 0


def _cache_admin(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _router_channel(args) as channel:
            stub = router_pb2_grpc.RouterStub(channel)
            try:
                if args.cache_command == "stats":
                    request = router_pb2.CacheStatsRequest(tenant=args.tenant)
                    print(_stats(await stub.CacheStats(request, timeout=30, metadata=_metadata(args))))
                    return 0
                invalidate = router_pb2.InvalidateCacheRequest(tenant=args.tenant, model=args.model, prompt=args.prompt)
                done = await stub.InvalidateCache(invalidate, timeout=30, metadata=_metadata(args))
            except grpc.aio.AioRpcError as error:
                print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
                return 1
        print(f"removed {done.removed} entries and {done.vectors_removed} vectors")
        return 0

    return asyncio.run(run())


def _stats(stats: router_pb2.CacheStatsResponse) -> str:
    """Both sides of the cache: the router's near cache and revisions, the cache service's counts."""
    cache = stats.cache
    revisions = ", ".join(f"{tier}={revision or '-'}" for tier, revision in sorted(stats.revisions.items()))
    lines = [
        f"router: near cache {stats.near_cache_entries} entries ({stats.near_cache_bytes} bytes), "
        f"cache service {'skipped (breaker open)' if stats.cache_breaker_open else 'in use'}; revisions {revisions}",
        f"cache service: semantic tier {cache.semantic_backend}; since start "
        + ", ".join(f"{result} {count}" for result, count in sorted(cache.lookups.items()))
        + " lookups; "
        + ", ".join(f"{result} {count}" for result, count in sorted(cache.stores.items()))
        + " stores",
        f"{'tenant':<24}{'exact entries':>14}{'vectors':>10}",
        *(
            f"{tenant:<24}{counts.exact_entries:>14}{counts.vectors:>10}"
            for tenant, counts in sorted(cache.tenants.items())
        ),
    ]
    return "\n".join(lines)


def _api_key_option(command: argparse.ArgumentParser) -> None:
    """The options of every command that calls the router: its key and how to reach it over TLS."""
    command.add_argument(
        "--api-key",
        default=os.environ.get("SUBSECOND_API_KEY", ""),
        help="x-api-key (default: $SUBSECOND_API_KEY; none: the router's anonymous tenant, if it allows one)",
    )
    command.add_argument(
        "--ca",
        default=os.environ.get("SUBSECOND_CA_FILE", ""),
        help="CA to verify the router with (default: $SUBSECOND_CA_FILE, else the local stack's on loopback)",
    )
    command.add_argument("--cert", default=os.environ.get("SUBSECOND_CERT_FILE", ""), help="client certificate")
    command.add_argument("--key", default=os.environ.get("SUBSECOND_KEY_FILE", ""), help="its private key")
    command.add_argument("--plaintext", action="store_true", help="no TLS (a router started with --insecure)")


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="subsecond", description="subsecond: LLM answers in well under a second.")
    commands = root.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "prepare", help="build the ONNX embedding model, embed the tier examples, unpack tritonserver"
    ).set_defaults(run=_prepare)
    up = commands.add_parser("up", help="run the whole stack on this machine until Ctrl-C")
    up.add_argument("--insecure", action="store_true", help="plaintext between the services and on the router")
    up.set_defaults(run=_up)
    ask = commands.add_parser("ask", help="stream an answer from the router and say how it was served")
    ask.add_argument("prompt", help="the question")
    ask.add_argument("--router", default="127.0.0.1:50051", help="router address (default: %(default)s)")
    ask.add_argument("--model", default="auto", help="model tier or auto (default: %(default)s)")
    ask.add_argument("--max-tokens", type=int, default=0, help="0 = the tier's default")
    ask.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    ask.add_argument("--cache", choices=["use", "bypass", "refresh"], default="use", help="cache policy (default: use)")
    ask.add_argument("--sentences", action="store_true", help="stream whole sentences, one per line")
    ask.add_argument("--task", default="", help="task hint for static routes and the auto tier (e.g. classify)")
    ask.add_argument("--paced", action="store_true", help="replay a cached answer at the model's pace")
    _api_key_option(ask)
    ask.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds (default: %(default)s)")
    ask.set_defaults(run=_ask)
    workflow = commands.add_parser("workflow", help="run a workflow file and show its steps as they run")
    workflow.add_argument("file", help="a WorkflowRequest in YAML or JSON (see examples/onboarding-workflow.yaml)")
    workflow.add_argument("--input", action="append", default=[], metavar="NAME=VALUE", help="set or override an input")
    workflow.add_argument("--router", default="127.0.0.1:50051", help="router address (default: %(default)s)")
    _api_key_option(workflow)
    workflow.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds (default: %(default)s)")
    workflow.set_defaults(run=_workflow)
    routes = commands.add_parser("routes", help="list the router's static routes")
    routes.add_argument("--router", default="127.0.0.1:50051", help="router address (default: %(default)s)")
    _api_key_option(routes)
    routes.set_defaults(run=_routes)
    keys = commands.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    hashing = keys.add_parser("hash", help="print the SUBSECOND_ROUTER_API_KEYS entry of a key read from stdin")
    hashing.add_argument("--tenant", required=True, help="the tenant the key calls as")
    hashing.add_argument(
        "--scope", action="append", choices=sorted(SCOPES), help="a scope (repeat; default: generate and workflow)"
    )
    hashing.set_defaults(run=_hash_key)
    cache = commands.add_parser("cache", help="operate the cache through the router (admin keys)")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True)
    invalidate = cache_commands.add_parser("invalidate", help="remove a tenant's, a tier's or one prompt's answers")
    invalidate.add_argument("--tenant", required=True)
    invalidate.add_argument("--model", default="", help="a tier (default: every tier)")
    invalidate.add_argument("--prompt", default="", help="one prompt's entry (needs --model)")
    stats = cache_commands.add_parser("stats", help="the router's and the cache service's side of the cache")
    stats.add_argument("--tenant", default="", help="one tenant's counts (default: every tenant's)")
    for command in (invalidate, stats):
        command.add_argument("--router", default="127.0.0.1:50051", help="router address (default: %(default)s)")
        _api_key_option(command)
        command.set_defaults(run=_cache_admin)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.command == "ask" else logging.INFO, format="%(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        return int(args.run(args))
    return 130
