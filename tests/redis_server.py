"""A real redis-server per test, on a free loopback port: it starts in milliseconds, and stopping it
is how the tests take Redis down. tests/conftest.py exposes the fixture to every test.

The fixture's server keeps nothing on disk (each test has its own, thrown away after it, and no fsync
slows it down); tests of persistence build a ``RedisServer(..., persistent=True)`` as the stack runs it."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from subsecond_tools.stack.redis import find_redis_server, redis_argv

START_TIMEOUT_SECONDS = 10.0


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


class RedisServer:
    """One redis-server process; stop() and start() again keep its port (and its data only if persistent)."""

    def __init__(self, binary: Path, workdir: Path, *, persistent: bool = False) -> None:
        self._binary = binary
        self._workdir = workdir
        self._persistent = persistent
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self._process = subprocess.Popen(
            redis_argv(self._binary, self.port, self._workdir, persistent=self._persistent),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {stderr}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {self.port} in {START_TIMEOUT_SECONDS} s")
            time.sleep(0.005)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: Redis shuts down cleanly (and syncs its file); SIGKILL: a crash."""
        if self._process is not None:
            self._process.send_signal(sig)
            self._process.wait(timeout=10)
            if self._process.stderr:
                self._process.stderr.close()
            self._process = None


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    try:
        binary = find_redis_server()
    except FileNotFoundError as error:
        pytest.fail(f"these tests need a real redis-server; `make redis` installs one ({error})", pytrace=False)
    server = RedisServer(binary, tmp_path)
    server.start()
    yield server
    server.stop()
