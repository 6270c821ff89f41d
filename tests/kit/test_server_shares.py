"""What each of several worker processes gets of the router's and the cache's settings
(``per_worker`` in their ``__main__``, applied by the kit's ``run_service``)."""

from __future__ import annotations

import pytest

from subsecond.cache.__main__ import per_worker as cache_share
from subsecond.cache.settings import CacheSettings
from subsecond.kit.settings import SettingsError
from subsecond.router.__main__ import per_worker as router_share
from subsecond.router.settings import RouterSettings


def router(**environ: str) -> RouterSettings:
    return RouterSettings.from_env({f"SUBSECOND_ROUTER_{name}": value for name, value in environ.items()})


def test_the_router_divides_its_generation_limits_among_workers() -> None:
    settings = router(TENANT_MAX_STREAMS="64", MAX_GENERATIONS="48", BYPASS_MAX_GENERATIONS="8", QUOTA_REPLICAS="3")
    share = router_share(settings, 4)
    assert (share.generation_limits.per_tenant, share.generation_limits.total, share.generation_limits.bypassed) == (
        16,
        12,
        2,
    )
    assert share.quotas.replicas == 12  # Redis down: each worker enforces 1/12 of a tenant's quota
    assert share.near_cache == settings.near_cache  # each worker keeps its own, whole


def test_a_worker_keeps_at_least_one_generation() -> None:
    share = router_share(router(TENANT_MAX_STREAMS="1", MAX_GENERATIONS="2", BYPASS_MAX_GENERATIONS="1"), 4)
    assert (share.generation_limits.per_tenant, share.generation_limits.total, share.generation_limits.bypassed) == (
        1,
        1,
        1,
    )
    assert router_share(router(BYPASS_MAX_GENERATIONS="0"), 4).generation_limits.bypassed == 0


def cache(**environ: str) -> CacheSettings:
    return CacheSettings.from_env({f"SUBSECOND_CACHE_{name}": value for name, value in environ.items()})


@pytest.mark.parametrize("store", ["edge", "memory"])
def test_the_cache_needs_a_shared_vector_store_for_several_workers(store: str) -> None:
    with pytest.raises(SettingsError, match="needs a Qdrant server"):
        cache_share(cache(VECTOR_URL=store), 2)


def test_the_cache_divides_its_guard_threads() -> None:
    settings = cache(VECTOR_URL="http://qdrant:6333", GUARD_WORKERS="4")
    assert cache_share(settings, 2).guard_workers == 2
    assert cache_share(settings, 8).guard_workers == 1
