"""The gRPC server shell every service runs in.

It owns what services have in common: binding the port (TLS, and mutual TLS, when the service has
certificates: kit.tls), who may call (kit.callers), errors mapped to status codes
(``kit.errors``), ``grpc.health.v1`` (NOT_SERVING while warming up and while draining), server
reflection, the Prometheus metrics endpoint (HTTPS with the same certificate), and graceful shutdown
on SIGTERM/SIGINT. A service only supplies its servicers and the start-up/shutdown work that is its own.
With ``PROCESSES`` > 1 the shell runs that many worker processes on the one port (kit.workers).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, cast
from wsgiref.simple_server import WSGIServer

import grpc
import prometheus_client
from google.protobuf.descriptor import ServiceDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from prometheus_client import CollectorRegistry, multiprocess

from subsecond.kit.callers import caller_interceptor
from subsecond.kit.errors import StatusInterceptor
from subsecond.kit.interceptors import WrappingRegistry
from subsecond.kit.logs import configure_logging
from subsecond.kit.settings import ServerSettings, SettingsError
from subsecond.kit.tls import ReloadingServerCertificates, server_certificates
from subsecond.kit.tracing import ServerTracing, configure_tracing
from subsecond.kit.workers import Workers, worker_index

log = logging.getLogger(__name__)

# Requests larger than this are refused by gRPC itself (a prompt is text; 4 MiB is generous).
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# A client connection is asked to go away after a minute (streams in flight get five more to
# finish), so that clients resolve the service's name again and spread over replicas added since:
# a long-lived HTTP/2 connection otherwise pins a client to the pods it first found.
MAX_CONNECTION_AGE_MS = 60_000
MAX_CONNECTION_AGE_GRACE_MS = 300_000
# How often a supervisor of workers checks its certificate files for its metrics endpoint.
CERTIFICATE_CHECK_SECONDS = 30.0


@dataclass
class ServiceDefinition:
    """What a service contributes to the shell."""

    # Full gRPC service names, e.g. "subsecond.v1.Router": health and reflection report them.
    names: Sequence[str]
    # Registers the servicers (on the shell's kit.interceptors.WrappingRegistry, in place of the server).
    register: Callable[[WrappingRegistry], None]
    # Runs after the port is bound and before health turns SERVING (loading models, connecting).
    warm_up: Callable[[], Awaitable[None]] | None = None
    # Runs after the server has drained (closing clients and pools).
    close: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def for_servicer(
        cls,
        service: ServiceDescriptor,
        add_to_server: Callable[[Any, grpc.aio.Server], None],
        servicer: object,
        *,
        warm_up: Callable[[], Awaitable[None]] | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> ServiceDefinition:
        """One generated servicer for one proto service: ``service`` is its descriptor,
        ``add_to_server`` the generated ``add_<Name>Servicer_to_server``."""
        return cls(
            names=[service.full_name],
            register=lambda server: add_to_server(servicer, server),
            warm_up=warm_up,
            close=close,
        )


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: HealthServicer
    port: int
    # Where this server's metrics are scraped: its own endpoint, or a worker's supervisor's.
    metrics_port: int
    definition: ServiceDefinition
    # None in a worker of several (kit.workers): its supervisor serves the metrics.
    _metrics_http: WSGIServer | None = field(repr=False)

    async def stop(self, grace: float) -> None:
        """Drains: health goes NOT_SERVING, new calls are refused, calls in flight get ``grace`` seconds."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.definition.close is not None:
            await self.definition.close()
        if self._metrics_http is not None:
            await _close_metrics(self._metrics_http)


async def _close_metrics(http: WSGIServer) -> None:
    # shutdown() waits for serve_forever's next poll (up to half a second): not on the event loop.
    await asyncio.to_thread(http.shutdown)
    http.server_close()


def _start_metrics(
    settings: ServerSettings,
    certificates: ReloadingServerCertificates | None,
    registry: CollectorRegistry = prometheus_client.REGISTRY,
) -> WSGIServer:
    """The Prometheus endpoint: HTTPS with the service's own certificate when it serves TLS, and
    with ``METRICS_CLIENT_CA_FILE`` only for a scraper presenting a certificate of that CA (the chart
    issues Prometheus one, `scraper`); any certificate of the CA is accepted, so the release's own
    services could read each other's metrics, which carry no prompt or answer."""
    if certificates is None:
        http, _ = prometheus_client.start_http_server(settings.metrics_port, addr=settings.host, registry=registry)
        return http
    tls = settings.tls
    http, _ = prometheus_client.start_http_server(
        settings.metrics_port,
        addr=settings.host,
        registry=registry,
        certfile=str(tls.cert_file),
        keyfile=str(tls.key_file),
        client_cafile=str(tls.metrics_client_ca_file) if tls.metrics_client_ca_file else None,
        client_auth_required=tls.metrics_client_ca_file is not None,
    )
    certificates.follow(cast(ssl.SSLSocket, http.socket).context)
    return http


async def start_server(
    settings: ServerSettings, definition: ServiceDefinition, *, serve_metrics: bool = True
) -> RunningServer:
    """Starts a server on ``settings.host:settings.port`` (0 picks a free port) and warms it up.
    ``serve_metrics=False``: a worker of several, whose supervisor serves the metrics endpoint."""
    # StatusInterceptor outside the caller check, so that it maps its refusals too; tracing outside
    # both: a call's span covers its refusal. Applied to each method's handler once, not as gRPC
    # interceptors on every call (kit.interceptors).
    callers = caller_interceptor(settings.callers, definition.names)
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            # Only workers of one service share a port; a single server fails loudly on a taken one.
            ("grpc.so_reuseport", 1 if settings.processes > 1 else 0),
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
            ("grpc.max_connection_age_grace_ms", MAX_CONNECTION_AGE_GRACE_MS),
        ]
    )
    registry = WrappingRegistry(server, [ServerTracing(), StatusInterceptor(), *([callers] if callers else [])])
    definition.register(registry)
    health = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, registry)
    names = [*definition.names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME]
    # What reflection.enable_server_reflection does, through the registry (whose type would make it pick
    # the servicer of gRPC's synchronous server).
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(reflection.aio.ReflectionServicer(names), registry)
    address = f"{settings.host}:{settings.port}"
    certificates = server_certificates(settings.tls)
    port = (
        server.add_insecure_port(address)
        if certificates is None
        else server.add_secure_port(address, certificates.credentials())
    )
    if port == 0:
        raise OSError(f"cannot bind {settings.host}:{settings.port}")
    for name in ("", *definition.names):
        await health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    metrics_http = _start_metrics(settings, certificates) if serve_metrics else None
    metrics_port = metrics_http.server_port if metrics_http is not None else settings.metrics_port
    await server.start()
    if definition.warm_up is not None:
        try:
            await definition.warm_up()
        except BaseException:
            # A service that cannot warm up never serves: release its port and metrics endpoint.
            await server.stop(None)
            if metrics_http is not None:
                await _close_metrics(metrics_http)
            raise
    for name in ("", *definition.names):
        await health.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info(
        "serving",
        extra={
            "port": port,
            "metrics_port": metrics_port,
            "services": list(definition.names),
            "tls": "mutual" if settings.tls.client_ca_file else "server" if settings.tls.serves_tls else "off",
            "allowed_callers": list(settings.callers.allowed),
            "pid": os.getpid(),
        },
    )
    return RunningServer(server, health, port, metrics_port, definition, metrics_http)


class ServiceSettings(Protocol):
    @property
    def server(self) -> ServerSettings: ...


S = TypeVar("S", bound=ServiceSettings)


def run_service(
    service: str,
    load_settings: Callable[[Mapping[str, str]], S],
    build: Callable[[S], ServiceDefinition],
    share: Callable[[S, int], S] = lambda settings, processes: settings,
) -> None:
    """The ``python -m subsecond.<service>`` entry point: settings from the environment, serve
    until SIGTERM or SIGINT, then drain. With ``PROCESSES`` > 1 this process supervises that many
    workers (kit.workers), each serving with ``share(settings, processes)``: the service's limits
    and caches divided among them (SettingsError when it cannot run on several processes)."""
    index = worker_index(os.environ)
    try:
        service_settings = load_settings(os.environ)
        settings = service_settings.server
        if settings.processes > 1:
            if settings.port == 0:
                raise SettingsError("PROCESSES > 1 needs a fixed PORT, which the workers share")
            service_settings = share(service_settings, settings.processes)
    except SettingsError as error:
        configure_logging(service, "INFO")
        log.error("%s", error)
        raise SystemExit(2) from None
    configure_logging(service, settings.log_level)
    configure_tracing(service, os.environ)
    if settings.processes > 1 and index is None:
        raise SystemExit(asyncio.run(_supervise(settings)))

    async def main() -> None:
        # Built inside the event loop: gRPC and Redis clients bind to the loop that creates them.
        running = await start_server(settings, build(service_settings), serve_metrics=index is None)
        await _until_signalled()
        log.info("draining", extra={"grace_seconds": settings.shutdown_grace_seconds})
        await running.stop(settings.shutdown_grace_seconds)
        log.info("stopped")

    asyncio.run(main())


async def _until_signalled() -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()


async def _supervise(settings: ServerSettings) -> int:
    """Runs the workers and serves their metrics until a signal (then drains them) or until one
    exits on its own; returns the exit code."""
    metrics_dir = tempfile.mkdtemp(prefix="subsecond-metrics-")
    try:
        workers = await Workers.start(settings.processes, metrics_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=metrics_dir)
        certificates = server_certificates(settings.tls)
        metrics_http = _start_metrics(settings, certificates, registry)
        # The metrics endpoint's certificate follows the files: here no gRPC handshake checks them.
        watching = asyncio.ensure_future(certificates.watch(CERTIFICATE_CHECK_SECONDS)) if certificates else None
        signalled = asyncio.ensure_future(_until_signalled())
        exited = asyncio.ensure_future(workers.wait())
        await asyncio.wait([signalled, exited], return_when=asyncio.FIRST_COMPLETED)
        if signalled.done():
            log.info("draining workers", extra={"pids": workers.pids})
            workers.stop()
        else:
            signalled.cancel()
        code = await exited
        if watching is not None:
            watching.cancel()
        await _close_metrics(metrics_http)
        log.info("stopped", extra={"code": code})
        return code
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
