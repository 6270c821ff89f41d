"""The semantic tier's vector store: one small async interface, two Qdrant implementations.

- :class:`EdgeVectorIndex` runs the Qdrant engine in-process (Qdrant Edge, ``qdrant-edge-py``): a shard
  in a local directory, the embedded default.
- :class:`ClientVectorIndex` talks to a Qdrant server through ``qdrant-client`` (or to its in-memory
  local mode, for tests and trials).

A search only ever sees the points of one partition: one tenant's, for one model, in one scope
(everything besides the prompt that shapes an answer). Tenants never see each other's vectors. The
partition is one keyword field of the payload, an unambiguous encoding of the three, so a search is
filtered on a single indexed value: measured on Qdrant Edge, filtering on tenant, model and scope as
three conditions made a search about twice as slow as filtering on the one field. tenant and model
are stored and indexed as well, for invalidation (delete_where). Qdrant wants UUIDs or integers as
point ids, so a string id (the answer's Redis key) is mapped to a deterministic UUID (uuid5):
storing the same key again overwrites the same point. The string id travels in the payload, so
searches hand it back unchanged.

:data:`VECTOR_STORE_FAILURES` are the errors that mean "the store is down" (the cache fails open on
them); any other exception out of an index is a bug and is not to be taken for an outage.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import qdrant_edge as edge
from qdrant_client import AsyncQdrantClient, models
from qdrant_client.common.client_exceptions import ResourceExhaustedResponse
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

# Namespace of the point UUIDs. Changing it orphans every stored vector: never change it.
_POINT_NAMESPACE = uuid.UUID("5b0e8c1e-3f7a-4d52-9a61-0c6f2d9e4b17")

# Payload keys. partition, tenant and model are filtered on (keyword-indexed); scope is kept for
# inspection; point_id, redis_key and prompt are handed back by a search.
_PARTITION = "partition"
_TENANT = "tenant"
_MODEL = "model"
_SCOPE = "scope"
_INDEXED_FIELDS = (_PARTITION, _TENANT, _MODEL)
_POINT_ID = "point_id"
_REDIS_KEY = "redis_key"
_PROMPT = "prompt"
_RETURNED_FIELDS = [_POINT_ID, _REDIS_KEY, _PROMPT]

T = TypeVar("T")


class EdgeEngineError(Exception):
    """The Qdrant Edge engine failed (storage, I/O, a closed shard)."""


# What a store raises when it is down rather than called wrongly: Qdrant Edge's engine errors;
# a Qdrant server's error answers (UnexpectedResponse), its rate limiting (ResourceExhaustedResponse)
# and requests that got no answer (ResponseHandlingException: qdrant-client wraps every error of its
# HTTP transport in it, a refused connection or a timeout); OSError from a local store's files.
VECTOR_STORE_FAILURES: tuple[type[BaseException], ...] = (
    EdgeEngineError,
    UnexpectedResponse,
    ResourceExhaustedResponse,
    ResponseHandlingException,
    OSError,
)


# The shard key of every tenant without one of its own, under custom sharding. Not a tenant name (those
# start with a letter or a digit), so no tenant can be given it.
SHARED_SHARD_KEY = "_shared"


@dataclass(frozen=True)
class CollectionLayout:
    """How the cache lays out a collection on a Qdrant server, applied when it creates the collection
    (an existing collection keeps its own layout: Qdrant fixes sharding at creation).

    - shards: shards of the collection, or of each shard key under custom sharding (None: Qdrant's
      default, one per node of the cluster);
    - replication_factor: copies of each shard, on different nodes (None: Qdrant's default, 1);
    - write_consistency: replicas that must apply a write before it is acknowledged (None: 1);
    - quantization: "int8" keeps a scalar-quantised copy of each vector in RAM (a quarter of the
      float32 size) and searches it, the float32 originals on disk for rescoring the best (Qdrant's
      "high speed, low memory" setup); "none" keeps the originals in RAM and searches them;
    - tenant_shards: large tenants that get a shard key (and so shards) of their own; every other
      tenant's points share :data:`SHARED_SHARD_KEY`. Empty: Qdrant's automatic sharding, by point id.
    """

    shards: int | None = None
    replication_factor: int | None = None
    write_consistency: int | None = None
    quantization: str = "none"
    tenant_shards: frozenset[str] = frozenset()

    def shard_key(self, tenant: str) -> str | None:
        """The shard key a tenant's points are written to and searched in (None: no custom sharding)."""
        if not self.tenant_shards:
            return None
        return tenant if tenant in self.tenant_shards else SHARED_SHARD_KEY

    def collection(self, dimensions: int) -> models.CreateCollection:
        """The body of the collection's creation."""
        quantized = self.quantization == "int8"
        return models.CreateCollection(
            vectors=models.VectorParams(
                size=dimensions, distance=models.Distance.COSINE, on_disk=True if quantized else None
            ),
            shard_number=self.shards,
            sharding_method=models.ShardingMethod.CUSTOM if self.tenant_shards else None,
            replication_factor=self.replication_factor,
            write_consistency_factor=self.write_consistency,
            quantization_config=(
                models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
                )
                if quantized
                else None
            ),
        )


@dataclass(frozen=True)
class VectorEntry:
    """One cached prompt's vector and what a search needs to find and use it.

    scope is a hash of everything besides the prompt that must match for two answers to be
    interchangeable (sampling parameters, system messages).
    """

    point_id: str
    vector: Sequence[float]
    tenant: str
    model: str
    scope: str
    redis_key: str
    prompt: str


@dataclass(frozen=True)
class Neighbour:
    """A stored prompt near the query: cosine similarity (1 is the same direction) and where its
    answer lives."""

    point_id: str
    score: float
    redis_key: str
    prompt: str


class VectorIndex(Protocol):
    """What the cache service needs from a vector store."""

    async def search(
        self, vector: Sequence[float], *, tenant: str, model: str, scope: str, limit: int
    ) -> list[Neighbour]:
        """The nearest stored prompts of this tenant, model and scope, best first."""
        ...

    async def upsert(self, entry: VectorEntry) -> None:
        """Stores an entry, replacing any with the same point id; visible to the next search."""
        ...

    async def delete(self, point_ids: Sequence[str]) -> int:
        """Removes these entries; ids that are not stored are ignored. How many were stored."""
        ...

    async def delete_where(self, *, tenant: str, model: str | None) -> int:
        """Removes all of a tenant's entries, or only those of one of its models; how many there were."""
        ...

    async def count(self, *, tenant: str | None = None) -> int:
        """How many entries the index holds (of one tenant)."""
        ...

    async def close(self) -> None:
        """Releases the store; the index is unusable afterwards."""
        ...


def point_uuid(point_id: str) -> uuid.UUID:
    """The Qdrant point id of a string id: the same string always gives the same UUID."""
    return uuid.uuid5(_POINT_NAMESPACE, point_id)


def partition_key(tenant: str, model: str, scope: str) -> str:
    """The one value a search filters on. A JSON array, so that no two (tenant, model, scope)
    triples share it, whatever characters they contain."""
    return json.dumps([tenant, model, scope], ensure_ascii=False, separators=(",", ":"))


def _floats(vector: Sequence[float], dimensions: int) -> list[float]:
    """The vector as a list of Python floats (both bindings want one), checked for its size."""
    if len(vector) != dimensions:
        raise ValueError(f"vector has {len(vector)} dimensions, the index {dimensions}")
    return [float(value) for value in vector]


def _payload(entry: VectorEntry) -> dict[str, str]:
    return {
        _PARTITION: partition_key(entry.tenant, entry.model, entry.scope),
        _TENANT: entry.tenant,
        _MODEL: entry.model,
        _SCOPE: entry.scope,
        _POINT_ID: entry.point_id,
        _REDIS_KEY: entry.redis_key,
        _PROMPT: entry.prompt,
    }


def _neighbour(payload: Mapping[str, Any] | None, score: float) -> Neighbour:
    if payload is None:
        raise ValueError("a stored point has no payload")
    return Neighbour(
        point_id=str(payload[_POINT_ID]),
        score=score,
        redis_key=str(payload[_REDIS_KEY]),
        prompt=str(payload[_PROMPT]),
    )


def _engine(call: Callable[[], T]) -> T:
    """Runs one call into an Edge shard, telling the engine's errors from ours: the binding raises
    a plain ``Exception`` for every engine error, and a specific type (TypeError, ValueError, ...)
    only when it is called wrongly, which is a bug here."""
    try:
        return call()
    except Exception as error:
        if type(error) is Exception:
            raise EdgeEngineError(str(error)) from error
        raise


def _check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")


def _partition(tenant: str, model: str, scope: str) -> dict[str, str]:
    """The payload value a search requires."""
    return {_PARTITION: partition_key(tenant, model, scope)}


def _owned_by(tenant: str, model: str | None) -> dict[str, str]:
    """The payload values of what delete_where removes: a tenant's points, or those of one model."""
    return {_TENANT: tenant} if model is None else {_TENANT: tenant, _MODEL: model}


class EdgeVectorIndex:
    """Vectors in a Qdrant Edge shard in a local directory (created if absent, reopened if present).

    Only one process may open a shard directory at a time (its write-ahead log is locked), so each
    cache replica needs its own directory; replicas that must share vectors use a Qdrant server.

    Calls into the shard run inline on the event loop, not in a worker thread. The binding holds
    the GIL for the whole of a call, so a thread would not let the loop run meanwhile; it would
    only add the hand-off (measured: a search on a small shard takes about 35 us inline, 170 us
    through asyncio.to_thread). Searches stay cheap: a p50 of 0.5-0.8 ms on 10,000 384-d points
    spread over four tenants (benchmarks/vector_index.py, on a busy two-core machine).

    Writes go to an appendable segment and are visible to the next search at once; flush() only
    makes them durable (the write-ahead log already keeps them across a crash). Edge has no
    background optimizer: points stay in plain segments, searched exhaustively, until
    :meth:`optimize` builds the HNSW index.
    """

    def __init__(self, path: Path, dimensions: int) -> None:
        self._dimensions = dimensions
        config = edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=dimensions, distance=edge.Distance.Cosine),
            # Points written to a large segment must never be held back until it is optimized:
            # a write is visible to the next search.
            optimizers=edge.EdgeOptimizersConfig(prevent_unoptimized=False),
        )
        if path.is_dir() and any(path.iterdir()):
            # With a configuration, load checks that the stored vectors have the same size and
            # distance, and fails rather than reading a shard of another model.
            self._shard = edge.EdgeShard.load(str(path), config)
        else:
            self._shard = edge.EdgeShard.create(str(path), config)
        indexed = self._shard.info().payload_schema
        for field in _INDEXED_FIELDS:
            if field not in indexed:
                # is_tenant lays a tenant's points out together when the shard is optimized.
                params = edge.KeywordIndexParams(is_tenant=field == _TENANT)
                self._shard.update(edge.UpdateOperation.create_field_index(field, params))

    async def search(
        self, vector: Sequence[float], *, tenant: str, model: str, scope: str, limit: int
    ) -> list[Neighbour]:
        _check_limit(limit)
        request = edge.QueryRequest(
            limit=limit,
            query=edge.Query.Nearest(_floats(vector, self._dimensions)),
            filter=self._filter(_partition(tenant, model, scope)),
            with_payload=edge.PayloadSelector.Include(_RETURNED_FIELDS),
        )
        return [_neighbour(point.payload, point.score) for point in _engine(lambda: self._shard.query(request))]

    async def upsert(self, entry: VectorEntry) -> None:
        point = edge.Point(point_uuid(entry.point_id), _floats(entry.vector, self._dimensions), _payload(entry))
        _engine(lambda: self._shard.update(edge.UpdateOperation.upsert_points([point])))

    async def delete(self, point_ids: Sequence[str]) -> int:
        if not point_ids:
            return 0
        ids: list[edge.PointId] = [point_uuid(point_id) for point_id in point_ids]
        # Counted first: a delete does not say how many points it found. Calls into the shard run
        # one at a time (see above), so nothing lands between the count and the delete.
        stored = self._count(edge.Filter(must=[edge.HasIdCondition(set(ids))]))
        _engine(lambda: self._shard.update(edge.UpdateOperation.delete_points(ids)))
        return stored

    async def delete_where(self, *, tenant: str, model: str | None) -> int:
        conditions = self._filter(_owned_by(tenant, model))
        stored = self._count(conditions)
        _engine(lambda: self._shard.update(edge.UpdateOperation.delete_points_by_filter(conditions)))
        return stored

    async def count(self, *, tenant: str | None = None) -> int:
        return self._count(self._filter({_TENANT: tenant}) if tenant is not None else None)

    def _count(self, conditions: edge.Filter | None) -> int:
        return _engine(lambda: self._shard.count(edge.CountRequest(exact=True, filter=conditions)))

    async def optimize(self) -> bool:
        """Merges segments and builds the HNSW index; True if anything changed.

        Exhaustive search grows with the shard (a p50 of about 3.8 ms on 50,000 384-d points, 1.2 ms
        once optimized), but this holds the GIL, and so the whole process, for seconds to minutes
        (3-18 s for 10,000 points, 2 minutes for 50,000, on a busy two-core machine): run it while
        the service is not serving, at start-up.
        """
        return _engine(self._shard.optimize)

    async def close(self) -> None:
        self._shard.flush()
        self._shard.close()

    @staticmethod
    def _filter(fields: Mapping[str, str]) -> edge.Filter:
        conditions: list[edge.ConditionType] = [
            edge.FieldCondition(key=key, match=edge.MatchValue(value)) for key, value in fields.items()
        ]
        return edge.Filter(must=conditions)


class ClientVectorIndex:
    """Vectors in a collection of a Qdrant server (or qdrant-client's in-memory local mode).

    The collection (cosine distance) and its payload indexes are created on first use if missing,
    so a service can start before the server is reachable. Writes wait for the server to apply
    them, so the next search sees them.
    """

    def __init__(
        self, client: AsyncQdrantClient, collection: str, dimensions: int, layout: CollectionLayout | None = None
    ) -> None:
        self._client = client
        self._collection = collection
        self._dimensions = dimensions
        self._layout = layout or CollectionLayout()
        self._ready = False
        self._ready_lock = asyncio.Lock()

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        collection: str,
        dimensions: int,
        api_key: str | None = None,
        layout: CollectionLayout | None = None,
    ) -> ClientVectorIndex:
        """An index on a Qdrant server at url (http or https), or in memory for ":memory:"."""
        if url == ":memory:":
            client = AsyncQdrantClient(location=":memory:")
        else:
            client = AsyncQdrantClient(url=url, api_key=api_key)
        return cls(client, collection, dimensions, layout)

    async def search(
        self, vector: Sequence[float], *, tenant: str, model: str, scope: str, limit: int
    ) -> list[Neighbour]:
        _check_limit(limit)
        query = _floats(vector, self._dimensions)
        await self._ensure_collection()
        response = await self._client.query_points(
            self._collection,
            query=query,
            query_filter=self._filter(_partition(tenant, model, scope)),
            limit=limit,
            with_payload=_RETURNED_FIELDS,
            shard_key_selector=self._layout.shard_key(tenant),
        )
        return [_neighbour(point.payload, point.score) for point in response.points]

    async def upsert(self, entry: VectorEntry) -> None:
        point = models.PointStruct(
            id=str(point_uuid(entry.point_id)),
            vector=_floats(entry.vector, self._dimensions),
            payload=_payload(entry),
        )
        await self._ensure_collection()
        await self._client.upsert(
            self._collection, points=[point], wait=True, shard_key_selector=self._layout.shard_key(entry.tenant)
        )

    async def delete(self, point_ids: Sequence[str]) -> int:
        if not point_ids:
            return 0
        ids: list[models.ExtendedPointId] = [str(point_uuid(point_id)) for point_id in point_ids]
        # Counted just before the delete (a delete does not say how many it found): a point another
        # replica writes in between is removed but not counted.
        stored = await self._count(models.Filter(must=[models.HasIdCondition(has_id=ids)]))
        await self._client.delete(self._collection, points_selector=models.PointIdsList(points=ids), wait=True)
        return stored

    async def delete_where(self, *, tenant: str, model: str | None) -> int:
        conditions = self._filter(_owned_by(tenant, model))
        stored = await self._count(conditions)
        await self._client.delete(self._collection, points_selector=models.FilterSelector(filter=conditions), wait=True)
        return stored

    async def count(self, *, tenant: str | None = None) -> int:
        return await self._count(self._filter({_TENANT: tenant}) if tenant is not None else None)

    async def _count(self, conditions: models.Filter | None) -> int:
        await self._ensure_collection()
        return (await self._client.count(self._collection, count_filter=conditions, exact=True)).count

    async def close(self) -> None:
        await self._client.close()

    async def _ensure_collection(self) -> None:
        """Creates the collection (in its layout), its payload indexes and its shard keys if missing,
        once per index. Deletes and counts name no shard key, so they reach every shard: a tenant given
        its own shard key later still has its older points removed from the shared one."""
        if self._ready:
            return
        async with self._ready_lock:
            if self._ready:
                return
            # Local mode searches exhaustively, has no shards (it ignores a shard key) and warns that
            # payload indexes have no effect there.
            options = self._client.init_options
            local = options.get("location") == ":memory:" or options.get("path") is not None
            created = not await self._client.collection_exists(self._collection)
            if created:
                body = self._layout.collection(self._dimensions)
                await self._client.create_collection(
                    self._collection,
                    vectors_config=body.vectors,
                    shard_number=body.shard_number,
                    sharding_method=body.sharding_method,
                    replication_factor=body.replication_factor,
                    write_consistency_factor=body.write_consistency_factor,
                    quantization_config=body.quantization_config,
                )
            if not local:
                await self._ensure_shard_keys(created)
                indexed = {} if created else (await self._client.get_collection(self._collection)).payload_schema
                for field in _INDEXED_FIELDS:
                    if field not in indexed:
                        schema = models.KeywordIndexParams(
                            type=models.KeywordIndexType.KEYWORD, is_tenant=field == _TENANT
                        )
                        await self._client.create_payload_index(self._collection, field, schema, wait=True)
            self._ready = True

    async def _ensure_shard_keys(self, created: bool) -> None:
        """Creates the layout's shard keys that the collection lacks (a large tenant named since it was
        created gets its key then; its older points stay in the shared key until they expire)."""
        wanted = {SHARED_SHARD_KEY, *self._layout.tenant_shards} if self._layout.tenant_shards else set()
        if wanted and not created:
            cluster = await self._client.collection_cluster_info(self._collection)
            wanted -= {shard.shard_key for shard in cluster.local_shards}
            wanted -= {shard.shard_key for shard in cluster.remote_shards}
        for key in sorted(wanted):
            await self._client.create_shard_key(self._collection, key)

    @staticmethod
    def _filter(fields: Mapping[str, str]) -> models.Filter:
        conditions: list[models.Condition] = [
            models.FieldCondition(key=key, match=models.MatchValue(value=value)) for key, value in fields.items()
        ]
        return models.Filter(must=conditions)


def open_vector_index(
    url: str,
    *,
    path: Path,
    collection: str,
    dimensions: int,
    api_key: str | None,
    layout: CollectionLayout | None = None,
) -> VectorIndex:
    """The vector index that url names.

    - "edge": a Qdrant Edge shard in-process, stored at path (the embedded default);
    - "memory": qdrant-client's in-memory local mode (nothing persists);
    - "http://..." or "https://...": a Qdrant server, with api_key if it needs one.

    collection names the server (or in-memory) collection; dimensions is the vectors' size; layout
    is how a server's collection is created (shards, replicas, quantization, large tenants' shard keys).
    """
    if url == "edge":
        return EdgeVectorIndex(path, dimensions)
    if url == "memory":
        return ClientVectorIndex.connect(":memory:", collection=collection, dimensions=dimensions)
    if url.startswith(("http://", "https://")):
        return ClientVectorIndex.connect(
            url, collection=collection, dimensions=dimensions, api_key=api_key, layout=layout
        )
    raise ValueError(f"vector index url {url!r}: use edge, memory or an http(s) Qdrant URL")
