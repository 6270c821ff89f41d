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

WRITE_SECONDS = 3.0
# With `appendfsync everysec`, Redis hands a write to the kernel before it replies, except while a
# background fsync is still running on a slow disk: then it postpones the write for up to 2 s and
# replies anyway (Redis's documented bound for everysec). A SIGKILL can lose those writes, no older.
POSTPONED_SECONDS = 2.0


def write_until_stopped(server: RedisServer, sig: signal.Signals) -> tuple[list[str], list[float], float]:
    """Writes keys one after another for WRITE_SECONDS, then sends ``sig`` while writes still go on.

    Returns the keys Redis acknowledged (a write cut by the signal is not acknowledged), when each was
    acknowledged, and when the signal was sent (``time.monotonic``).
    """
    acknowledged: list[str] = []
    times: list[float] = []
    stop_writing = threading.Event()

    def writer() -> None:
        client = redis.Redis.from_url(server.url, socket_timeout=1.0)
        try:
            while not stop_writing.is_set():
                key = f"answer:{len(acknowledged)}"
                client.set(key, "x" * 200)
                acknowledged.append(key)
                times.append(time.monotonic())
        except redis.RedisError:
            pass  # the server went away mid-write
        finally:
            client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(WRITE_SECONDS)
    signalled = time.monotonic()
    server.stop(sig)
    stop_writing.set()
    thread.join(timeout=5)
    return acknowledged, times, signalled


@pytest.fixture
def persistent_redis(tmp_path: Path) -> RedisServer:
    return RedisServer(find_redis_server(), tmp_path, persistent=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
def test_a_restart_keeps_every_acknowledged_answer(persistent_redis: RedisServer, sig: signal.Signals) -> None:
    persistent_redis.start()
    try:
        written, times, signalled = write_until_stopped(persistent_redis, sig)
        persistent_redis.start()
        client = redis.Redis.from_url(persistent_redis.url)
        present = [bool(client.exists(key)) for key in written]
        client.close()
    finally:
        persistent_redis.stop()

    old = sum(1 for at in times if at < signalled - POSTPONED_SECONDS)
    assert old > 100, "the writer hardly wrote before the last seconds: the test would prove nothing"
    if sig == signal.SIGTERM:
        assert all(present)  # a stopped Redis writes and fsyncs everything before it exits
    else:
        # Only a tail of the newest writes may be gone, never a hole, never one older than the postponement.
        kept = present.index(False) if False in present else len(present)
        assert not any(present[kept:]), "a lost write is followed by a kept one: not a tail"
        assert kept >= old, f"lost {len(written) - kept} writes, some older than {POSTPONED_SECONDS} s"


def test_without_persistence_a_restart_empties_it(tmp_path: Path) -> None:
    """The tests' throwaway servers: what the stack's Redis did before it had an append-only file."""
    server = RedisServer(find_redis_server(), tmp_path)
    server.start()
    try:
        written, _, _ = write_until_stopped(server, signal.SIGTERM)
        server.start()
        client = redis.Redis.from_url(server.url)
        present = sum(client.exists(key) for key in written)
        client.close()
    finally:
        server.stop()

    assert written and present == 0
