"""``python -m subsecond.router``: run the router (``SUBSECOND_ROUTER_PROCESSES`` workers on one port)."""

from dataclasses import replace

from subsecond.kit.server import run_service
from subsecond.router.service import definition
from subsecond.router.settings import RouterSettings


def per_worker(settings: RouterSettings, processes: int) -> RouterSettings:
    """One worker's share when ``processes`` workers serve one port: the limits on generations are
    divided among them (at least one each, so a worker never refuses every miss), so the pod keeps
    the limits it was given; the quotas' local share while Redis cannot be asked is divided as among
    that many more replicas. The near cache and coalescing stay whole in each worker (the README says
    what that costs)."""
    limits = settings.generation_limits
    return replace(
        settings,
        generation_limits=replace(
            limits,
            per_tenant=max(1, limits.per_tenant // processes),
            total=max(1, limits.total // processes),
            bypassed=max(min(1, limits.bypassed), limits.bypassed // processes),
        ),
        quotas=replace(settings.quotas, replicas=settings.quotas.replicas * processes),
    )


if __name__ == "__main__":
    run_service("router", RouterSettings.from_env, definition, per_worker)
