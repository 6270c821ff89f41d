"""The operators' RPCs (keys with the ``admin`` scope): invalidating cached answers and reading the
cache's statistics, the router's side and the cache service's.

An invalidation names a tenant this router knows (a key's, or the anonymous tenant), and optionally
one of its tiers and one prompt. A prompt is admitted exactly as a Generate call's would be, so it
removes the entry that call would have hit (its conversation, sampling and the tier's current
revision); a tenant or tier removes every revision of it. Statistics name one such tenant, or none
for every tenant in the cache. Nothing the caller sends reaches the cache but through these checks.
"""

from __future__ import annotations

from subsecond.kit.errors import InvalidArgument
from subsecond.router.admission import AUTO, admit
from subsecond.router.cache_client import CacheClient, cache_query
from subsecond.router.context import Deadline
from subsecond.router.settings import RouterSettings
from subsecond.v1 import cache_pb2, router_pb2


def _known_tenant(tenant: str, settings: RouterSettings) -> str:
    keys = settings.keys
    tenants = keys.tenants | ({keys.anonymous.tenant} if keys.anonymous else set())
    if tenant not in tenants:
        raise InvalidArgument(f"tenant: {tenant!r} is not a tenant of this router's keys")
    return tenant


def invalidation(request: router_pb2.InvalidateCacheRequest, settings: RouterSettings) -> cache_pb2.CacheQuery:
    """The cache query an admin's request names, checked."""
    _known_tenant(request.tenant, settings)
    if request.model and request.model != AUTO and request.model not in settings.tiers:
        raise InvalidArgument(f"model: unknown tier {request.model!r}; use auto or one of {', '.join(settings.tiers)}")
    if not request.prompt:
        return cache_pb2.CacheQuery(tenant=request.tenant, model=request.model)
    if not request.model:
        raise InvalidArgument("model: a prompt's entry is one tier's; name the tier")
    asked = router_pb2.GenerateRequest(prompt=request.prompt, model=request.model, sampling=request.sampling)
    return cache_query(admit(asked, request.tenant, settings), settings)


async def invalidate(
    request: router_pb2.InvalidateCacheRequest, settings: RouterSettings, cache: CacheClient, deadline: Deadline
) -> router_pb2.InvalidateCacheResponse:
    done = await cache.invalidate(invalidation(request, settings), deadline)
    return router_pb2.InvalidateCacheResponse(removed=done.removed, vectors_removed=done.vectors_removed)


async def stats(
    request: router_pb2.CacheStatsRequest, settings: RouterSettings, cache: CacheClient, deadline: Deadline
) -> router_pb2.CacheStatsResponse:
    """This router's near cache, breaker and revisions, with the cache service's counts of one tenant
    of this router's keys (or of every tenant)."""
    tenant = _known_tenant(request.tenant, settings) if request.tenant else ""
    response = cache.stats()
    response.cache.CopyFrom(await cache.service_stats(tenant, deadline))
    return response
