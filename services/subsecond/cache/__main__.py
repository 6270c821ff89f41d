"""``python -m subsecond.cache``: run the cache service (``SUBSECOND_CACHE_PROCESSES`` workers on one port)."""

from dataclasses import replace

from subsecond.cache.service import definition
from subsecond.cache.settings import CacheSettings
from subsecond.kit.server import run_service
from subsecond.kit.settings import SettingsError


def per_worker(settings: CacheSettings, processes: int) -> CacheSettings:
    """One worker's share when ``processes`` workers serve one port. The vectors must live in a Qdrant
    server every worker reaches: Qdrant Edge (one process owns its directory) and the in-memory store
    (one per process) would give each worker vectors of its own. The guard's threads are divided, so
    the pod runs as many as it was given."""
    if not settings.vector_url.startswith(("http://", "https://")):
        raise SettingsError(
            f"SUBSECOND_CACHE_PROCESSES={processes} needs a Qdrant server (VECTOR_URL=http(s)://...): "
            f"VECTOR_URL={settings.vector_url} keeps the vectors inside one process"
        )
    return replace(settings, guard_workers=max(1, settings.guard_workers // processes))


if __name__ == "__main__":
    run_service("cache", CacheSettings.from_env, definition, per_worker)
