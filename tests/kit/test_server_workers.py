"""Several worker processes on one port (kit.workers through kit.server.run_service), as real
processes on loopback: both answer, the limits are split, one /metrics counts every worker's calls,
SIGTERM drains both, and a worker that dies takes the service down."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

SCRIPT = Path(__file__).with_name("worker_service.py")
REPOSITORY = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Supervised:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int


@pytest.fixture
def supervised() -> Iterator[Supervised]:
    port, metrics_port = free_port(), free_port()
    environ = {
        **os.environ,
        "SUBSECOND_TESTWORKER_PORT": str(port),
        "SUBSECOND_TESTWORKER_METRICS_PORT": str(metrics_port),
        "SUBSECOND_TESTWORKER_PROCESSES": "2",
        "SUBSECOND_TESTWORKER_LIMIT": "64",
        "SUBSECOND_TESTWORKER_SHUTDOWN_GRACE_SECONDS": "10",
    }
    process = subprocess.Popen([sys.executable, str(SCRIPT)], env=environ, cwd=REPOSITORY)
    try:
        yield Supervised(process, port, metrics_port)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def call(port: int, method: str, request: bytes = b"") -> tuple[int, int]:
    """One call on a new connection (the kernel picks a worker per connection): (pid, limit)."""
    # A local subchannel pool: channels of one process to one address otherwise share a connection.
    options = [("grpc.use_local_subchannel_pool", 1)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        reply = await channel.unary_unary(f"/subsecond.test.Worker/{method}")(request, timeout=15)
    pid, limit = reply.decode().split()
    return int(pid), int(limit)


async def both_workers(port: int) -> dict[int, int]:
    """Each worker's pid and limit, from calls on new connections until two pids have answered."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(seen) < 2 and time.monotonic() < deadline:
        try:
            pid, limit = await call(port, "Pid")
        except grpc.aio.AioRpcError:  # a worker still starting
            await asyncio.sleep(0.1)
            continue
        seen[pid] = limit
    return seen


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_two_workers_share_the_port_and_split_the_limits(supervised: Supervised) -> None:
    workers = await both_workers(supervised.port)
    assert len(workers) == 2, f"one worker answered every connection: {workers}"
    assert supervised.process.pid not in workers
    assert set(workers.values()) == {32}  # LIMIT=64 shared by 2 workers
    answered = [await call(supervised.port, "Pid") for _ in range(10)]
    # One /metrics, served by the supervisor, sums the calls every worker answered.
    (total,) = (
        float(line.split()[1])
        for line in scrape(supervised.metrics_port).splitlines()
        if line.startswith("subsecond_test_worker_calls_total ")
    )
    assert total >= len(answered) + 2


async def test_sigterm_drains_every_worker(supervised: Supervised) -> None:
    workers = await both_workers(supervised.port)
    assert len(workers) == 2
    in_flight = [asyncio.ensure_future(call(supervised.port, "Sleep", b"1500")) for _ in range(12)]
    await asyncio.sleep(0.5)
    supervised.process.send_signal(signal.SIGTERM)
    finished = await asyncio.gather(*in_flight)  # none fails: each worker lets its calls finish
    assert {pid for pid, _ in finished} == set(workers)
    assert await asyncio.to_thread(supervised.process.wait, 15) == 0
    assert not any(running(pid) for pid in workers)
    with pytest.raises(grpc.aio.AioRpcError):
        await call(supervised.port, "Pid")


async def test_a_worker_that_dies_takes_the_service_down(supervised: Supervised) -> None:
    workers = await both_workers(supervised.port)
    assert len(workers) == 2
    dying, other = list(workers)
    os.kill(dying, signal.SIGKILL)
    assert await asyncio.to_thread(supervised.process.wait, 15) == 1
    # The supervisor waited for the other worker before it exited.
    assert not running(other)
