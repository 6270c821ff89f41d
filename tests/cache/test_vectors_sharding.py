"""The semantic tier on a sharded, replicated Qdrant server: the collection's layout from the cache's
settings, the tenant index, and large tenants' own shard keys.

Two halves, because no Qdrant server can run here (no binary, no container):

- qdrant-client's local mode runs every call the index makes with a layout, where it supports them (it
  takes and ignores shard numbers, replication and shard keys; it has no create_shard_key, which the
  index therefore never calls in local mode): the answers stay right with any layout.
- For what only a server does, the index talks to a stand-in HTTP server (below) that records each
  request and answers as Qdrant's REST API does; each recorded body is parsed with qdrant-client's
  models of Qdrant's published API (``qdrant_client.models``), so a body the server would refuse fails
  here, and its fields are checked: shards, replicas, write consistency, quantization, the tenant index
  (``is_tenant``), a shard key per large tenant, and the shard key on each write and search.
"""

from __future__ import annotations

import importlib.metadata
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from qdrant_client import AsyncQdrantClient, models

from subsecond.cache.settings import CacheSettings
from subsecond.cache.vectors import SHARED_SHARD_KEY, ClientVectorIndex, CollectionLayout, VectorEntry

DIMENSIONS = 4
CLIENT_VERSION = importlib.metadata.version("qdrant-client")
LAYOUT = CollectionLayout(
    shards=3, replication_factor=2, write_consistency=2, quantization="int8", tenant_shards=frozenset({"acme"})
)


def entry(tenant: str, name: str, vector: list[float]) -> VectorEntry:
    return VectorEntry(
        point_id=name, vector=vector, tenant=tenant, model="small", scope="s", redis_key=name, prompt=name
    )


# -- local mode ------------------------------------------------------------------------------------


async def test_a_layout_with_large_tenants_keeps_every_answer_right_in_local_mode() -> None:
    index = ClientVectorIndex.connect(
        ":memory:", collection=f"test-{uuid.uuid4().hex}", dimensions=DIMENSIONS, layout=LAYOUT
    )
    try:
        await index.upsert(entry("acme", "a", [1.0, 0.0, 0.0, 0.0]))
        await index.upsert(entry("globex", "g", [1.0, 0.0, 0.0, 0.0]))
        await index.upsert(entry("initech", "i", [0.0, 1.0, 0.0, 0.0]))

        found = await index.search([1.0, 0.0, 0.0, 0.0], tenant="globex", model="small", scope="s", limit=3)
        assert [neighbour.point_id for neighbour in found] == ["g"]
        assert await index.delete_where(tenant="acme", model=None) == 1
        assert await index.count() == 2
    finally:
        await index.close()


# -- request bodies, against Qdrant's published models ----------------------------------------------


class StandInQdrant(BaseHTTPRequestHandler):
    """Answers Qdrant's REST calls with the smallest valid result and records (method, path, body).
    ``existing`` makes the collection exist already, with these shard keys and these payload indexes."""

    url: ClassVar[str]
    requests: ClassVar[list[tuple[str, str, Any]]]
    existing: ClassVar[tuple[list[str], dict[str, Any]] | None] = None
    info: ClassVar[dict[str, Any]] = {}

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        self._answer("GET")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_POST(self) -> None:
        self._answer("POST")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        path = self.path.split("?")[0]
        type(self).requests.append((method, path, body))
        # The root (qdrant-client's version check) answers bare, as a server of the client's version;
        # every API call in a result envelope.
        reply = {"title": "qdrant", "version": CLIENT_VERSION} if path == "/" else self._envelope(method, path)
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _envelope(self, method: str, path: str) -> dict[str, Any]:
        return {"result": self._result(method, path), "status": "ok", "time": 0.0}

    def _result(self, method: str, path: str) -> Any:
        existing = type(self).existing
        update = {"operation_id": 1, "status": "completed"}
        if path.endswith("/exists"):
            return {"exists": existing is not None}
        if path.endswith("/cluster"):
            keys = existing[0] if existing else []
            return models.CollectionClusterInfo(
                peer_id=1,
                shard_count=len(keys),
                local_shards=[
                    models.LocalShardInfo(shard_id=i, shard_key=key, points_count=0, state=models.ReplicaState.ACTIVE)
                    for i, key in enumerate(keys)
                ],
                remote_shards=[],
                shard_transfers=[],
            ).model_dump(mode="json")
        if path.endswith("/points/query"):
            return {"points": []}
        if path.endswith("/points/count"):
            return {"count": 0}
        if path.endswith(("/index", "/points", "/points/delete")):
            return update
        if method == "GET":  # the collection's info
            return type(self).info
        return True  # create collection, create shard key


@pytest.fixture
def qdrant() -> Iterator[type[StandInQdrant]]:
    class Handler(StandInQdrant):  # this test's own records
        requests: ClassVar[list[tuple[str, str, Any]]] = []

    handler = Handler
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield handler
    # qdrant-client checks the server's version from a thread of its own: let it finish first, or it
    # finds the server gone and warns.
    deadline = time.monotonic() + 10
    while ("GET", "/", None) not in handler.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    server.shutdown()
    server.server_close()


def bodies(handler: type[StandInQdrant], method: str, suffix: str) -> list[Any]:
    return [body for m, path, body in handler.requests if m == method and path.endswith(suffix)]


async def exercise(handler: type[StandInQdrant], layout: CollectionLayout) -> None:
    index = ClientVectorIndex.connect(
        handler.url,
        collection="prompts",
        dimensions=DIMENSIONS,
        layout=layout,
    )
    try:
        await index.upsert(entry("acme", "a", [1.0, 0.0, 0.0, 0.0]))
        await index.upsert(entry("globex", "g", [1.0, 0.0, 0.0, 0.0]))
        await index.search([1.0, 0.0, 0.0, 0.0], tenant="acme", model="small", scope="s", limit=3)
        await index.search([1.0, 0.0, 0.0, 0.0], tenant="globex", model="small", scope="s", limit=3)
        await index.delete_where(tenant="acme", model=None)
    finally:
        await index.close()


async def test_a_new_collection_is_created_sharded_replicated_and_quantised(qdrant: type[StandInQdrant]) -> None:
    await exercise(qdrant, LAYOUT)

    [created] = [models.CreateCollection.model_validate(body) for body in bodies(qdrant, "PUT", "/collections/prompts")]
    assert created.shard_number == 3
    assert created.sharding_method == models.ShardingMethod.CUSTOM
    assert (created.replication_factor, created.write_consistency_factor) == (2, 2)
    assert isinstance(created.quantization_config, models.ScalarQuantization)
    assert created.quantization_config.scalar.type == models.ScalarType.INT8
    assert created.quantization_config.scalar.always_ram
    # The originals on disk (read to rescore), the quantised copy in RAM.
    assert created.vectors == models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE, on_disk=True)


async def test_large_tenants_get_their_own_shard_key_and_the_others_share_one(qdrant: type[StandInQdrant]) -> None:
    await exercise(qdrant, LAYOUT)

    keys = [models.CreateShardingKey.model_validate(body).shard_key for body in bodies(qdrant, "PUT", "/shards")]
    assert sorted(keys) == sorted([SHARED_SHARD_KEY, "acme"])
    writes = [models.PointsList.model_validate(body) for body in bodies(qdrant, "PUT", "/points")]
    assert [(write.points[0].payload or {}).get("tenant") for write in writes] == ["acme", "globex"]
    assert [write.shard_key for write in writes] == ["acme", SHARED_SHARD_KEY]
    searches = [models.QueryRequest.model_validate(body) for body in bodies(qdrant, "POST", "/points/query")]
    assert [search.shard_key for search in searches] == ["acme", SHARED_SHARD_KEY]
    # A delete names no shard key: it reaches the tenant's points wherever they were written.
    [delete] = [models.FilterSelector.model_validate(body) for body in bodies(qdrant, "POST", "/points/delete")]
    assert delete.shard_key is None


async def test_the_tenant_field_is_qdrants_tenant_index(qdrant: type[StandInQdrant]) -> None:
    await exercise(qdrant, LAYOUT)

    indexes = {
        index.field_name: index.field_schema
        for index in (models.CreateFieldIndex.model_validate(body) for body in bodies(qdrant, "PUT", "/index"))
    }
    assert set(indexes) == {"partition", "tenant", "model"}
    for field, schema in indexes.items():
        assert isinstance(schema, models.KeywordIndexParams)
        assert schema.is_tenant == (field == "tenant")


async def test_without_a_layout_the_collection_and_requests_are_qdrants_defaults(
    qdrant: type[StandInQdrant],
) -> None:
    await exercise(qdrant, CollectionLayout())

    [created] = bodies(qdrant, "PUT", "/collections/prompts")
    assert set(created) == {"vectors"}  # every other setting left to the server
    assert bodies(qdrant, "PUT", "/shards") == []
    assert all("shard_key" not in body for body in bodies(qdrant, "PUT", "/points"))


async def test_an_existing_collection_gets_only_the_shard_keys_and_indexes_it_lacks(
    qdrant: type[StandInQdrant],
) -> None:
    local = AsyncQdrantClient(location=":memory:")
    vectors = models.VectorParams(size=DIMENSIONS, distance=models.Distance.COSINE)
    await local.create_collection("prompts", vectors_config=vectors)
    info = (await local.get_collection("prompts")).model_dump(mode="json")
    await local.close()
    info["payload_schema"] = {
        field: {"data_type": "keyword", "points": 0} for field in ("partition", "tenant")
    }  # "model" is missing
    qdrant.info = info
    qdrant.existing = ([SHARED_SHARD_KEY], info["payload_schema"])

    await exercise(qdrant, CollectionLayout(tenant_shards=frozenset({"acme", "globex"})))

    assert bodies(qdrant, "PUT", "/collections/prompts") == []
    keys = [models.CreateShardingKey.model_validate(body).shard_key for body in bodies(qdrant, "PUT", "/shards")]
    assert keys == ["acme", "globex"]
    assert [body["field_name"] for body in bodies(qdrant, "PUT", "/index")] == ["model"]


# -- settings --------------------------------------------------------------------------------------


def test_the_layout_is_read_from_the_cache_settings() -> None:
    settings = CacheSettings.from_env(
        {
            "SUBSECOND_CACHE_VECTOR_URL": "https://qdrant.example.com:6333",
            "SUBSECOND_CACHE_VECTOR_SHARDS": "6",
            "SUBSECOND_CACHE_VECTOR_REPLICATION_FACTOR": "3",
            "SUBSECOND_CACHE_VECTOR_WRITE_CONSISTENCY": "2",
            "SUBSECOND_CACHE_VECTOR_QUANTIZATION": "int8",
            "SUBSECOND_CACHE_VECTOR_TENANT_SHARDS": "acme, globex",
        }
    )
    assert settings.vector_layout == CollectionLayout(6, 3, 2, "int8", frozenset({"acme", "globex"}))
    assert CacheSettings.from_env({}).vector_layout == CollectionLayout()


@pytest.mark.parametrize(
    ("environment", "problem"),
    [
        ({"VECTOR_URL": "http://q:6333", "VECTOR_WRITE_CONSISTENCY": "2"}, "at most the replication factor (1)"),
        ({"VECTOR_URL": "http://q:6333", "VECTOR_QUANTIZATION": "binary"}, "none or int8"),
        ({"VECTOR_URL": "http://q:6333", "VECTOR_TENANT_SHARDS": "_shared"}, "not a simple name"),
        ({"VECTOR_URL": "edge", "VECTOR_SHARDS": "4"}, "lay out a Qdrant server's collection"),
    ],
)
def test_a_layout_that_cannot_work_is_refused_at_start_up(environment: dict[str, str], problem: str) -> None:
    with pytest.raises(ValueError) as error:
        CacheSettings.from_env({f"SUBSECOND_CACHE_{name}": value for name, value in environment.items()})
    assert problem in str(error.value)
