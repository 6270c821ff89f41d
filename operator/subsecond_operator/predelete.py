"""Helm's pre-delete hook: delete the release's LatencySLOs while the operator still runs.

kopf puts a finalizer on every LatencySLO (its timers require one), and ``helm uninstall`` deletes the
operator's Deployment and RBAC before kinds it does not know, so LatencySLOs deleted with the release
would stay Terminating for good: nothing is left to remove the finalizer, and neither the namespace nor
a reinstall can go through. This hook runs first, while the operator still runs: it deletes each
LatencySLO of the release, the operator sees the deletion and releases its finalizer, and the hook waits
for them to go. One the operator has not released within the grace period (it is down, or crash-looping)
loses kopf's finalizer here, and only that one: another controller's stays.

``python -m subsecond_operator.predelete`` with ``SUBSECOND_OPERATOR_NAMESPACE`` and
``SUBSECOND_PREDELETE_SELECTOR`` (the release's labels); exit 1 if some LatencySLO is still there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from dataclasses import dataclass

import kopf

from subsecond.kit.logs import configure_logging
from subsecond_operator.kube import KubernetesClient, KubernetesError

log = logging.getLogger(__name__)

# kopf's finalizer (its default ``settings.persistence.finalizer``; handlers.configure sets it explicitly).
FINALIZER = "kopf.zalando.org/KopfFinalizerMarker"


@dataclass(frozen=True)
class Outcome:
    deleted: tuple[str, ...]  # released by the operator (or held no finalizer)
    released: tuple[str, ...]  # kopf's finalizer removed here: the operator did not release them in time
    remaining: tuple[str, ...]  # still there: another finalizer holds them


async def _names(client: KubernetesClient, namespace: str, selector: str) -> dict[str, list[str]]:
    return {
        item["metadata"]["name"]: list(item["metadata"].get("finalizers") or ())
        for item in await client.list_slos(namespace, selector)
    }


async def _wait_gone(
    client: KubernetesClient, namespace: str, selector: str, names: set[str], seconds: float
) -> dict[str, list[str]]:
    """Polls until none of ``names`` is left or ``seconds`` pass; what is left, with its finalizers."""
    deadline = time.monotonic() + seconds
    while True:
        left = {name: f for name, f in (await _names(client, namespace, selector)).items() if name in names}
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


async def remove_latencyslos(
    client: KubernetesClient, namespace: str, selector: str, *, grace_seconds: float, settle_seconds: float = 10.0
) -> Outcome:
    """Deletes every LatencySLO the selector matches; releases kopf's finalizer of those the operator has not
    released after ``grace_seconds``; waits ``settle_seconds`` more for them to go."""
    names = set(await _names(client, namespace, selector))
    for name in sorted(names):
        await client.delete_slo(namespace, name)
    held = await _wait_gone(client, namespace, selector, names, grace_seconds)
    for name, finalizers in sorted(held.items()):
        if FINALIZER in finalizers:
            log.warning("the operator did not release %s/%s: removing kopf's finalizer", namespace, name)
            await client.set_finalizers(namespace, name, [f for f in finalizers if f != FINALIZER])
    remaining = await _wait_gone(client, namespace, selector, set(held), settle_seconds)
    return Outcome(
        deleted=tuple(sorted(names - set(held))),
        released=tuple(sorted(set(held) - set(remaining))),
        remaining=tuple(sorted(remaining)),
    )


async def _run(namespace: str, selector: str, grace_seconds: float) -> int:
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        log.error("no Kubernetes credentials: neither a service account nor a kubeconfig")
        return 1
    client = KubernetesClient(info)
    try:
        outcome = await remove_latencyslos(client, namespace, selector, grace_seconds=grace_seconds)
    except KubernetesError as error:
        log.error("%s", error)
        return 1
    finally:
        await client.close()
    log.info(
        "LatencySLOs removed: %d released by the operator, %d here, %d left",
        len(outcome.deleted),
        len(outcome.released),
        len(outcome.remaining),
        extra={"released_here": list(outcome.released), "remaining": list(outcome.remaining)},
    )
    return 1 if outcome.remaining else 0


def main() -> None:
    configure_logging("operator-predelete", os.environ.get("SUBSECOND_OPERATOR_LOG_LEVEL", "INFO").upper())
    namespace = os.environ.get("SUBSECOND_OPERATOR_NAMESPACE", "")
    if not namespace:
        log.error("SUBSECOND_OPERATOR_NAMESPACE is required")
        sys.exit(2)
    selector = os.environ.get("SUBSECOND_PREDELETE_SELECTOR", "")
    grace = float(os.environ.get("SUBSECOND_PREDELETE_GRACE_SECONDS", "60"))
    sys.exit(asyncio.run(_run(namespace, selector, grace)))


if __name__ == "__main__":
    main()
