"""The CLI over TLS: a real handshake with a router stand-in served by the kit's server shell with
the router's certificate of a throwaway CA (stack.certificates). What is under test is the CLI's
channel (its --ca, --plaintext) and how it prints both sides of the cache statistics; the router's
own RPCs are tested in tests/router."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from subsecond.kit.server import RunningServer, ServiceDefinition, start_server
from subsecond.kit.settings import EnvReader, ServerSettings
from subsecond.v1 import cache_pb2, router_pb2, router_pb2_grpc
from subsecond_tools import cli
from subsecond_tools.stack.certificates import StackCertificates, write_certificates


class StatsRouter(router_pb2_grpc.RouterServicer):
    async def CacheStats(
        self, request: router_pb2.CacheStatsRequest, context: grpc.aio.ServicerContext
    ) -> router_pb2.CacheStatsResponse:
        return router_pb2.CacheStatsResponse(
            near_cache_entries=3,
            revisions={"small": "m.1.e0"},
            cache=cache_pb2.StatsResponse(
                tenants={"acme": cache_pb2.TenantStats(exact_entries=5, vectors=4)},
                semantic_backend="edge",
                lookups={"exact": 7, "miss": 2},
            ),
        )


@pytest.fixture
def certificates(tmp_path: Path) -> StackCertificates:
    return write_certificates(tmp_path, ["router"])


@pytest.fixture
async def router(certificates: StackCertificates) -> AsyncIterator[RunningServer]:
    env = EnvReader(certificates.environment("router", mutual=False), "SUBSECOND_ROUTER_")
    settings = ServerSettings.read(env, default_port=0, default_metrics_port=0)
    env.done()
    definition = ServiceDefinition.for_servicer(
        router_pb2.DESCRIPTOR.services_by_name["Router"], router_pb2_grpc.add_RouterServicer_to_server, StatsRouter()
    )
    running = await start_server(settings, definition)
    yield running
    await running.stop(0)


async def _stats(port: int, *options: str) -> int:
    """`subsecond cache stats` in a thread: it runs its own event loop, beside the server's."""
    return await asyncio.to_thread(cli.main, ["cache", "stats", "--router", f"127.0.0.1:{port}", *options])


async def test_stats_over_tls_print_both_sides(
    router: RunningServer, certificates: StackCertificates, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _stats(router.port, "--ca", str(certificates.ca_file)) == 0
    printed = capsys.readouterr().out
    assert "near cache 3 entries" in printed and "small=m.1.e0" in printed
    assert "semantic tier edge" in printed and "exact 7, miss 2 lookups" in printed
    (row,) = [line for line in printed.splitlines() if line.startswith("acme")]
    assert row.split() == ["acme", "5", "4"]


async def test_a_plaintext_client_cannot_reach_the_tls_router(
    router: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _stats(router.port, "--plaintext") == 1
    assert "UNAVAILABLE" in capsys.readouterr().err


async def test_a_router_is_not_trusted_under_another_ca(
    router: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = write_certificates(tmp_path / "other", ["router"])
    assert await _stats(router.port, "--ca", str(other.ca_file)) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err
