"""Runs the whole stack on one machine: Redis, Triton and the four services as real processes.

Used by ``subsecond up`` (fixed, documented ports) and by the integration tests (free ports).
Each process logs to ``<run_dir>/<name>.log``; every service is waited on through its
``grpc.health.v1`` status, so "up" means "answering".

Secure by default: each start makes a throwaway CA in ``<run_dir>/tls`` (stack.certificates), the
services speak mutual TLS to each other and accept only their callers' certificates, and the
router's public port serves TLS (clients trust ``<run_dir>/tls/ca.pem``). ``StackConfig.tls=False``
runs the plaintext stack, whose inner services still identify their callers by service tokens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import IO

import grpc
import redis.asyncio as redis
import tritonclient.grpc.aio as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis.exceptions import RedisError

from subsecond.kit.channels import open_channel
from subsecond.kit.settings import EnvReader, ServerSettings, TlsSettings
from subsecond_tools.stack.certificates import token_environment, write_certificates, write_token
from subsecond_tools.stack.redis import find_redis_server, redis_argv
from subsecond_tools.stack.tokenizers import write_tokenizer_root
from subsecond_tools.stack.triton import (
    EXIT_TIMEOUT_SECONDS,
    ensure_tritonserver,
    new_shm_prefix,
    remove_shm_regions,
    triton_process_spec,
)

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
SERVICES = ("embedding", "generation", "cache", "router")
# Each service's gRPC service name (the retry policy of a channel to it names it).
GRPC_SERVICES = {
    "embedding": "subsecond.v1.Embedder",
    "generation": "subsecond.v1.Generator",
    "cache": "subsecond.v1.Cache",
    "router": "subsecond.v1.Router",
}
# Seconds from SIGTERM to SIGKILL: a service drains its streams (its own grace period comes first);
# Triton cuts what is in flight after EXIT_TIMEOUT_SECONDS and then needs a moment to unload its models.
STOP_SECONDS = {"triton": EXIT_TIMEOUT_SECONDS + 3.0}
DEFAULT_STOP_SECONDS = 20.0


@dataclass(frozen=True)
class Ports:
    router: int = 50051
    # The router's OpenAI-compatible HTTP API (TLS with the router's certificate when the stack has TLS).
    router_http: int = 8080
    cache: int = 50052
    embedding: int = 50053
    generation: int = 50054
    router_metrics: int = 9461
    cache_metrics: int = 9462
    embedding_metrics: int = 9463
    generation_metrics: int = 9464
    triton_grpc: int = 8001
    triton_http: int = 8000
    triton_metrics: int = 8002
    redis: int = 6390

    @classmethod
    def free(cls) -> Ports:
        """Ports nobody is listening on now (for tests running beside a stack)."""
        sockets = [socket.socket() for _ in fields(cls)]
        try:
            for sock in sockets:
                sock.bind(("127.0.0.1", 0))
            return cls(*(sock.getsockname()[1] for sock in sockets))
        finally:
            for sock in sockets:
                sock.close()


@dataclass
class StackConfig:
    ports: Ports = field(default_factory=Ports)
    run_dir: Path = REPO / ".cache" / "run"
    model_dir: Path = REPO / ".cache" / "models" / "all-minilm-l6-v2"
    # The semantic tier's pair verifier (subsecond_tools.verifier_train), trained on these pairs.
    verifier_dir: Path = REPO / ".cache" / "models" / "pair-verifier"
    semantic_data_dir: Path = REPO / "benchmarks" / "data" / "semantic"
    tools_dir: Path = REPO / ".cache" / "tools"
    model_repository: Path = REPO / "model_repository"
    # The embedded models' tokenizer files (chat templates), written from their GGUFs at start.
    tokenizer_root: Path = REPO / ".cache" / "tokenizers"
    # Embeddings of the labelled tier examples (built by `subsecond prepare`) for model "auto".
    tier_embeddings: Path = REPO / ".cache" / "models" / "tier-examples-embeddings.json"
    static_routes: Path = REPO / "examples" / "static-routes.yaml"
    # Extra environment for the services (e.g. a tenant's API key for tests).
    environment: dict[str, str] = field(default_factory=dict)
    # Mutual TLS between the services and TLS on the router's port, from a CA made at each start;
    # False: plaintext, inner services identifying their callers by service tokens.
    tls: bool = True
    startup_timeout_seconds: float = 300.0


@dataclass
class _Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_file: IO[bytes]


class Stack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self._processes: dict[str, _Process] = {}
        # Each service's TLS and caller-check settings, written at start.
        self._security: dict[str, str] = {}

    # -- addresses ------------------------------------------------------------------------------

    def address(self, service: str) -> str:
        return f"127.0.0.1:{getattr(self.config.ports, service)}"

    @property
    def tls_dir(self) -> Path:
        """Where the CA, the services' certificates and the token secret are written at start."""
        return self.config.run_dir / "tls"

    @property
    def ca_file(self) -> Path | None:
        """The CA that clients of this stack trust (None for the plaintext stack)."""
        return self.tls_dir / "ca.pem" if self.config.tls else None

    def identity(self, service: str | None) -> ServerSettings:
        """Settings to call this stack's services as ``service`` does (its certificate, or its
        token without TLS); None: as a client of the router, trusting the stack's CA only."""
        if service is None:
            return ServerSettings(
                host="127.0.0.1",
                port=0,
                metrics_port=0,
                shutdown_grace_seconds=0,
                log_level="INFO",
                tls=TlsSettings(ca_file=self.ca_file),
            )
        prefix = f"SUBSECOND_{service.upper()}_"
        env = EnvReader({k: v for k, v in self._security.items() if k.startswith(prefix)}, prefix)
        settings = ServerSettings.read(env, default_port=0, default_metrics_port=0)
        env.done()
        return settings

    def metrics_ssl_context(self) -> ssl.SSLContext | None:
        """What a scraper of the services' metrics trusts (they serve HTTPS with their certificates
        when the stack has TLS); None: plain HTTP."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None

    def channel(self, service: str, *, as_service: str | None = "router") -> grpc.aio.Channel:
        """A channel to one of the stack's services, calling as ``as_service`` (see identity); the
        router is how the inner services are reached, and what its own clients present is nothing."""
        return open_channel(self.address(service), [GRPC_SERVICES[service]], self.identity(as_service))

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.config.ports.redis}/0"

    def environment(self) -> dict[str, str]:
        ports = self.config.ports
        env = {
            **os.environ,
            "SUBSECOND_EMBEDDING_PORT": str(ports.embedding),
            "SUBSECOND_EMBEDDING_METRICS_PORT": str(ports.embedding_metrics),
            "SUBSECOND_EMBEDDING_MODEL_DIR": str(self.config.model_dir),
            "SUBSECOND_EMBEDDING_REDIS_URL": self.redis_url,
            "SUBSECOND_GENERATION_PORT": str(ports.generation),
            "SUBSECOND_GENERATION_METRICS_PORT": str(ports.generation_metrics),
            "SUBSECOND_GENERATION_TRITON_URL": f"127.0.0.1:{ports.triton_grpc}",
            # Two tiers, both served by the one Triton: SmolLM2-135M (small) and Gemma 3 270M (large).
            "SUBSECOND_GENERATION_MODELS": "small=smollm2,large=gemma3",
            "SUBSECOND_GENERATION_TOKENIZER_ROOT": str(self.config.tokenizer_root),
            "SUBSECOND_CACHE_PORT": str(ports.cache),
            "SUBSECOND_CACHE_METRICS_PORT": str(ports.cache_metrics),
            "SUBSECOND_CACHE_REDIS_URL": self.redis_url,
            "SUBSECOND_CACHE_EMBEDDING_URL": self.address("embedding"),
            "SUBSECOND_CACHE_VECTOR_PATH": str(self.config.run_dir / "qdrant-edge"),
            "SUBSECOND_CACHE_VERIFIER_DIR": str(self.config.verifier_dir),
            "SUBSECOND_ROUTER_PORT": str(ports.router),
            "SUBSECOND_ROUTER_METRICS_PORT": str(ports.router_metrics),
            "SUBSECOND_ROUTER_CACHE_URL": self.address("cache"),
            "SUBSECOND_ROUTER_GENERATION_URL": self.address("generation"),
            "SUBSECOND_ROUTER_TIERS": "small,large",
            # The local stack serves loopback only: anonymous calls are its default tenant "local",
            # switched on here explicitly (keys are required everywhere else; see the router's README).
            "SUBSECOND_ROUTER_ALLOW_ANONYMOUS": "true",
            "SUBSECOND_ROUTER_EMBEDDING_URL": self.address("embedding"),
            "SUBSECOND_ROUTER_HTTP_PORT": str(ports.router_http),
            "SUBSECOND_ROUTER_AUTO_LARGE_TIER": "large",
            "SUBSECOND_ROUTER_TIER_MAX_TOKENS": "small=256,large=512",
            "SUBSECOND_ROUTER_TIER_PROMPT_TOKENS": "small=1024,large=1024",
            "SUBSECOND_ROUTER_STATIC_ROUTES_FILE": str(self.config.static_routes),
        }
        if self.config.tier_embeddings.exists():
            env["SUBSECOND_ROUTER_TIER_CENTROIDS_FILE"] = str(self.config.tier_embeddings)
        env.update(self._security)
        env.update(self.config.environment)
        return env

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.config.run_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write_tokenizer_root, self.config.tokenizer_root, self.config.model_repository)
        self.write_credentials()
        try:
            self.start_redis()
            self.start_triton()
            for service in SERVICES:
                self._spawn_service(service)
            await self.wait_triton()
            for service in SERVICES:
                await self.wait_serving(service)
        except BaseException:
            await self.stop()
            raise

    def write_credentials(self) -> None:
        """A new CA and certificates (the router's port TLS, the others mutual TLS), or without TLS a
        new token secret alone, in tls_dir: nothing of a previous run is trusted."""
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        if self.config.tls:
            certificates = write_certificates(self.tls_dir, SERVICES)
            settings = [certificates.environment(service, mutual=service != "router") for service in SERVICES]
        else:
            token_file = write_token(self.tls_dir)
            settings = [token_environment(service, token_file) for service in SERVICES]
        self._security = {name: value for env in settings for name, value in env.items()}

    async def restart_service(self, service: str) -> None:
        """Starts a service that was stopped (tests of draining and of failures) and waits for it."""
        self._spawn_service(service)
        await self.wait_serving(service)

    def _spawn_service(self, service: str) -> None:
        self._spawn(service, [sys.executable, "-m", f"subsecond.{service}"], self.environment())

    def start_redis(self) -> None:
        workdir = self.config.run_dir / "redis"
        workdir.mkdir(parents=True, exist_ok=True)
        # Persistent: the answers cached before a restart of the stack (or of Redis alone) are still there.
        argv = redis_argv(find_redis_server(), self.config.ports.redis, workdir, persistent=True)
        self._spawn("redis", argv, dict(os.environ))

    def start_triton(self) -> None:
        """Starts Triton with shared-memory regions of its own, after removing any a killed one left here."""
        root = ensure_tritonserver(self.config.tools_dir)
        self._remove_triton_leftovers()
        prefix = new_shm_prefix()
        # Recorded before the start: if this runner dies with Triton, the next start in this run_dir cleans up.
        self._triton_shm_record.write_text(prefix)
        ports = self.config.ports
        argv, env = triton_process_spec(
            root,
            self.config.model_repository,
            ports.triton_grpc,
            ports.triton_http,
            ports.triton_metrics,
            shm_prefix=prefix,
        )
        self._spawn("triton", argv, env)

    @property
    def _triton_shm_record(self) -> Path:
        return self.config.run_dir / "triton-shm-prefix"

    def _remove_triton_leftovers(self) -> None:
        """Removes the ``/dev/shm`` regions of the last Triton started in this run_dir (it no longer runs)."""
        record = self._triton_shm_record
        if record.is_file():
            if removed := remove_shm_regions(record.read_text().strip()):
                log.warning("removed %d shared-memory regions a stopped Triton left in /dev/shm", len(removed))
            record.unlink()

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log_file = (self.config.run_dir / f"{name}.log").open("ab")
        popen = subprocess.Popen(
            argv, env=env, cwd=REPO, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._processes[name] = _Process(name, popen, log_file)
        log.info("started %s (pid %d), log in %s", name, popen.pid, log_file.name)

    def _check_alive(self, name: str) -> None:
        process = self._processes[name]
        if process.popen.poll() is not None:
            tail = Path(process.log_file.name).read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited with code {process.popen.returncode}; end of its log:\n{tail}")

    async def wait_triton(self) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_seconds
        client = triton.InferenceServerClient(f"127.0.0.1:{self.config.ports.triton_grpc}")
        try:
            while True:
                self._check_alive("triton")
                try:
                    if await client.is_server_ready():
                        return
                except Exception:  # not listening yet; tritonclient raises several types here
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("Triton did not become ready in time; see its log")
                await asyncio.sleep(0.3)
        finally:
            await client.close()

    async def wait_serving(self, service: str) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_seconds
        async with self.channel(service) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive(service)
                try:
                    reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        log.info("%s is serving on %s", service, self.address(service))
                        return
                except grpc.aio.AioRpcError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{service} did not become healthy in time; see {self.config.run_dir}/{service}.log"
                    )
                await asyncio.sleep(0.2)

    def stop_process(self, name: str, *, timeout: float | None = None) -> int | None:
        """SIGTERM to the process, then SIGKILL to its whole group after ``timeout``; returns the exit code.

        Only the process itself gets SIGTERM: Triton shuts its backend stubs down in order, and
        stubs signalled at the same time would leave it waiting for models that never unload. Once Triton
        is gone (stopped, killed or crashed), any stub left in its group is killed and its shared memory removed.
        """
        process = self._processes.pop(name, None)
        if process is None:
            return None
        if timeout is None:
            timeout = STOP_SECONDS.get(name, DEFAULT_STOP_SECONDS)
        if process.popen.poll() is None:
            process.popen.terminate()
            try:
                process.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0f s; killing it", name, timeout)
                os.killpg(process.popen.pid, signal.SIGKILL)
                process.popen.wait()
        if name == "triton":
            with contextlib.suppress(ProcessLookupError):  # the group is empty when every stub exited
                os.killpg(process.popen.pid, signal.SIGKILL)
            self._remove_triton_leftovers()
        process.log_file.close()
        return process.popen.returncode

    def signal(self, name: str, sig: int) -> None:
        """Sends ``sig`` to the process (SIGSTOP and SIGCONT: a process that hangs, then resumes)."""
        self._processes[name].popen.send_signal(sig)

    def kill_process(self, name: str) -> None:
        """SIGKILL to the process's whole group, as a crash: nothing shuts down in order. Start it
        again with ``restart_redis`` or ``restart_service``."""
        process = self._processes.pop(name)
        os.killpg(process.popen.pid, signal.SIGKILL)
        process.popen.wait()
        process.log_file.close()

    async def restart_redis(self) -> None:
        """Starts Redis again in its working directory (it replays its append-only file) and waits
        until it answers."""
        self.start_redis()
        deadline = time.monotonic() + self.config.startup_timeout_seconds
        client = redis.Redis.from_url(self.redis_url)
        try:
            while True:
                self._check_alive("redis")
                try:
                    if await client.ping():
                        return
                except RedisError:  # not listening yet, or still loading its file
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"Redis did not answer in time; see {self.config.run_dir}/redis.log")
                await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        """Stops everything, front to back, so no request is cut by a backend going first."""
        for name in ("router", "cache", "generation", "embedding", "triton", "redis"):
            await asyncio.to_thread(self.stop_process, name)
