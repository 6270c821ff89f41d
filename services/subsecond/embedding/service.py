"""The Embedder servicer: micro-batched ONNX embeddings with a Redis embedding cache.

The cache (embedding_cache.py) is optional: when Redis fails with its own errors (kit.failopen) it
is skipped for a short cool-down and texts go to the model. New vectors are written to it after the
answer has gone: the caller (a semantic lookup) never waits for that round trip. A bad request
raises kit.errors' InvalidArgument; the server shell turns it into a status code.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import grpc
import numpy as np
from prometheus_client import Counter, Histogram

from subsecond.embedding.batching import MicroBatcher, Vectors
from subsecond.embedding.embedding_cache import EmbeddingCache
from subsecond.embedding.onnx_model import OnnxEmbedder
from subsecond.embedding.settings import EmbeddingSettings
from subsecond.kit.errors import InvalidArgument
from subsecond.kit.metrics import BATCH_SIZES, FAST_SECONDS
from subsecond.kit.redis_client import RedisClient, connect
from subsecond.kit.server import ServiceDefinition
from subsecond.kit.settings import NAME_PATTERN
from subsecond.v1 import embedding_pb2, embedding_pb2_grpc

# The embedding cache's keys begin with this (benchmarks empty the cache by it).
CACHE_KEY_PREFIX = "subsecond:v2:emb:"
REQUEST_SECONDS = Histogram("subsecond_embedding_request_duration_seconds", "Embed call latency.", buckets=FAST_SECONDS)
BATCH_TEXTS = Histogram("subsecond_embedding_batch_size_texts", "Texts per model call.", buckets=BATCH_SIZES)
INFERENCE_SECONDS = Histogram(
    "subsecond_embedding_inference_duration_seconds", "One ONNX Runtime model call.", buckets=FAST_SECONDS
)
TEXTS = Counter("subsecond_embedding_texts_total", "Texts embedded, by source.", ["source"])
CACHE_BYPASS = Counter(
    "subsecond_embedding_cache_bypass_total", "Embedding-cache operations skipped because Redis failed."
)


def _observe_batch(size: int, seconds: float) -> None:
    BATCH_TEXTS.observe(size)
    INFERENCE_SECONDS.observe(seconds)


class EmbedderService(embedding_pb2_grpc.EmbedderServicer):
    def __init__(self, settings: EmbeddingSettings) -> None:
        self._settings = settings
        self._model = OnnxEmbedder(settings.model_dir, intra_op_threads=settings.threads, workers=settings.workers)
        self._batcher = MicroBatcher(
            self._model.embed,
            max_batch=settings.max_batch,
            max_wait=settings.max_wait_seconds,
            on_batch=_observe_batch,
            concurrency=settings.workers,
        )
        self._redis: RedisClient | None = (
            connect(settings.redis_url, timeout_seconds=settings.redis_timeout_seconds) if settings.redis_url else None
        )
        self._cache = (
            EmbeddingCache(self._redis, ttl_seconds=settings.cache_ttl_seconds, on_bypass=CACHE_BYPASS.inc)
            if self._redis is not None
            else None
        )

    def _key(self, tenant: str, text: str) -> str:
        # Per tenant (issue 10): a shared entry would answer one tenant's text faster when another
        # had sent it, and that timing tells who sent what. "-" (not a tenant name) holds the texts
        # of no tenant. The tenant is a hash tag (v2; v1 keys expire unread): one request's MGET
        # stays in one slot of a Redis Cluster.
        digest = hashlib.sha256(text.encode()).hexdigest()
        return f"{CACHE_KEY_PREFIX}{self._model.name}:{{{tenant or '-'}}}:{digest}"

    async def Embed(
        self, request: embedding_pb2.EmbedRequest, context: grpc.aio.ServicerContext
    ) -> embedding_pb2.EmbedResponse:
        if request.tenant and not NAME_PATTERN.match(request.tenant):
            raise InvalidArgument("tenant: a simple name (letters, digits, . _ -) or empty")
        if not request.texts:
            raise InvalidArgument("texts: give at least one text")
        if len(request.texts) > self._settings.max_texts_per_request:
            raise InvalidArgument(
                f"texts: {len(request.texts)} texts, at most {self._settings.max_texts_per_request} per call"
            )
        # Cut before anything reads the text (the cache key's hash, the tokenizer): past MAX_TEXT_CHARS
        # lies nothing the model would read, so the embedding is the same and its cost is bounded.
        texts = [text[: self._settings.max_text_chars] for text in request.texts]
        with REQUEST_SECONDS.time():
            vectors, cached = await self._embed(request.tenant, texts)
        return embedding_pb2.EmbedResponse(
            embeddings=[embedding_pb2.Embedding(values=row.tolist()) for row in vectors],
            model=self._model.name,
            dimensions=self._model.dimensions,
            cached=cached,
        )

    async def _embed(self, tenant: str, texts: Sequence[str]) -> tuple[Vectors, int]:
        keys = [self._key(tenant, text) for text in texts]
        found = await self._cache.get(tenant, keys) if self._cache is not None else [None] * len(keys)
        missing = [i for i, vector in enumerate(found) if vector is None]
        fresh = await self._batcher.embed([texts[i] for i in missing]) if missing else None
        result = np.empty((len(texts), self._model.dimensions), dtype=np.float32)
        for i, vector in enumerate(found):
            if vector is not None:
                result[i] = vector
        if fresh is not None:
            result[missing] = fresh
            if self._cache is not None:
                self._cache.put([keys[i] for i in missing], fresh)
        TEXTS.labels("cache").inc(len(texts) - len(missing))
        TEXTS.labels("model").inc(len(missing))
        return result, len(texts) - len(missing)

    async def warm_up(self) -> None:
        """Runs the model once so the first request does not pay for lazy initialisation."""
        await self._batcher.embed(["warm-up"])

    async def close(self) -> None:
        if self._cache is not None:
            await self._cache.close()
        await self._batcher.close()
        self._model.close()
        if self._redis is not None:
            await self._redis.aclose()


def definition(settings: EmbeddingSettings) -> ServiceDefinition:
    service = EmbedderService(settings)
    return ServiceDefinition.for_servicer(
        embedding_pb2.DESCRIPTOR.services_by_name["Embedder"],
        embedding_pb2_grpc.add_EmbedderServicer_to_server,
        service,
        warm_up=service.warm_up,
        close=service.close,
    )
