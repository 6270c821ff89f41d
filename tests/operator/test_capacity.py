"""The issue's two batching cases through decide(): one request per replica misreads a server that serves many
at once; the concurrency the chart renders from values reads them right, and the one fitted from the metrics
corrects it where the server serves fewer. Then the defaults' utilisation ceiling and the backlog's arrivals."""

from __future__ import annotations

import math

import pytest
from slo_specs import base_spec

from subsecond_operator.capacity import NO_EVIDENCE, Evidence
from subsecond_operator.decision import Reason, Recommendation, Snapshot, decide
from subsecond_operator.queueing import fit, response_quantile
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


# The capacity fitted from the metrics: the chart's concurrency is a prior and an upper bound, and once the latency
# has climbed (a mean at twice the floor), Little's law at the peak rate per replica gives what a replica serves.
ROUTER_CLIMBED = Evidence(floor_seconds=1.4, peak_rps_per_replica=6.0, climbed=True)  # 8.4 at once: 8
GENERATION_CLIMBED = Evidence(floor_seconds=0.12, peak_rps_per_replica=40.0, climbed=True)  # 4.8 at once: 5


def _run(spec: SLOSpec, evidence: Evidence, replicas: int, ticks: int = 6) -> list[int]:
    """The counts decide() sets tick after tick when the latency and rate stay what they were (the worst case: more
    replicas change nothing), each tick an interval after a change that has settled."""
    counts = [replicas]
    for tick in range(ticks):
        snapshot = Snapshot(
            NOW + 600 * tick, counts[-1], counts[-1], 3.0, 10.0, mean_seconds=1.5, last_scale_time=NOW - 3600,
            evidence=evidence,
        )
        decision = decide(spec, snapshot)
        evidence = decision.evidence
        counts.append(decision.replicas)
    return counts


@pytest.mark.parametrize(
    ("prior", "evidence", "concurrency", "settles_at"),
    [
        (1, NO_EVIDENCE, 1, None),  # one at a time: saturation, doubling to the maximum
        (64, NO_EVIDENCE, 64, 2),  # the chart's prior, no evidence against it
        (64, ROUTER_CLIMBED, 8, 3),  # fitted: 8 at once, so 15 in flight fill 3 replicas to 0.63 (ceiling 0.65)
        (4, ROUTER_CLIMBED, 4, 6),  # the prior is an upper bound: a fit over it is not believed
    ],
)
def test_router_at_3_s_settles_short_of_its_maximum_with_a_fitted_concurrency(
    prior: int, evidence: Evidence, concurrency: int, settles_at: int | None
) -> None:
    """The issue's router (P95 3 s, mean 1.5 s, 10 req/s on 2): with the fitted concurrency it adds what 10 req/s
    needs at 1.5 s a request and stops; only the one-at-a-time reading runs to maxReplicas."""
    spec = _spec(300, prior, 10, min_replicas=2)
    counts = _run(spec, evidence, 2)
    assert evidence.concurrency(prior) == concurrency
    if settles_at is None:
        assert counts[-1] == 10 and counts[1:3] == [4, 8]
    else:
        assert counts[-3:] == [settles_at] * 3 and settles_at < 10, counts


@pytest.mark.parametrize(("evidence", "concurrency"), [(NO_EVIDENCE, 64), (GENERATION_CLIMBED, 5)])
def test_generation_is_not_predicted_under_what_a_batching_server_delivers(
    evidence: Evidence, concurrency: int
) -> None:
    """TTFT P95 350 ms, mean 150 ms, 20 req/s on 2 pods (objective 400 ms, target 320 ms): one request per pod read
    the P95 as queueing and promised far less on more pods; with the prior (64) or a fitted 5 at once, 3 of 10 slots
    are busy, the 350 ms is the service's own and is what is predicted: no GPU pod is added for it."""
    spec = _spec(400, 64, 4)
    snapshot = Snapshot(NOW, 2, 2, 0.35, 20.0, mean_seconds=0.15, last_scale_time=NOW - 3600, evidence=evidence)
    decision = decide(spec, snapshot)
    assert decision.concurrency == concurrency and f"{concurrency} at once per replica" in decision.message
    assert decision.replicas == 2 and decision.reason is Reason.AT_MAX, decision.message
    model = fit(0.95, 0.35, 20.0, 2, concurrency, 0.15)
    for pods in (2, 3, 4):
        assert response_quantile(0.95, 20.0, pods, model) == pytest.approx(0.35, rel=0.02)


def test_evidence_learns_the_floor_the_peak_and_the_climb() -> None:
    evidence = NO_EVIDENCE.learn(rate_rps=20.0, mean_seconds=0.1, ready=2, window_seconds=60.0)
    assert evidence == Evidence(0.1, 10.0, climbed=False) and evidence.fitted_concurrency is None
    evidence = evidence.learn(rate_rps=1.0, mean_seconds=0.01, ready=1, window_seconds=30.0)  # 30 requests: noise
    assert evidence == Evidence(0.1, 10.0, climbed=False)
    evidence = evidence.learn(rate_rps=150.0, mean_seconds=0.19, ready=2, window_seconds=60.0)  # under 2x: no climb
    assert evidence == Evidence(0.1, 75.0, climbed=False)
    # A jump's first window: the mean climbed, but the rate was still rising (it mixes the load before it).
    jump = evidence.learn(
        rate_rps=160.0, mean_seconds=0.2, ready=2, window_seconds=60.0, recent_rps=180.0, recent_mean_seconds=0.3
    )
    assert jump == Evidence(0.1, 80.0, climbed=False)
    assert evidence.learn(rate_rps=160.0, mean_seconds=0.2, ready=2, window_seconds=60.0) == jump  # no recent part
    evidence = evidence.learn(
        rate_rps=160.0, mean_seconds=0.2, ready=2, window_seconds=60.0, recent_rps=165.0, recent_mean_seconds=0.25
    )
    assert evidence == Evidence(0.1, 80.0, climbed=True) and evidence.fitted_concurrency == 8
    assert evidence.concurrency(64) == 8 and evidence.concurrency(4) == 4
    status = evidence.to_status(64, 7.5)
    assert status["fittedConcurrencyPerReplica"] == 8 and status["concurrencyPerReplica"] == 8
    assert status["specConcurrencyPerReplica"] == 64 and status["inFlightPerReplica"] == 7.5
    assert Evidence.from_status({"capacity": status}) == evidence
    assert Evidence.from_status({}) == NO_EVIDENCE


def test_decide_learns_only_from_a_window_its_replicas_served_alone() -> None:
    """After a scale-down the window's completions were served by more replicas than are left: no peak from them."""
    spec = _spec(300, 64, 10)
    fresh = Snapshot(NOW, 4, 4, 0.12, 400.0, mean_seconds=0.06, last_scale_time=NOW - 30)
    assert decide(spec, fresh).evidence == NO_EVIDENCE
    settled = Snapshot(NOW, 4, 4, 0.12, 400.0, mean_seconds=0.06, last_scale_time=NOW - 61)
    assert decide(spec, settled).evidence == Evidence(0.06, 100.0, climbed=False)


# The defaults' utilisation ceiling (0.65, the HPA's tolerance) and a backlog read from the mean's growth.
def _default(concurrency: int = 1) -> SLOSpec:
    return SLOSpec.parse(base_spec(capacity={"concurrencyPerReplica": concurrency}, maxReplicas=30))


@pytest.mark.parametrize(("rate", "replicas"), [(20.0, 3), (40.0, 4), (50.0, 4), (60.0, 5)])
def test_utilisation_ceiling_with_the_hpa_tolerance(rate: float, replicas: int) -> None:
    """Latency well within the objective (P95 140 ms, target 240 ms) on 4: the ceiling alone sets the count, to
    rate x service time / 0.65 when the ready count is more than 10 % off it (20 and 60 req/s), and holds it within
    that (40 and 50)."""
    spec = _default()
    history = tuple(Recommendation(NOW - 15 * i, 1) for i in range(25, 0, -1))
    snapshot = Snapshot(NOW, 4, 4, 0.14, rate, history, NOW - 3600, mean_seconds=0.068)
    needed = rate * fit(0.95, 0.14, rate, 4, 1, 0.068).mean_service_seconds / 0.65
    assert (needed / 1.1 <= 4 <= needed / 0.9) is (replicas == 4)
    assert replicas == 4 or replicas == math.ceil(needed)
    assert decide(spec, snapshot).replicas == replicas


@pytest.mark.parametrize(
    ("recent_mean", "replicas", "words"),
    [
        (1.658, 9, "holding"),  # growing: arrivals 74.5 / (1 - 0.037) = 77 req/s, which 9 serve at 0.58
        (0.332, 9, "holding"),  # draining: fewer arrive than complete
        (None, 13, "saturated"),  # no recent mean: nothing measures the arrivals; double, one step of 4
    ],
)
def test_backlog_is_sized_from_the_arrivals_it_shows(recent_mean: float | None, replicas: int, words: str) -> None:
    """The simulator's 2x step, 45 s in: 9 replicas just ready after a backlog grew on 5. The window's P95 is the
    backlog's; doubling (the old rule) overshot to 21. The mean's growth gives the arrivals."""
    evidence = Evidence(0.068, 14.0, climbed=True)
    snapshot = Snapshot(
        NOW, 9, 9, 2.6, 65.0, last_scale_time=NOW - 30, mean_seconds=1.104, recent_rps=74.5,
        recent_mean_seconds=recent_mean, evidence=evidence,
    )
    decision = decide(_default(), snapshot)
    assert decision.replicas == replicas and words in decision.message, decision.message


@pytest.mark.parametrize(
    ("recent_mean", "replicas", "reason"), [(0.069, 9, Reason.SETTLING), (None, 11, Reason.AT_RISK)]
)
def test_backlog_tail_in_the_window_is_not_queueing(recent_mean: float | None, replicas: int, reason: Reason) -> None:
    """The same step 75 s after the last change: the backlog has drained, but the window's P95 (202 ms, mean 88 ms)
    still holds its tail; the last 30 s (69 ms) show it. Read as queueing it added 2 replicas, removed 5 min later."""
    snapshot = Snapshot(
        NOW, 9, 9, 0.202, 81.0, last_scale_time=NOW - 75, mean_seconds=0.088, recent_rps=81.0,
        recent_mean_seconds=recent_mean, evidence=Evidence(0.068, 14.0, climbed=True),
    )
    decision = decide(_default(), snapshot)
    assert (decision.replicas, decision.reason) == (replicas, reason), decision.message
    assert reason is not Reason.SETTLING or "the latency is falling" in decision.message
