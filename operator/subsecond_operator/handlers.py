"""The kopf shell: on a timer per LatencySLO, read (spec, target, Prometheus), decide, and write.

Writes are a /scale patch when the replica count changes, the status (through kopf's patch, applied
after every attempt, failed ones included) and an Event for every change, with the numbers behind it.
A bad spec is a permanent error stated in status; a failed Kubernetes call or an unreadable Prometheus
is a temporary one, retried with backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import kopf

from subsecond_operator import status as slo_status
from subsecond_operator.capacity import Evidence
from subsecond_operator.decision import Decision, Snapshot, decide
from subsecond_operator.kube import KubernetesClient, KubernetesError
from subsecond_operator.metrics import (
    DECISIONS,
    DESIRED_REPLICAS,
    ERRORS,
    OBJECTIVE_SECONDS,
    OBSERVED_SECONDS,
    PREDICTED_SECONDS,
    SCALINGS,
)
from subsecond_operator.predelete import FINALIZER
from subsecond_operator.prometheus import PrometheusClient, PrometheusError, Reading
from subsecond_operator.settings import OperatorSettings
from subsecond_operator.spec import SLOSpec, SpecError

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "subsecond.dev", "v1alpha1", "latencyslos"


class Shell:
    """The I/O the handlers share: clients made once per process, closed at clean-up."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.connection: kopf.ConnectionInfo | None = None
        self._kubernetes: tuple[kopf.ConnectionInfo, KubernetesClient] | None = None
        self._session: aiohttp.ClientSession | None = None

    def prometheus(self) -> PrometheusClient:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return PrometheusClient(self._session, self.settings.prometheus_url, self.settings.prometheus_timeout_seconds)

    async def kubernetes(self) -> KubernetesClient:
        """A client on kopf's latest credentials (a re-login replaces it)."""
        if self.connection is None:
            raise KubernetesError("not logged in to Kubernetes yet")
        if self._kubernetes is None or self._kubernetes[0] is not self.connection:
            if self._kubernetes is not None:
                await self._kubernetes[1].close()
            self._kubernetes = (self.connection, KubernetesClient(self.connection))
        return self._kubernetes[1]

    async def close(self) -> None:
        if self._kubernetes is not None:
            await self._kubernetes[1].close()
        if self._session is not None:
            await self._session.close()

    def backoff(self, retry: int) -> float:
        return min(self.settings.retry_delay_seconds * 2.0**retry, 4 * self.settings.interval_seconds)

    async def reconcile(
        self, body: kopf.Body, spec: Mapping[str, Any], status: Mapping[str, Any], patch: kopf.Patch, retry: int
    ) -> None:
        namespace, name = body.metadata.namespace or "", body.metadata.name or ""
        generation = int(body.metadata.get("generation", 0))
        now = time.time()
        try:
            slo = SLOSpec.parse(spec)
        except SpecError as error:
            ERRORS.labels("spec").inc()
            if status.get("reason") != slo_status.INVALID_SPEC or status.get("message") != str(error):
                kopf.event(body, type="Warning", reason=slo_status.INVALID_SPEC, message=str(error))
            patch.status.update(slo_status.invalid(status, str(error), now, generation))
            raise kopf.PermanentError(str(error)) from error

        try:
            kubernetes = await self.kubernetes()
            target = await kubernetes.read_target(namespace, slo.target)
        except KubernetesError as error:
            ERRORS.labels("kubernetes").inc()
            raise kopf.TemporaryError(str(error), delay=self.backoff(retry)) from error

        prometheus_error: str | None = None
        try:
            reading = await self.prometheus().read(slo.objective)
        except PrometheusError as error:
            ERRORS.labels("prometheus").inc()
            prometheus_error, reading = str(error), Reading(None, None)

        history = slo_status.history(status)
        last_scale = slo_status.parse_iso(status.get("lastScaleTime"))
        snapshot = Snapshot(
            now,
            target.replicas,
            target.ready_replicas,
            reading.latency_seconds,
            reading.rate_rps,
            history,
            last_scale,
            mean_seconds=reading.mean_seconds,
            recent_rps=reading.recent_rps,
            recent_mean_seconds=reading.recent_mean_seconds,
            evidence=Evidence.from_status(status),
        )
        decision = decide(slo, snapshot)
        if decision.replicas != target.replicas:
            try:
                await kubernetes.scale(namespace, slo.target, decision.replicas)
            except KubernetesError as error:
                ERRORS.labels("kubernetes").inc()
                raise kopf.TemporaryError(str(error), delay=self.backoff(retry)) from error
        new_status = slo_status.decided(
            status,
            snapshot,
            decision,
            generation=generation,
            prometheus_error=prometheus_error,
            spec_concurrency=slo.capacity.concurrency_per_replica,
            why_missing=reading.why_missing(),
        )
        patch.status.update(new_status)
        _announce(body, status, new_status, snapshot, decision)
        _record(namespace, name, slo, snapshot, decision)
        if prometheus_error is not None:
            raise kopf.TemporaryError(f"holding replicas: {prometheus_error}", delay=self.backoff(retry))


def _announce(
    body: kopf.Body, before: Mapping[str, Any], after: Mapping[str, Any], snapshot: Snapshot, decision: Decision
) -> None:
    """An Event for every change: the replica count, and each condition that turns."""
    if decision.replicas != snapshot.current_replicas:
        kopf.event(body, type="Normal", reason=decision.reason.value, message=decision.message)
        log.info(
            "scaled %s/%s from %d to %d: %s",
            body.metadata.namespace,
            body.metadata.name,
            snapshot.current_replicas,
            decision.replicas,
            decision.message,
            extra={"reason": decision.reason.value},
        )
    for kind in ("Degraded", "AtMaxReplicas"):
        was, now = slo_status.condition_status(before, kind), slo_status.condition_status(after, kind)
        if was != now:
            condition = next(c for c in after["conditions"] if c["type"] == kind)
            kopf.event(
                body,
                type="Warning" if now else "Normal",
                reason=kind if now else f"{kind}Cleared",
                message=f"{condition['reason']}: {condition['message']}",
            )


def _record(namespace: str, name: str, slo: SLOSpec, snapshot: Snapshot, decision: Decision) -> None:
    DECISIONS.labels(decision.reason.value).inc()
    if decision.replicas != snapshot.current_replicas:
        SCALINGS.labels("up" if decision.replicas > snapshot.current_replicas else "down").inc()
    OBJECTIVE_SECONDS.labels(namespace, name).set(slo.objective.threshold_seconds)
    DESIRED_REPLICAS.labels(namespace, name).set(decision.replicas)
    observed, predicted = snapshot.observed_seconds, decision.predicted_seconds
    OBSERVED_SECONDS.labels(namespace, name).set(float("nan") if observed is None else observed)
    PREDICTED_SECONDS.labels(namespace, name).set(float("nan") if predicted is None else predicted)


def build_registry(settings: OperatorSettings) -> kopf.OperatorRegistry:
    """The operator's handlers, bound to its settings."""
    registry = kopf.OperatorRegistry()
    shell = Shell(settings)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Events are the operator's own (decisions, conditions), not kopf's handler log lines.
        settings.posting.level = logging.CRITICAL
        # Named here because the pre-delete hook removes this one finalizer if the operator cannot.
        settings.persistence.finalizer = FINALIZER

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        shell.connection = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        return shell.connection

    @kopf.on.cleanup(registry=registry)
    async def close(**_: Any) -> None:
        await shell.close()

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.interval_seconds, registry=registry)
    async def reconcile(
        body: kopf.Body, spec: kopf.Spec, status: kopf.Status, patch: kopf.Patch, **kwargs: Any
    ) -> None:
        await shell.reconcile(body, spec, status, patch, retry=kwargs["retry"])

    return registry
