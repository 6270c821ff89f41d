"""A real Redis Cluster and a real Sentinel group on loopback, made of Debian's ``redis-server``
processes, for the tests of kit.redis_client and of the services on them.

- :func:`redis_cluster`: six nodes, three primaries with one replica each, joined by
  ``redis-cli --cluster create``; a node is declared failed after ``cluster-node-timeout``
  (:data:`NODE_TIMEOUT_MS`), and its replica takes its slots over.
- :func:`redis_sentinel`: a primary, its replica and three sentinels that agree (quorum 2) that the
  primary is down after :data:`DOWN_AFTER_MS` and promote the replica.

Both keep nothing on disk beyond their own config files in the test's directory. A node is killed
with SIGKILL (:meth:`RedisProcess.kill`), as a crash would, not asked to shut down.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis_server import START_TIMEOUT_SECONDS, free_port

from subsecond_tools.stack.redis import find_redis_server

# Short failure detection, so a failover takes seconds: production clusters use 5-15 s.
NODE_TIMEOUT_MS = 1000
DOWN_AFTER_MS = 500
SERVICE_NAME = "subsecond"
CLUSTER_BUS_OFFSET = 10000  # a cluster node also listens on port + 10000


class RedisProcess:
    """One redis-server (or sentinel) process, started with extra arguments on a loopback port."""

    def __init__(self, argv: list[str], port: int) -> None:
        self.port = port
        self._process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _answers_ping(port):
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"redis-server exited with {self._process.returncode}: {stderr}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer on port {port} in {START_TIMEOUT_SECONDS} s")
            time.sleep(0.01)

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: the process dies as in a crash, its clients' sockets are reset."""
        self.stop(signal.SIGKILL)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        if self._process.poll() is None:
            self._process.send_signal(sig)
        self._process.wait(timeout=10)
        if self._process.stderr:
            self._process.stderr.close()


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def cli(port: int, *args: str) -> str:
    """A redis-cli command against a loopback port; its output."""
    return subprocess.run(
        [_redis_cli(), "-h", "127.0.0.1", "-p", str(port), *args], check=True, capture_output=True, text=True
    ).stdout


def _redis_cli() -> str:
    found = shutil.which("redis-cli")
    if found is None:
        pytest.fail("these tests need redis-cli (Debian's redis-tools, installed with redis-server)", pytrace=False)
    return found


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free as well."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET < 65536:
            try:
                with socket.create_server(("127.0.0.1", port + CLUSTER_BUS_OFFSET)):
                    return port
            except OSError:
                continue


def _server_argv(port: int, workdir: Path, *extra: str) -> list[str]:
    return [
        str(find_redis_server()),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--daemonize", "no",
        # A replica's first sync starts at once (Redis waits 5 s by default for more replicas to join).
        "--repl-diskless-sync-delay", "0",
        *extra,
    ]  # fmt: skip


def _until(condition: str, check: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting: {condition}")
        time.sleep(0.05)


@dataclass
class RedisCluster:
    """Six nodes: ``nodes[port]``; the URL names two of them as seeds (the client finds the rest)."""

    nodes: dict[int, RedisProcess]

    @property
    def url(self) -> str:
        seeds = ",".join(node.address for node in list(self.nodes.values())[:2])
        return f"redis+cluster://{seeds}"

    def primary_of(self, key: str) -> RedisProcess:
        """The node that serves key's slot now."""
        for node in self.alive():
            info = cli(node.port, "cluster", "nodes")
            slot = int(cli(node.port, "cluster", "keyslot", key))
            for line in info.splitlines():
                fields = line.split()
                if "master" not in fields[2] or "fail" in fields[2]:
                    continue
                for span in fields[8:]:
                    low, _, high = span.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return self.nodes[int(fields[1].split(":")[1].split("@")[0])]
            break
        raise LookupError(f"no primary serves the slot of {key}")

    def alive(self) -> list[RedisProcess]:
        return [node for node in self.nodes.values() if node.running]

    def healthy(self) -> bool:
        """Every live node sees the cluster as ok."""
        return all("cluster_state:ok" in cli(node.port, "cluster", "info") for node in self.alive())


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    nodes: dict[int, RedisProcess] = {}
    try:
        for _ in range(6):
            port = _cluster_port()
            workdir = tmp_path / f"node-{port}"
            workdir.mkdir()
            nodes[port] = RedisProcess(
                _server_argv(
                    port, workdir,
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(workdir / "nodes.conf"),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                ),
                port,
            )  # fmt: skip
        subprocess.run(
            [_redis_cli(), "--cluster", "create", *(node.address for node in nodes.values()),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        cluster = RedisCluster(nodes)
        _until("the cluster's state is ok on every node", cluster.healthy)
        yield cluster
    finally:
        for node in nodes.values():
            node.stop()


@dataclass
class RedisSentinel:
    """A primary, its replica and three sentinels watching them."""

    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[RedisProcess]

    @property
    def url(self) -> str:
        return f"redis+sentinel://{','.join(s.address for s in self.sentinels)}/{SERVICE_NAME}"

    def primary_port(self) -> int:
        """The primary's port as the first live sentinel names it now."""
        reply = cli(self.sentinels[0].port, "sentinel", "get-master-addr-by-name", SERVICE_NAME).split()
        return int(reply[1])


@pytest.fixture
def redis_sentinel(tmp_path: Path) -> Iterator[RedisSentinel]:
    started: list[RedisProcess] = []
    try:
        primary_port = free_port()
        started.append(primary := RedisProcess(_server_argv(primary_port, tmp_path), primary_port))
        replica_port = free_port()
        replica_dir = tmp_path / "replica"
        replica_dir.mkdir()
        started.append(
            replica := RedisProcess(
                _server_argv(replica_port, replica_dir, "--replicaof", "127.0.0.1", str(primary_port)), replica_port
            )
        )
        _until("the replica is in sync", lambda: "master_link_status:up" in cli(replica_port, "info", "replication"))
        # Each sentinel is told its own id, the replica and the other two up front (as the lines a
        # sentinel writes into its own file once it has found them), instead of finding them through
        # the primary's hello channel, which takes seconds.
        ports = [free_port() for _ in range(3)]
        ids = [f"{index + 1:040x}" for index in range(3)]
        sentinels = []
        for index, port in enumerate(ports):
            config = tmp_path / f"sentinel-{index}.conf"  # a sentinel rewrites its file: one each
            others = "".join(
                f"sentinel known-sentinel {SERVICE_NAME} 127.0.0.1 {ports[other]} {ids[other]}\n"
                for other in range(3)
                if other != index
            )
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nsentinel myid {ids[index]}\n"
                f"sentinel monitor {SERVICE_NAME} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE_NAME} 5000\n"
                f"sentinel known-replica {SERVICE_NAME} 127.0.0.1 {replica_port}\n{others}"
            )
            started.append(sentinel := RedisProcess([str(find_redis_server()), str(config), "--sentinel"], port))
            sentinels.append(sentinel)
        group = RedisSentinel(primary, replica, sentinels)
        _until(
            "each sentinel knows the replica and the other two",
            lambda: all(",slaves=1,sentinels=3" in cli(s.port, "info", "sentinel") for s in sentinels),
        )
        yield group
    finally:
        for process in reversed(started):
            process.stop()
