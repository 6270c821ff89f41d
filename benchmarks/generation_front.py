"""The generation service's own cost to a first chunk, two source trees side by side.

Starts a stand-in Triton that answers at once (``tests/generation/fake_triton.py``: the entry model's
contract, two streamed responses and the final one) and one generation service per source tree (each
``python -m subsecond.generation`` with that tree's ``services/`` first on ``PYTHONPATH``, plaintext,
the embedded ``smollm2``'s tokenizer files), then calls them in turn, alternating which goes first, and
prints each one's time to the first chunk. With Triton's own time taken out, what is left is the
service (and its two hops), so a change to it shows as a difference between the trees in one run.

    .venv/bin/python benchmarks/generation_front.py /tmp/before/services services --calls 800
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grpc

from subsecond.v1 import generation_pb2, generation_pb2_grpc, types_pb2

REPO = Path(__file__).resolve().parents[1]
FAKE_TRITON = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
from fake_triton import FakeTriton, Script, entry_model_config, start_fake_triton

async def main():
    fake = FakeTriton({"smollm2": entry_model_config("smollm2")}, Script(outputs=(b"Hi", b"Hi there")))
    server, address = await start_fake_triton(fake)
    print(address, flush=True)
    await server.wait_for_termination()

asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start(args: argparse.Namespace) -> tuple[list[subprocess.Popen[bytes]], dict[str, int]]:
    """The stand-in Triton and one generation service per tree: the processes, and each tree's port."""
    fake = subprocess.Popen(
        [sys.executable, "-c", FAKE_TRITON, str(REPO / "tests" / "generation")], stdout=subprocess.PIPE
    )
    assert fake.stdout is not None
    triton = fake.stdout.readline().decode().strip()
    processes, ports = [fake], {}
    for tree in args.trees:
        ports[str(tree)] = port = free_port()
        environment = {
            **os.environ,
            "PYTHONPATH": str(tree.resolve()),
            "SUBSECOND_GENERATION_PORT": str(port),
            "SUBSECOND_GENERATION_METRICS_PORT": str(free_port()),
            "SUBSECOND_GENERATION_TRITON_URL": triton,
            "SUBSECOND_GENERATION_MODELS": "small=smollm2",
            "SUBSECOND_GENERATION_TOKENIZER_ROOT": str(args.tokenizer_root),
            "SUBSECOND_GENERATION_LOG_LEVEL": "WARNING",
        }
        processes.append(subprocess.Popen([sys.executable, "-m", "subsecond.generation"], env=environment))
    return processes, ports


async def measure(args: argparse.Namespace, ports: dict[str, int]) -> dict[str, list[float]]:
    """Seconds to each call's first chunk, per tree, the trees called in turn."""
    stubs = {}
    for tree, port in ports.items():
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        await asyncio.wait_for(channel.channel_ready(), timeout=60)
        stubs[tree] = generation_pb2_grpc.GeneratorStub(channel)
    request = generation_pb2.GenerationRequest(
        model="small",
        max_tokens=8,
        messages=[types_pb2.ChatMessage(role="user", content="(abcd1234) Tell me a fact about the number 17.")],
        sampling=types_pb2.SamplingParams(top_p=1.0),
    )
    firsts: dict[str, list[float]] = {tree: [] for tree in stubs}
    for i in range(args.warm_up + args.calls):
        for tree in list(stubs) if i % 2 else list(reversed(stubs)):
            started, first = time.perf_counter(), 0.0
            async for _ in stubs[tree].Generate(request, timeout=10):
                first = first or time.perf_counter() - started
            if i >= args.warm_up:
                firsts[tree].append(first)
    return firsts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", type=Path, nargs="+", help="services/ directories of the trees compared")
    parser.add_argument("--calls", type=int, default=800, help="timed calls to each (default: %(default)s)")
    parser.add_argument("--warm-up", type=int, default=50, help="untimed calls first (default: %(default)s)")
    parser.add_argument("--tokenizer-root", type=Path, default=REPO / ".cache" / "tokenizers")
    args = parser.parse_args()
    processes, ports = start(args)
    try:
        firsts = asyncio.run(measure(args, ports))
    finally:
        for process in processes:
            process.terminate()
    for tree, seconds in firsts.items():
        ms = [s * 1000 for s in seconds]
        p50, p90 = statistics.median(ms), statistics.quantiles(ms, n=10)[-1]
        print(f"{tree}: first chunk p50 {p50:.3f} ms, p90 {p90:.3f} ms")


if __name__ == "__main__":
    main()
