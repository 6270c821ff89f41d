"""What TLS and mutual TLS (with the caller check) cost one hop of the hit path.

One unary call of a stand-in service (the Embedder API answering a fixed 384-float vector, about
the size of a cached answer) over loopback, through the kit's server shell and channels, in three
modes: plaintext, plaintext with a service token (the local stack without TLS), and mutual TLS
with ALLOWED_CALLERS (the chart's production profile). Calls are sequential on one open channel,
as the router's hit path reuses its channel: the handshake is paid once per connection (each
connection lives a minute, MAX_CONNECTION_AGE_MS) and its cost is reported apart.

    python benchmarks/tls_overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import grpc

from subsecond.kit.channels import open_channel
from subsecond.kit.server import ServiceDefinition, start_server
from subsecond.kit.settings import CallerSettings, EnvReader, ServerSettings
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc
from subsecond_tools.stack.certificates import StackCertificates, write_certificates

EMBEDDER = embedding_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
PLAIN = ServerSettings(host="127.0.0.1", port=0, metrics_port=0, shutdown_grace_seconds=1, log_level="WARNING")
VECTOR = [0.05] * 384


class FixedEmbedder(embedding_pb2_grpc.EmbedderServicer):
    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        return embedding_pb2.EmbedResponse(embeddings=[embedding_pb2.Embedding(values=VECTOR)])


def _read(certificates: StackCertificates, service: str) -> ServerSettings:
    env = EnvReader(certificates.environment(service), f"SUBSECOND_{service.upper()}_")
    settings = ServerSettings.read(env, default_port=0, default_metrics_port=0)
    env.done()
    return settings


def modes(certificates: StackCertificates) -> dict[str, tuple[ServerSettings, ServerSettings | None]]:
    """Mode -> (the server's settings, the caller's)."""
    token_only = CallerSettings(identity="cache", allowed=("cache",), token_file=certificates.token_file)
    return {
        "plaintext": (PLAIN, None),
        "plaintext + service token": (
            dataclasses.replace(PLAIN, callers=dataclasses.replace(token_only, identity="embedding")),
            dataclasses.replace(PLAIN, callers=token_only),
        ),
        "mutual TLS + caller check": (_read(certificates, "embedding"), _read(certificates, "cache")),
    }


async def measure(server: ServerSettings, caller: ServerSettings | None, calls: int) -> tuple[float, list[float]]:
    definition = ServiceDefinition.for_servicer(
        embedding_pb2.DESCRIPTOR.services_by_name["Embedder"],
        embedding_pb2_grpc.add_EmbedderServicer_to_server,
        FixedEmbedder(),
    )
    running = await start_server(server, definition)
    request = embedding_pb2.EmbedRequest(texts=["What is our refund policy?"], tenant="acme")
    try:
        channel = open_channel(f"127.0.0.1:{running.port}", [EMBEDDER], caller)
        stub = embedding_pb2_grpc.EmbedderStub(channel)
        started = time.perf_counter()
        await stub.Embed(request, timeout=10)  # connects (and shakes hands)
        first = time.perf_counter() - started
        for _ in range(200):  # warm-up
            await stub.Embed(request, timeout=10)
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            await stub.Embed(request, timeout=10)
            samples.append(time.perf_counter() - started)
        await channel.close()
    finally:
        await running.stop(0)
    return first, samples


async def main(calls: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        certificates = write_certificates(Path(directory), ["embedding", "cache"])
        results = {name: await measure(server, caller, calls) for name, (server, caller) in modes(certificates).items()}
    base = statistics.median(results["plaintext"][1])
    print(f"{'mode':<28} {'first call ms':>14} {'p50 ms':>8} {'p99 ms':>8} {'p50 over plaintext ms':>22}")
    for name, (first, samples) in results.items():
        ordered = sorted(samples)
        p50, p99 = statistics.median(ordered), ordered[int(len(ordered) * 0.99)]
        print(f"{name:<28} {first * 1e3:>14.2f} {p50 * 1e3:>8.3f} {p99 * 1e3:>8.3f} {(p50 - base) * 1e3:>22.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
