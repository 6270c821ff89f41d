"""A stand-in for the embedding service, on a real gRPC server, whose vectors the tests choose."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import grpc

from subsecond.cache.normalise import normalise
from subsecond.cache.service import EMBEDDING_DIMENSIONS
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc


def towards(angle_degrees: float) -> list[float]:
    """A unit vector at this angle from the first axis: its cosine similarity with towards(0) is
    cos(angle), so a test sets the similarity the semantic tier sees."""
    radians = math.radians(angle_degrees)
    return [math.cos(radians), math.sin(radians)] + [0.0] * (EMBEDDING_DIMENSIONS - 2)


class PromptVectors(dict[str, Sequence[float]]):
    """Vectors set by the prompt as a test writes it and found by the text the cache service embeds:
    the prompt normalised (as the guard reads it)."""

    def __setitem__(self, prompt: str, vector: Sequence[float]) -> None:
        super().__setitem__(normalise(prompt), vector)

    def update(self, vectors: Mapping[str, Sequence[float]]) -> None:  # type: ignore[override]
        for prompt, vector in vectors.items():
            self[prompt] = vector


class FakeEmbedder(embedding_pb2_grpc.EmbedderServicer):
    """Stands in for the embedding service on a real gRPC server (port 0), so that a test chooses
    each prompt's vector; the real model is tested in tests/embedding. ``failure`` makes it refuse
    every call with that status; stop() takes it down."""

    def __init__(self) -> None:
        self.vectors = PromptVectors()
        self.failure: grpc.StatusCode | None = None
        self.calls = 0
        self.asked: list[str] = []  # every text asked for, in order
        self._server = grpc.aio.server()
        embedding_pb2_grpc.add_EmbedderServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(0)

    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        self.calls += 1
        self.asked.extend(request.texts)
        if self.failure is not None:
            await context.abort(self.failure, "failing on purpose")
        return embedding_pb2.EmbedResponse(
            embeddings=[embedding_pb2.Embedding(values=self.vectors[text]) for text in request.texts],
            model="fake",
            dimensions=EMBEDDING_DIMENSIONS,
        )
