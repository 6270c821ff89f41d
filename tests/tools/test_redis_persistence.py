"""Redis as the stack runs it (``redis_argv(..., persistent=True)``): a real redis-server written to
while it is killed or stopped, then started again on the same directory. Counts the answers lost."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from redis_server import RedisServer

from subsecond_tools.stack.redis import find_redis_server

WRITE_SECONDS = 1.0


def write_until_stopped(server: RedisServer, sig: signal.Signals) -> list[str]:
    """Writes keys one after another for WRITE_SECONDS, then sends ``sig`` while writes still go on.

    Returns the keys Redis acknowledged (a write cut by the signal is not acknowledged).
    """
    acknowledged: list[str] = []
    stop_writing = threading.Event()

    def writer() -> None:
        client = redis.Redis.from_url(server.url, socket_timeout=1.0)
        try:
            while not stop_writing.is_set():
                key = f"answer:{len(acknowledged)}"
                client.set(key, "x" * 200)
                acknowledged.append(key)
        except redis.RedisError:
            pass  # the server went away mid-write
        finally:
            client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(WRITE_SECONDS)
    server.stop(sig)
    stop_writing.set()
    thread.join(timeout=5)
    return acknowledged


@pytest.fixture
def persistent_redis(tmp_path: Path) -> RedisServer:
    return RedisServer(find_redis_server(), tmp_path, persistent=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_a_restart_keeps_every_acknowledged_answer(persistent_redis: RedisServer, sig: signal.Signals) -> None:
    persistent_redis.start()
    try:
        written = write_until_stopped(persistent_redis, sig)
        persistent_redis.start()
        client = redis.Redis.from_url(persistent_redis.url)
        present = sum(client.exists(key) for key in written)
        client.close()
    finally:
        persistent_redis.stop()

    assert len(written) > 100, "the writer hardly wrote: the test would prove nothing"
    # Redis writes each command to the file before it replies, so even a SIGKILL loses nothing that was
    # acknowledged; a power cut would lose up to the last second (fsync every second), which no test here makes.
    assert present == len(written)


def test_without_persistence_a_restart_empties_it(tmp_path: Path) -> None:
    """The tests' throwaway servers: what the stack's Redis did before it had an append-only file."""
    server = RedisServer(find_redis_server(), tmp_path)
    server.start()
    try:
        written = write_until_stopped(server, signal.SIGTERM)
        server.start()
        client = redis.Redis.from_url(server.url)
        present = sum(client.exists(key) for key in written)
        client.close()
    finally:
        server.stop()

    assert written and present == 0
