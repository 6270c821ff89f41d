"""Settings of the cache service (environment variables ``SUBSECOND_CACHE_*``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from subsecond.cache.guard import (
    DEFAULT_SIMILARITY_THRESHOLD,
    DEFAULT_VERIFIER_PROBABILITY,
    OperatingPoint,
    operating_point,
)
from subsecond.cache.vectors import CollectionLayout
from subsecond.kit.settings import EnvReader, ServerSettings


@dataclass(frozen=True)
class CacheSettings:
    server: ServerSettings
    redis_url: str
    redis_timeout_seconds: float
    # TTL of a stored answer when the Store call gives none.
    default_ttl_seconds: int
    # "edge" (Qdrant Edge in-process, at vector_path), "memory" (qdrant-client in memory) or a Qdrant URL.
    vector_url: str
    vector_path: Path
    vector_collection: str
    vector_api_key: str
    # How the cache creates its collection on a Qdrant server: shards, replicas, write consistency,
    # quantization, large tenants' own shard keys (vectors.CollectionLayout).
    vector_layout: CollectionLayout
    embedding_url: str
    embedding_timeout_seconds: float
    # Ask for the prompt's embedding while the exact tier is read, not after it missed: a semantic
    # lookup saves the Redis round trip; an exact hit costs the embedding service a wasted call.
    embed_during_exact: bool
    semantic_enabled: bool
    similarity_threshold: float
    # Neighbours checked against the threshold and guard, best first.
    semantic_candidates: int
    # Threads that run the guard, off the event loop (a health check or an exact hit never waits on it).
    guard_workers: int
    # Per-tenant ("acme") or per-tenant-and-model ("acme/large") operating points, over the default.
    similarity_thresholds: Mapping[str, OperatingPoint]
    # The pair verifier's model (subsecond_tools.verifier_train); without it nothing is served semantically.
    verifier_dir: Path
    # ONNX Runtime intra-op threads of one verifier call (verifier.PairVerifier).
    verifier_threads: int

    def threshold_for(self, tenant: str, model: str) -> OperatingPoint:
        """The most specific point set for this tenant and model: tenant/model, tenant, the default."""
        default = OperatingPoint(self.similarity_threshold, DEFAULT_VERIFIER_PROBABILITY)
        return self.similarity_thresholds.get(f"{tenant}/{model}", self.similarity_thresholds.get(tenant, default))

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> CacheSettings:
        env = EnvReader(environ, "SUBSECOND_CACHE_")
        settings = cls(
            server=ServerSettings.read(env, default_port=50052, default_metrics_port=9462),
            redis_url=env.text("REDIS_URL", "redis://127.0.0.1:6390/0"),
            redis_timeout_seconds=env.number("REDIS_TIMEOUT_MS", 50.0, minimum=1.0) / 1000.0,
            default_ttl_seconds=env.integer("DEFAULT_TTL_SECONDS", 24 * 3600, minimum=1),
            vector_url=env.text("VECTOR_URL", "edge"),
            vector_path=Path(env.text("VECTOR_PATH", ".cache/qdrant-edge")),
            vector_collection=env.text("VECTOR_COLLECTION", "subsecond_prompts"),
            vector_api_key=env.text("VECTOR_API_KEY", ""),
            vector_layout=_layout(env),
            embedding_url=env.text("EMBEDDING_URL", "127.0.0.1:50053"),
            embedding_timeout_seconds=env.number("EMBEDDING_TIMEOUT_MS", 250.0, minimum=1.0) / 1000.0,
            embed_during_exact=env.flag("EMBED_DURING_EXACT", True),
            semantic_enabled=env.flag("SEMANTIC_ENABLED", True),
            similarity_threshold=env.number("SIMILARITY_THRESHOLD", DEFAULT_SIMILARITY_THRESHOLD, maximum=1.0),
            semantic_candidates=env.integer("SEMANTIC_CANDIDATES", 3, minimum=1, maximum=50),
            guard_workers=env.integer("GUARD_WORKERS", 2, minimum=1, maximum=16),
            similarity_thresholds=_thresholds(env),
            verifier_dir=Path(env.text("VERIFIER_DIR", ".cache/models/pair-verifier")),
            verifier_threads=env.integer("VERIFIER_THREADS", 1, minimum=1, maximum=16),
        )
        env.check(
            settings.vector_url in {"edge", "memory"} or settings.vector_url.startswith(("http://", "https://")),
            f"SUBSECOND_CACHE_VECTOR_URL={settings.vector_url!r}: use edge, memory or an http(s) Qdrant URL",
        )
        server = settings.vector_url.startswith(("http://", "https://"))
        env.check(
            server or settings.vector_layout == CollectionLayout(),
            "SUBSECOND_CACHE_VECTOR_SHARDS, _REPLICATION_FACTOR, _WRITE_CONSISTENCY, _QUANTIZATION and _TENANT_SHARDS "
            "lay out a Qdrant server's collection: set VECTOR_URL to one, or leave them unset",
        )
        env.done()
        return settings


def _thresholds(env: EnvReader) -> dict[str, OperatingPoint]:
    """``SIMILARITY_THRESHOLDS``: ``tenant=point`` or ``tenant/model=point`` pairs, a point being a name
    of guard.OPERATING_POINTS, a cosine or cosine:probability (``acme=strict,acme/small=0.8:0.7``)."""
    thresholds: dict[str, OperatingPoint] = {}
    for owner, point in env.mapping("SIMILARITY_THRESHOLDS", {}).items():
        try:
            thresholds[owner] = operating_point(point)
        except ValueError as error:
            env.check(False, f"SUBSECOND_CACHE_SIMILARITY_THRESHOLDS: {owner}={point!r}: {error}")
    return thresholds


def _layout(env: EnvReader) -> CollectionLayout:
    """The ``VECTOR_*`` layout of a server's collection; 0 (the default) leaves a number to Qdrant."""
    replication = env.integer("VECTOR_REPLICATION_FACTOR", 0, maximum=16)
    consistency = env.integer("VECTOR_WRITE_CONSISTENCY", 0, maximum=16)
    quantization = env.text("VECTOR_QUANTIZATION", "none")
    env.check(quantization in {"none", "int8"}, f"SUBSECOND_CACHE_VECTOR_QUANTIZATION={quantization!r}: none or int8")
    env.check(
        consistency <= max(replication, 1),
        f"SUBSECOND_CACHE_VECTOR_WRITE_CONSISTENCY={consistency}: at most the replication factor "
        f"({max(replication, 1)}), or no write could ever be acknowledged",
    )
    return CollectionLayout(
        shards=env.integer("VECTOR_SHARDS", 0, maximum=1024) or None,
        replication_factor=replication or None,
        write_consistency=consistency or None,
        quantization=quantization,
        tenant_shards=frozenset(env.names("VECTOR_TENANT_SHARDS", ())),
    )
