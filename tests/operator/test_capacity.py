"""The issue's two batching cases through decide(): one request per replica misreads a server that serves many
at once; the concurrency the chart renders from values reads them right."""

from __future__ import annotations

from slo_specs import base_spec

from subsecond_operator.decision import Reason, Snapshot, decide
from subsecond_operator.spec import SLOSpec

NOW = 1_000_000.0


def _spec(threshold_ms: float, concurrency: int, max_replicas: int, min_replicas: int = 1) -> SLOSpec:
    return SLOSpec.parse(
        base_spec(
            objective={"thresholdMs": threshold_ms, "metric": "m"},
            minReplicas=min_replicas,
            maxReplicas=max_replicas,
            capacity={"concurrencyPerReplica": concurrency},
        )
    )


def _snapshot(replicas: int, p95: float, mean: float, rps: float) -> Snapshot:
    # An old object (its scale-down window covered) that has not scaled lately.
    return Snapshot(NOW, replicas, replicas, p95, rps, mean_seconds=mean, last_scale_time=NOW - 3600)


def test_router_whose_latency_is_its_own_is_not_scaled_to_its_maximum() -> None:
    """Whole calls at P95 3 s, mean 1.5 s, 10 req/s on 2 replicas: one request per replica reads saturation
    and doubles; 64 at once (the chart's router default) sees no queue, and more replicas would not help."""
    saturated = decide(_spec(300, 1, 10, min_replicas=2), _snapshot(2, 3.0, 1.5, 10.0))
    assert saturated.replicas == 4 and "saturated" in saturated.message
    batching = decide(_spec(300, 64, 10, min_replicas=2), _snapshot(2, 3.0, 1.5, 10.0))
    assert batching.replicas == 2 and batching.at_max
    assert batching.reason is Reason.AT_MAX


def test_generation_pod_with_in_flight_batching_is_not_given_a_gpu_it_does_not_need() -> None:
    """TTFT P95 350 ms, mean 150 ms, 20 req/s on 2 pods, objective 400 ms (target 320 ms): one request per pod reads
    the P95 as queueing, adds a GPU pod and promises under 200 ms, which a batching server will not deliver; with
    Triton's batch of 64 (the chart's default) there is no queue, and the two pods hold."""
    one_at_a_time = decide(_spec(400, 1, 4), _snapshot(2, 0.35, 0.15, 20.0))
    assert one_at_a_time.replicas == 3 and one_at_a_time.reason is Reason.AT_RISK
    assert one_at_a_time.predicted_seconds is not None and one_at_a_time.predicted_seconds < 0.2
    batching = decide(_spec(400, 64, 4), _snapshot(2, 0.35, 0.15, 20.0))
    assert batching.replicas == 2 and batching.reason is not Reason.AT_RISK
