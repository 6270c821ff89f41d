"""A service for tests/kit/test_server_workers.py, run as its own process through the kit's
``run_service``: ``Worker/Pid`` answers with the answering process's id and its share of a limit,
``Worker/Sleep`` does so after the milliseconds asked (a call in flight during a drain)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

import grpc
from prometheus_client import Counter

from subsecond.kit.server import ServiceDefinition, run_service
from subsecond.kit.settings import EnvReader, ServerSettings

SERVICE = "subsecond.test.Worker"
CALLS = Counter("subsecond_test_worker_calls_total", "Calls answered, by any worker.")


@dataclass(frozen=True)
class WorkerSettings:
    server: ServerSettings
    limit: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        env = EnvReader(environ, "SUBSECOND_TESTWORKER_")
        settings = cls(ServerSettings.read(env, default_port=0, default_metrics_port=0), env.integer("LIMIT", 64))
        env.done()
        return settings


def share(settings: WorkerSettings, processes: int) -> WorkerSettings:
    return replace(settings, limit=settings.limit // processes)


def definition(settings: WorkerSettings) -> ServiceDefinition:
    def answer() -> bytes:
        CALLS.inc()
        return f"{os.getpid()} {settings.limit}".encode()

    async def pid(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return answer()

    async def sleep(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await asyncio.sleep(int(request.decode()) / 1000)
        return answer()

    handlers = {
        "Pid": grpc.unary_unary_rpc_method_handler(pid),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
    }
    return ServiceDefinition(
        names=[SERVICE],
        register=lambda server: server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(SERVICE, handlers)]
        ),
    )


if __name__ == "__main__":
    run_service("testworker", WorkerSettings.from_env, definition, share)
