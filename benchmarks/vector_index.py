"""Search latency of the semantic tier's vector index, for each implementation.

Stores N random unit vectors (all-MiniLM-L6-v2's 384 dimensions by default) spread evenly over a
few tenants, one upsert at a time as the cache service stores them, then times searches filtered
on one tenant, model and scope through the same async interface the service uses. The semantic
hit's end-to-end target is a p50 of 6 ms, so a search should be a small fraction of that.

    .venv/bin/python benchmarks/vector_index.py --points 10000

Measured: Qdrant Edge as written (plain segments, exhaustive search), Qdrant Edge after
optimize() (HNSW index), qdrant-client's in-memory local mode, and a Qdrant server if --qdrant-url
names one.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import numpy.typing as npt
from qdrant_client import AsyncQdrantClient

from subsecond.cache.vectors import ClientVectorIndex, EdgeVectorIndex, VectorEntry, VectorIndex

Vectors = npt.NDArray[np.float32]

MODEL = "small"
SCOPE = "default"
NEIGHBOURS = 3


def unit_vectors(count: int, dimensions: int, rng: np.random.Generator) -> Vectors:
    vectors = rng.standard_normal((count, dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


async def fill(index: VectorIndex, vectors: Vectors, tenants: int) -> float:
    """Stores every vector, point i under tenant i mod tenants; returns the seconds taken."""
    started = time.perf_counter()
    for i, vector in enumerate(vectors.tolist()):
        key = f"answer:{i}"
        await index.upsert(
            VectorEntry(
                point_id=key,
                vector=vector,
                tenant=f"tenant-{i % tenants}",
                model=MODEL,
                scope=SCOPE,
                redis_key=key,
                prompt=f"prompt {i}",
            )
        )
    return time.perf_counter() - started


async def search_latencies_ms(index: VectorIndex, queries: Vectors, tenants: int) -> list[float]:
    """The latency of each search, in milliseconds, after a few untimed warm-up searches."""
    vectors = queries.tolist()
    for vector in vectors[:10]:
        await index.search(vector, tenant="tenant-0", model=MODEL, scope=SCOPE, limit=NEIGHBOURS)
    latencies = []
    for i, vector in enumerate(vectors):
        started = time.perf_counter()
        neighbours = await index.search(
            vector, tenant=f"tenant-{i % tenants}", model=MODEL, scope=SCOPE, limit=NEIGHBOURS
        )
        latencies.append((time.perf_counter() - started) * 1000.0)
        if len(neighbours) != NEIGHBOURS:
            raise RuntimeError(f"search returned {len(neighbours)} neighbours, not {NEIGHBOURS}")
    return latencies


def report(name: str, latencies_ms: list[float], note: str) -> None:
    p50, p95, p99 = np.percentile(latencies_ms, [50, 95, 99])
    print(f"{name:<22} p50 {p50:7.3f} ms   p95 {p95:7.3f} ms   p99 {p99:7.3f} ms   {note}")


async def benchmark(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    vectors = unit_vectors(args.points, args.dimensions, rng)
    queries = unit_vectors(args.queries, args.dimensions, rng)
    print(
        f"{args.points} points x {args.dimensions} dimensions over {args.tenants} tenants, "
        f"{args.queries} searches of {NEIGHBOURS} neighbours"
    )

    with tempfile.TemporaryDirectory(prefix="vector-index-") as directory:
        edge = EdgeVectorIndex(Path(directory) / "shard", args.dimensions)
        try:
            seconds = await fill(edge, vectors, args.tenants)
            report(
                "edge (plain)",
                await search_latencies_ms(edge, queries, args.tenants),
                f"fill {seconds:.1f} s",
            )
            started = time.perf_counter()
            await edge.optimize()
            seconds = time.perf_counter() - started
            report(
                "edge (optimized)",
                await search_latencies_ms(edge, queries, args.tenants),
                f"optimize {seconds:.1f} s",
            )
        finally:
            await edge.close()

    # The local mode scans every point in Python: a few hundred milliseconds a search at 10,000.
    clients = [("client (:memory:)", AsyncQdrantClient(location=":memory:"), queries[: args.memory_queries])]
    if args.qdrant_url:
        server = AsyncQdrantClient(url=args.qdrant_url, api_key=args.qdrant_api_key)
        clients.append(("client (server)", server, queries))
    for name, client, timed in clients:
        collection = f"benchmark-{uuid.uuid4().hex}"
        index = ClientVectorIndex(client, collection, args.dimensions)
        try:
            seconds = await fill(index, vectors, args.tenants)
            latencies = await search_latencies_ms(index, timed, args.tenants)
            report(name, latencies, f"fill {seconds:.1f} s, {len(timed)} searches")
        finally:
            await client.delete_collection(collection)
            await index.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=10_000, help="vectors stored (default 10000)")
    parser.add_argument("--dimensions", type=int, default=384, help="vector size (default 384)")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the points are spread over (default 4)")
    parser.add_argument("--queries", type=int, default=1_000, help="timed searches (default 1000)")
    parser.add_argument(
        "--memory-queries", type=int, default=100, help="timed searches of the slow in-memory client (default 100)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--qdrant-url", default=None, help="also measure a Qdrant server at this URL")
    parser.add_argument("--qdrant-api-key", default=None, help="API key of that server, if it needs one")
    args = parser.parse_args()
    if args.points < NEIGHBOURS * args.tenants:
        parser.error(f"--points must be at least {NEIGHBOURS * args.tenants}")
    if min(args.queries, args.memory_queries) < 1:
        parser.error("--queries and --memory-queries must be at least 1")
    asyncio.run(benchmark(args))


if __name__ == "__main__":
    main()
