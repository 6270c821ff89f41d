"""The decision function, case by case: each row is a snapshot and the decision it must produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from slo_specs import base_spec

from subsecond_operator.decision import Reason, Recommendation, Snapshot, decide, plan
from subsecond_operator.queueing import fit, response_quantile
from subsecond_operator.spec import SLOSpec
from subsecond_operator.status import decided, history

NOW = 1_000_000.0
OBJECTIVE = base_spec()["objective"]


def _spec(**overrides: Any) -> SLOSpec:
    """The table tests the latency plan: no utilisation ceiling, and the one-by-one scale-down it was written with
    (test_capacity.py has the defaults' ceiling and backlog)."""
    behavior = overrides.pop("behavior", {})
    down = {"maxStepReplicas": 1, "cooldownSeconds": 120, **behavior.get("scaleDown", {})}
    capacity = {"maxUtilization": 1.0, **overrides.pop("capacity", {})}
    return SLOSpec.parse(base_spec(behavior={**behavior, "scaleDown": down}, capacity=capacity, **overrides))


def _history(replicas: int, seconds: float = 330.0, every: float = 15.0) -> tuple[Recommendation, ...]:
    """The same recommendation every ``every`` seconds for the last ``seconds``."""
    count = int(seconds // every)
    return tuple(Recommendation(NOW - every * (count - i), replicas) for i in range(count))


def _steady_observed(replicas: int, rate: float) -> float:
    """A latency at which the plan for ``replicas`` at ``rate`` is exactly ``replicas``: halfway between."""
    spec = _spec()
    low, high = 0.0, spec.objective.target_seconds
    for _ in range(60):
        middle = (low + high) / 2
        if plan(spec, middle, rate, replicas).replicas < replicas:
            low = middle
        else:
            high = middle
    return min(high * 1.02, spec.objective.target_seconds * 0.999)


@dataclass(frozen=True)
class Case:
    snapshot: Snapshot
    replicas: int
    reason: Reason
    spec: dict[str, Any] = field(default_factory=dict)
    at_max: bool = False


def _snap(current: int, observed: float | None, rate: float | None, **kwargs: Any) -> Snapshot:
    kwargs.setdefault("ready_replicas", current)
    return Snapshot(now=NOW, current_replicas=current, observed_seconds=observed, arrival_rps=rate, **kwargs)


CASES = {
    "below min, whatever the metrics": Case(_snap(0, None, None), 1, Reason.BELOW_MIN),
    "above max": Case(_snap(12, 0.1, 5.0), 10, Reason.ABOVE_MAX),
    "no latency with traffic: hold": Case(_snap(3, None, 5.0), 3, Reason.METRICS_UNAVAILABLE),
    "no rate: hold": Case(_snap(3, 0.9, None), 3, Reason.METRICS_UNAVAILABLE),
    "breach while replicas start: hold": Case(_snap(3, 0.9, 30.0, ready_replicas=2), 3, Reason.REPLICAS_STARTING),
    "breach: scale up": Case(_snap(2, 0.45, 20.0), 4, Reason.BREACHED),
    "saturated: double": Case(_snap(2, 5.0, 20.0), 4, Reason.BREACHED),
    "saturated: double, up to one step of 4": Case(_snap(5, 5.0, 50.0), 9, Reason.BREACHED),
    "saturated, step 1": Case(
        _snap(2, 5.0, 20.0), 3, Reason.BREACHED, spec={"behavior": {"scaleUp": {"maxStepReplicas": 1}}}
    ),
    "under the threshold, over the target: scale up": Case(_snap(2, 0.27, 20.0), 3, Reason.AT_RISK),
    "breach within the up cooldown: hold": Case(_snap(2, 0.45, 20.0, last_scale_time=NOW - 10), 2, Reason.COOLING_DOWN),
    "breach after the up cooldown": Case(_snap(2, 0.45, 20.0, last_scale_time=NOW - 31), 4, Reason.BREACHED),
    "breach at max": Case(_snap(10, 0.9, 200.0), 10, Reason.AT_MAX, at_max=True),
    "saturated near max: go to max": Case(_snap(8, 5.0, 200.0), 10, Reason.BREACHED, at_max=True),
    "slow even when idle: more replicas would not help": Case(_snap(2, 0.5, 0.5), 2, Reason.AT_MAX, at_max=True),
    "fast and quiet, new object: hold": Case(_snap(4, 0.1, 5.0), 4, Reason.STABILIZING),
    "fast and quiet for the window: one down": Case(
        _snap(4, 0.1, 5.0, recommendations=_history(1)), 3, Reason.OVER_PROVISIONED
    ),
    "fast now, busy 2 min ago: hold": Case(
        _snap(4, 0.1, 5.0, recommendations=(*_history(1), Recommendation(NOW - 120, 4))), 4, Reason.STABILIZING
    ),
    # A backlog's recommendations (sized to drain it) bind the scale-down window only until a whole latency window
    # (1m) has passed without one; then the load's own recommendations decide.
    "backlog drained a window ago: down to the load's": Case(
        _snap(4, 0.1, 5.0, recommendations=(*_history(1), Recommendation(NOW - 60, 4, backlog=True))),
        3,
        Reason.OVER_PROVISIONED,
    ),
    "backlog 45 s ago: hold": Case(
        _snap(4, 0.1, 5.0, recommendations=(*_history(1), Recommendation(NOW - 45, 4, backlog=True))),
        4,
        Reason.STABILIZING,
    ),
    "backlog drained, the load's own 4 still in the window: hold": Case(
        _snap(
            4,
            0.1,
            5.0,
            recommendations=(*_history(1), Recommendation(NOW - 200, 4, backlog=True), Recommendation(NOW - 120, 4)),
        ),
        4,
        Reason.STABILIZING,
    ),
    "scale down within its cooldown: hold": Case(
        _snap(4, 0.1, 5.0, recommendations=_history(1), last_scale_time=NOW - 60), 4, Reason.COOLING_DOWN
    ),
    "scale down, step 2": Case(
        _snap(4, 0.1, 5.0, recommendations=_history(1)),
        2,
        Reason.OVER_PROVISIONED,
        spec={"behavior": {"scaleDown": {"maxStepReplicas": 2}}},
    ),
    "no traffic: down towards min, never zero": Case(_snap(2, None, 0.0, recommendations=_history(1)), 1, Reason.IDLE),
    "no traffic at min 1: stay": Case(_snap(1, None, 0.0, recommendations=_history(1)), 1, Reason.STEADY),
    "no traffic, zero asked: to zero": Case(
        _snap(1, None, 0.0, recommendations=_history(0)), 0, Reason.IDLE, spec={"minReplicas": 0}
    ),
    "traffic at zero replicas: wake up": Case(_snap(0, None, 3.0), 1, Reason.AT_RISK, spec={"minReplicas": 0}),
    "capacity hint raises the plan": Case(
        _snap(2, 0.05, 100.0), 5, Reason.AT_RISK, spec={"capacity": {"requestsPerSecondPerReplica": 20}}
    ),
    "steady": Case(_snap(3, _steady_observed(3, 20.0), 20.0, recommendations=_history(3)), 3, Reason.STEADY),
    # The mean (_sum / _count) fits the service's spread: a P95 of 149 ms at a mean of 75 ms is a tighter,
    # slower service than an exponential with that P95, so six replicas at 60 req/s are not too many.
    "exponential reading of a P95: one down": Case(
        _snap(6, 0.1491, 60.0, recommendations=_history(5)), 5, Reason.OVER_PROVISIONED
    ),
    "the same P95 with its mean: hold": Case(
        _snap(6, 0.1491, 60.0, mean_seconds=0.0747, recommendations=_history(5)), 6, Reason.STEADY
    ),
    # The recent (30 s) rate shows a rise before the window's rate does; a fall does not lower the plan.
    "recent rate above the window's: plan for it": Case(
        _snap(4, 0.167, 40.0, mean_seconds=0.081, recent_rps=55.0, recommendations=_history(4)), 5, Reason.AT_RISK
    ),
    "recent rate below the window's: plan for the window's": Case(
        _snap(4, 0.167, 40.0, mean_seconds=0.081, recent_rps=30.0, recommendations=_history(4)), 4, Reason.STEADY
    ),
    # Within a window of the last change the latency mostly measures the count before it.
    "at risk 45 s after a change (1m window): settling": Case(
        _snap(2, 0.27, 20.0, last_scale_time=NOW - 45), 2, Reason.SETTLING
    ),
    "at risk a window after the change: scale up": Case(
        _snap(2, 0.27, 20.0, last_scale_time=NOW - 61), 3, Reason.AT_RISK
    ),
    "breach 45 s after a change: a breach does not settle": Case(
        _snap(2, 0.45, 20.0, last_scale_time=NOW - 45), 4, Reason.BREACHED
    ),
    "at risk 45 s after a change, 30s window: scale up": Case(
        _snap(2, 0.27, 20.0, last_scale_time=NOW - 45),
        3,
        Reason.AT_RISK,
        spec={"objective": {**OBJECTIVE, "window": "30s"}},
    ),
    # A scale-down must hold SCALE_DOWN_MARGIN of the target; where no count does (headroom 0.4: 144 ms, about
    # the service's own P95), it holds: neither a scale-up (this one went to 6) nor "at max" (this one said so).
    "fewer hold the target, none the margin: hold": Case(
        _snap(5, 0.145, 40.0, mean_seconds=0.070, recommendations=_history(4)),
        5,
        Reason.STEADY,
        spec={"objective": {**OBJECTIVE, "headroom": 0.4}},
    ),
    "fewer hold the target, none the margin: not at max": Case(
        _snap(6, 0.148, 41.4, mean_seconds=0.071, recommendations=_history(5)),
        6,
        Reason.STEADY,
        spec={"objective": {**OBJECTIVE, "headroom": 0.4}},
    ),
    # ... and the capacity hint's rate per replica with the same margin: 40 req/s wants 6 at 7 req/s, 8 at 5.6.
    "capacity hint: 6 would do, not with the margin: hold": Case(
        _snap(7, 0.14, 40.0, mean_seconds=0.07, recommendations=_history(6)),
        7,
        Reason.STEADY,
        spec={"capacity": {"requestsPerSecondPerReplica": 7}},
    ),
    "capacity hint: 6 with the margin: one down": Case(
        _snap(7, 0.14, 30.0, mean_seconds=0.07, recommendations=_history(5)),
        6,
        Reason.OVER_PROVISIONED,
        spec={"capacity": {"requestsPerSecondPerReplica": 7}},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decision(case: Case) -> None:
    spec = _spec(**case.spec)
    decision = decide(spec, case.snapshot)
    assert (decision.replicas, decision.reason) == (case.replicas, case.reason), decision.message
    assert decision.at_max is case.at_max
    if case.reason is Reason.METRICS_UNAVAILABLE:
        assert not decision.metrics_available
    assert decision.changed is (decision.replicas != case.snapshot.current_replicas)


def test_a_scale_up_picks_the_fewest_replicas_predicted_to_hold() -> None:
    spec = _spec()
    decision = decide(spec, _snap(2, 0.45, 20.0))
    model = fit(0.95, 0.45, 20.0, 2)
    assert decision.predicted_seconds is not None
    assert decision.predicted_seconds <= spec.objective.target_seconds
    assert response_quantile(0.95, 20.0, decision.replicas - 1, model) > spec.objective.target_seconds
    assert "P95 450 ms (objective 300 ms, target 240 ms) at 20 req/s on 2 ready" in decision.message


def test_a_hold_for_the_margin_says_so() -> None:
    spec = _spec(objective={**OBJECTIVE, "headroom": 0.4})
    decision = decide(spec, _snap(5, 0.145, 40.0, mean_seconds=0.070, recommendations=_history(4)))
    assert decision.recommended == 5 and decision.recommendations[-1] == Recommendation(NOW, 5)
    assert "4 would be predicted to hold the target, but not the scale-down margin (80% of it)" in decision.message


def test_a_backlog_recommendation_is_marked_and_kept_in_status() -> None:
    """A saturated breach's recommendation says it drains a backlog, and the status keeps that for the next tick."""
    spec = _spec()
    decision = decide(spec, _snap(2, 5.0, 20.0, mean_seconds=2.0, recent_mean_seconds=2.5))
    assert decision.recommendations[-1] == Recommendation(NOW, decision.recommended or 0, backlog=True)
    steady = decide(spec, _snap(3, _steady_observed(3, 20.0), 20.0))
    assert not steady.recommendations[-1].backlog
    for made in (decision, steady):
        kept = decided({}, _snap(2, 0.1, 20.0), made, generation=1, prometheus_error=None, spec_concurrency=1)
        assert history(kept) == made.recommendations


def test_history_keeps_the_window_and_the_one_before_it() -> None:
    spec = _spec()
    history = (Recommendation(NOW - 900, 9), Recommendation(NOW - 400, 7), *_history(2, seconds=300))
    decision = decide(spec, _snap(4, 0.1, 5.0, recommendations=history))
    assert decision.recommendations[0] == Recommendation(NOW - 400, 7)
    assert decision.recommendations[-1] == Recommendation(NOW, 1)
    assert all(NOW - r.time <= 300 for r in decision.recommendations[1:])


def test_noisy_steady_load_never_flaps() -> None:
    """An hour of steady load with ±15 % noise on the observed latency: at most one move, never back."""
    spec = _spec()
    replicas, history, last_scale, moves = 3, (), None, []
    base = _steady_observed(3, 20.0)
    for tick in range(240):
        now = NOW + tick * 15
        noise = 1.0 + 0.15 * ((tick * 7919) % 13 - 6) / 6
        snapshot = Snapshot(now, replicas, replicas, base * noise, 20.0, history, last_scale)
        decision = decide(spec, snapshot)
        history = decision.recommendations
        if decision.replicas != replicas:
            moves.append(decision.replicas - replicas)
            replicas, last_scale = decision.replicas, now
    assert all(move > 0 for move in moves) and len(moves) <= 1, moves
