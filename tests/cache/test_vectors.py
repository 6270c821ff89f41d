"""The semantic tier's vector index, against both implementations: Qdrant Edge in a temporary
directory and qdrant-client's in-memory local mode."""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from qdrant_client import AsyncQdrantClient
from redis_server import free_port

from subsecond.cache.vectors import (
    VECTOR_STORE_FAILURES,
    ClientVectorIndex,
    EdgeEngineError,
    EdgeVectorIndex,
    VectorEntry,
    open_vector_index,
    point_uuid,
)

DIMENSIONS = 8

Index = EdgeVectorIndex | ClientVectorIndex


def axis(i: int) -> list[float]:
    """The unit vector along dimension i."""
    return [1.0 if d == i else 0.0 for d in range(DIMENSIONS)]


def towards(angle_degrees: float) -> list[float]:
    """A unit vector at this angle from axis(0), in the plane of axis(0) and axis(1): its cosine
    similarity with axis(0) is cos(angle)."""
    radians = math.radians(angle_degrees)
    return [math.cos(radians), math.sin(radians)] + [0.0] * (DIMENSIONS - 2)


def entry(
    point_id: str,
    vector: Sequence[float],
    *,
    tenant: str = "acme",
    model: str = "small",
    scope: str = "s1",
    prompt: str | None = None,
) -> VectorEntry:
    return VectorEntry(
        point_id=point_id,
        vector=vector,
        tenant=tenant,
        model=model,
        scope=scope,
        redis_key=f"answer:{point_id}",
        prompt=prompt if prompt is not None else f"prompt of {point_id}",
    )


async def found(
    index: Index,
    vector: Sequence[float],
    *,
    tenant: str = "acme",
    model: str = "small",
    scope: str = "s1",
) -> list[str]:
    """The point ids a search returns, best first."""
    neighbours = await index.search(vector, tenant=tenant, model=model, scope=scope, limit=10)
    return [n.point_id for n in neighbours]


@pytest.fixture(params=["edge", "client"])
async def index(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Index]:
    opened: Index
    if request.param == "edge":
        opened = EdgeVectorIndex(tmp_path / "shard", DIMENSIONS)
    else:
        opened = ClientVectorIndex.connect(":memory:", collection=f"test-{uuid.uuid4().hex}", dimensions=DIMENSIONS)
    yield opened
    await opened.close()


async def test_a_stored_vector_is_found_with_its_payload_and_a_score_of_one(index: Index) -> None:
    await index.upsert(entry("k1", axis(0), prompt="what is the capital of France?"))

    neighbours = await index.search(axis(0), tenant="acme", model="small", scope="s1", limit=5)

    assert len(neighbours) == 1
    [neighbour] = neighbours
    assert neighbour.point_id == "k1"
    assert neighbour.redis_key == "answer:k1"
    assert neighbour.prompt == "what is the capital of France?"
    assert neighbour.score == pytest.approx(1.0, abs=1e-5)


async def test_neighbours_come_nearest_first_with_cosine_scores(index: Index) -> None:
    for point_id, angle in [("far", 80.0), ("near", 10.0), ("middle", 45.0)]:
        await index.upsert(entry(point_id, towards(angle)))
    # Length does not matter to cosine similarity.
    await index.upsert(entry("long", [3.0 * x for x in towards(30.0)]))

    neighbours = await index.search(axis(0), tenant="acme", model="small", scope="s1", limit=10)

    assert [n.point_id for n in neighbours] == ["near", "long", "middle", "far"]
    expected = [math.cos(math.radians(a)) for a in (10.0, 30.0, 45.0, 80.0)]
    assert [n.score for n in neighbours] == pytest.approx(expected, abs=1e-5)


async def test_limit_caps_the_neighbours(index: Index) -> None:
    for i in range(5):
        await index.upsert(entry(f"k{i}", towards(10.0 * i)))

    neighbours = await index.search(axis(0), tenant="acme", model="small", scope="s1", limit=2)

    assert [n.point_id for n in neighbours] == ["k0", "k1"]


async def test_a_tenant_never_sees_another_tenants_vectors(index: Index) -> None:
    await index.upsert(entry("theirs", axis(0), tenant="globex"))

    assert await found(index, axis(0), tenant="acme") == []

    await index.upsert(entry("ours", towards(60.0), tenant="acme"))

    assert await found(index, axis(0), tenant="acme") == ["ours"]
    assert await found(index, axis(0), tenant="globex") == ["theirs"]


async def test_model_and_scope_must_both_match(index: Index) -> None:
    await index.upsert(entry("small-s1", axis(0), model="small", scope="s1"))
    await index.upsert(entry("large-s1", axis(0), model="large", scope="s1"))
    await index.upsert(entry("small-s2", axis(0), model="small", scope="s2"))

    assert await found(index, axis(0), model="small", scope="s1") == ["small-s1"]
    assert await found(index, axis(0), model="large", scope="s1") == ["large-s1"]
    assert await found(index, axis(0), model="small", scope="s2") == ["small-s2"]
    assert await found(index, axis(0), model="large", scope="s2") == []


@pytest.mark.parametrize(
    ("stored", "searched"),
    [
        (("acme/eu", "small", "s1"), ("acme", "eu/small", "s1")),
        (('acme","small', "s1", "x"), ("acme", 'small","s1', "x")),
        (("acme", "small", ""), ("acme", "", "small")),
    ],
)
async def test_partitions_never_blur_whatever_the_names_hold(
    index: Index, stored: tuple[str, str, str], searched: tuple[str, str, str]
) -> None:
    tenant, model, scope = stored
    await index.upsert(entry("k1", axis(0), tenant=tenant, model=model, scope=scope))

    tenant, model, scope = searched
    assert await found(index, axis(0), tenant=tenant, model=model, scope=scope) == []
    tenant, model, scope = stored
    assert await found(index, axis(0), tenant=tenant, model=model, scope=scope) == ["k1"]


async def test_delete_removes_only_the_given_points(index: Index) -> None:
    for point_id in ("a", "b", "c"):
        await index.upsert(entry(point_id, axis(0)))

    await index.delete(["a", "c", "never-stored"])

    assert await found(index, axis(0)) == ["b"]
    assert await index.count() == 1


async def test_delete_of_nothing_is_a_no_op(index: Index) -> None:
    await index.upsert(entry("a", axis(0)))

    await index.delete([])

    assert await found(index, axis(0)) == ["a"]


async def test_delete_where_a_tenant_removes_all_its_models(index: Index) -> None:
    await index.upsert(entry("acme-small", axis(0), tenant="acme", model="small"))
    await index.upsert(entry("acme-large", axis(0), tenant="acme", model="large"))
    await index.upsert(entry("globex-small", axis(0), tenant="globex", model="small"))

    await index.delete_where(tenant="acme", model=None)

    assert await found(index, axis(0), tenant="acme", model="small") == []
    assert await found(index, axis(0), tenant="acme", model="large") == []
    assert await found(index, axis(0), tenant="globex", model="small") == ["globex-small"]
    assert await index.count() == 1


async def test_delete_where_a_tenants_model_keeps_its_other_models(index: Index) -> None:
    await index.upsert(entry("acme-small", axis(0), tenant="acme", model="small"))
    await index.upsert(entry("acme-large", axis(0), tenant="acme", model="large"))
    await index.upsert(entry("globex-small", axis(0), tenant="globex", model="small"))

    await index.delete_where(tenant="acme", model="small")

    assert await found(index, axis(0), tenant="acme", model="small") == []
    assert await found(index, axis(0), tenant="acme", model="large") == ["acme-large"]
    assert await found(index, axis(0), tenant="globex", model="small") == ["globex-small"]
    assert await index.count() == 2


async def test_storing_the_same_id_again_overwrites_the_point(index: Index) -> None:
    await index.upsert(entry("k1", axis(0), prompt="old prompt"))
    await index.upsert(entry("k1", axis(1), prompt="new prompt"))

    assert await index.count() == 1
    neighbours = await index.search(axis(1), tenant="acme", model="small", scope="s1", limit=10)
    assert [(n.point_id, n.prompt) for n in neighbours] == [("k1", "new prompt")]
    assert neighbours[0].score == pytest.approx(1.0, abs=1e-5)


async def test_a_vector_of_the_wrong_size_is_refused(index: Index) -> None:
    with pytest.raises(ValueError, match="dimensions"):
        await index.upsert(entry("k1", [1.0, 0.0]))
    with pytest.raises(ValueError, match="dimensions"):
        await index.search([1.0, 0.0], tenant="acme", model="small", scope="s1", limit=1)
    assert await index.count() == 0


async def test_a_limit_below_one_is_refused(index: Index) -> None:
    with pytest.raises(ValueError, match="limit"):
        await index.search(axis(0), tenant="acme", model="small", scope="s1", limit=0)


def test_point_uuids_are_deterministic_and_distinct() -> None:
    assert point_uuid("answer:1") == point_uuid("answer:1")
    assert point_uuid("answer:1") != point_uuid("answer:2")
    assert point_uuid("answer:1").version == 5


async def test_an_edge_shard_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    first = EdgeVectorIndex(path, DIMENSIONS)
    await first.upsert(entry("kept", axis(0)))
    await first.upsert(entry("other-tenant", axis(0), tenant="globex"))
    await first.upsert(entry("deleted", axis(0)))
    await first.delete(["deleted"])
    await first.close()

    reopened = EdgeVectorIndex(path, DIMENSIONS)
    try:
        assert await reopened.count() == 2
        neighbours = await reopened.search(axis(0), tenant="acme", model="small", scope="s1", limit=10)
        assert [(n.point_id, n.redis_key) for n in neighbours] == [("kept", "answer:kept")]
        await reopened.upsert(entry("after", towards(20.0)))
        assert await found(reopened, axis(0)) == ["kept", "after"]
    finally:
        await reopened.close()


async def test_an_edge_shard_of_another_size_is_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "shard"
    await EdgeVectorIndex(path, DIMENSIONS).close()

    with pytest.raises(Exception, match="vector size"):
        EdgeVectorIndex(path, DIMENSIONS * 2)


async def test_edge_writes_stay_visible_around_optimize(tmp_path: Path) -> None:
    index = EdgeVectorIndex(tmp_path / "shard", DIMENSIONS)
    try:
        for i in range(200):
            await index.upsert(entry(f"k{i}", towards(i * 0.4), tenant=f"t{i % 4}"))

        await index.optimize()
        await index.upsert(entry("fresh", axis(0), tenant="t1"))

        assert await index.count() == 201
        assert (await found(index, axis(0), tenant="t1"))[:2] == ["fresh", "k1"]
        assert (await found(index, axis(0), tenant="t0"))[:1] == ["k0"]
    finally:
        await index.close()


async def test_a_client_index_reuses_an_existing_collection() -> None:
    client = AsyncQdrantClient(location=":memory:")
    first = ClientVectorIndex(client, "shared", DIMENSIONS)
    await first.upsert(entry("k1", axis(0)))

    second = ClientVectorIndex(client, "shared", DIMENSIONS)
    try:
        assert await found(second, axis(0)) == ["k1"]
    finally:
        await second.close()


async def test_open_vector_index_picks_the_implementation_from_the_url(tmp_path: Path) -> None:
    edge = open_vector_index("edge", path=tmp_path / "shard", collection="c", dimensions=4, api_key=None)
    memory = open_vector_index("memory", path=tmp_path / "unused", collection="c", dimensions=4, api_key=None)
    try:
        assert isinstance(edge, EdgeVectorIndex)
        assert isinstance(memory, ClientVectorIndex)
        assert (tmp_path / "shard").is_dir()
        assert not (tmp_path / "unused").exists()
    finally:
        await edge.close()
        await memory.close()

    with pytest.raises(ValueError, match="vector index url"):
        open_vector_index("qdrant.local:6333", path=tmp_path, collection="c", dimensions=4, api_key=None)


async def test_an_edge_engine_failure_is_one_of_the_store_failures(tmp_path: Path) -> None:
    """A shard the engine cannot serve (here, closed under the index) fails with the engine's
    error, which the cache fails open on."""
    index = EdgeVectorIndex(tmp_path / "shard", DIMENSIONS)
    await index.close()

    for operation in (
        index.search(axis(0), tenant="acme", model="small", scope="s1", limit=1),
        index.upsert(entry("k1", axis(0))),
        index.delete(["k1"]),
        index.delete_where(tenant="acme", model=None),
        index.count(),
    ):
        with pytest.raises(EdgeEngineError, match="not initialized") as error:
            await operation
        assert isinstance(error.value, VECTOR_STORE_FAILURES)


async def test_a_wrong_call_into_an_index_is_not_a_store_failure(index: Index) -> None:
    """A bug (a tenant that is not a string) must not pass for an outage."""
    with pytest.raises(Exception) as error:  # of any type, as long as it is not an outage
        await index.upsert(entry("k1", axis(0), tenant=object()))  # type: ignore[arg-type]
    assert not isinstance(error.value, VECTOR_STORE_FAILURES)


async def test_a_qdrant_server_nobody_listens_on_is_a_store_failure() -> None:
    # Without the client's version check: it runs on a thread that would outlive the test, warning
    # that no server answered.
    client = AsyncQdrantClient(url=f"http://127.0.0.1:{free_port()}", check_compatibility=False)
    index = ClientVectorIndex(client, "c", DIMENSIONS)
    try:
        with pytest.raises(VECTOR_STORE_FAILURES):
            await index.search(axis(0), tenant="acme", model="small", scope="s1", limit=1)
    finally:
        await index.close()
