"""The local stack's security settings, used for real: an inner service started with the
environment the stack gives it (a stand-in Embedder in the kit's server shell, on the stack's port)
and called through Stack.channel as each of the stack's services. Secure (the default): mutual TLS,
only its callers (the cache, and the router for the HTTP API's /v1/embeddings) are served. Plaintext
(``tls=False``): still only those, identified by their tokens."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from subsecond.kit.channels import open_channel
from subsecond.kit.server import RunningServer, ServiceDefinition, start_server
from subsecond.kit.settings import TlsSettings
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc
from subsecond_tools.stack.runner import Ports, Stack, StackConfig


class OneVector(embedding_pb2_grpc.EmbedderServicer):
    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        return embedding_pb2.EmbedResponse(embeddings=[embedding_pb2.Embedding(values=[1.0])], model="one")


@pytest.fixture(params=[True, False], ids=["tls", "plaintext"])
async def stack(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[Stack, RunningServer]]:
    stack = Stack(StackConfig(ports=Ports.free(), run_dir=tmp_path, tls=request.param))
    stack.write_credentials()
    settings = dataclasses.replace(stack.identity("embedding"), port=stack.config.ports.embedding)
    definition = ServiceDefinition.for_servicer(
        embedding_pb2.DESCRIPTOR.services_by_name["Embedder"],
        embedding_pb2_grpc.add_EmbedderServicer_to_server,
        OneVector(),
    )
    running = await start_server(settings, definition)
    yield stack, running
    await running.stop(0)


async def embed_as(stack: Stack, caller: str | None) -> grpc.StatusCode:
    async with stack.channel("embedding", as_service=caller) as channel:
        try:
            await embedding_pb2_grpc.EmbedderStub(channel).Embed(embedding_pb2.EmbedRequest(texts=["a"]), timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_only_the_inner_services_caller_is_served(stack: tuple[Stack, RunningServer]) -> None:
    running_stack, _ = stack
    tls = running_stack.ca_file is not None
    outcomes = {caller: await embed_as(running_stack, caller) for caller in ("cache", "router", "generation", None)}
    assert outcomes == {
        "cache": grpc.StatusCode.OK,
        "router": grpc.StatusCode.OK,  # the HTTP API's /v1/embeddings
        "generation": grpc.StatusCode.PERMISSION_DENIED,
        # No certificate fails the mutual TLS handshake; without TLS, no token is unauthenticated.
        None: grpc.StatusCode.UNAVAILABLE if tls else grpc.StatusCode.UNAUTHENTICATED,
    }
    # A new start trusts nothing of the last: the cache's old certificate and CA no longer work.
    if tls:
        old = shutil.copytree(running_stack.tls_dir, running_stack.config.run_dir / "old-tls")
        running_stack.write_credentials()
        stale = dataclasses.replace(
            running_stack.identity("cache"),
            tls=TlsSettings(cert_file=old / "cache.pem", key_file=old / "cache.key", ca_file=old / "ca.pem"),
        )
        async with open_channel(running_stack.address("embedding"), ["subsecond.v1.Embedder"], stale) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await embedding_pb2_grpc.EmbedderStub(channel).Embed(embedding_pb2.EmbedRequest(texts=["a"]), timeout=5)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert await embed_as(running_stack, "cache") == grpc.StatusCode.OK
