"""The scaling decision: a pure function from a snapshot of the world to a replica count and a reason.

``decide(spec, snapshot)`` is level-based: it returns an absolute replica count (the current one
when it holds still) and never increments. The order of its checks is the order an SRE reads a
decision in: bounds, metrics, pods still starting, then the queueing plan, stabilisation windows,
step limits and cooldowns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from subsecond_operator.capacity import NO_EVIDENCE, Evidence
from subsecond_operator.queueing import fit, response_quantile
from subsecond_operator.spec import RECENT_WINDOW_SECONDS, SLOSpec


class Reason(StrEnum):
    BELOW_MIN = "BelowMinReplicas"  # raised to minReplicas, whatever the metrics say
    ABOVE_MAX = "AboveMaxReplicas"  # lowered to maxReplicas
    METRICS_UNAVAILABLE = "MetricsUnavailable"  # Prometheus unreadable, or no samples: hold
    REPLICAS_STARTING = "ReplicasStarting"  # replicas not all ready yet: hold
    BREACHED = "ObjectiveBreached"  # observed over the threshold: scaled up
    AT_RISK = "ObjectiveAtRisk"  # under the threshold but predicted over the target: scaled up
    OVER_PROVISIONED = "OverProvisioned"  # predicted to hold with fewer: scaled down
    IDLE = "Idle"  # no traffic: scaled down towards minReplicas
    AT_MAX = "AtMaxReplicas"  # at maxReplicas and the objective is not predicted to hold
    COOLING_DOWN = "CoolingDown"  # a change is wanted but the last one was too recent
    STABILIZING = "Stabilizing"  # a change is wanted but the window's recommendations disagree
    SETTLING = "Settling"  # at risk, but the latency window has not measured the last change yet: hold
    STEADY = "Steady"  # the current count is the one wanted


@dataclass(frozen=True)
class Recommendation:
    time: float  # seconds since the epoch
    replicas: int
    # Sized to drain a backlog (a saturated breach), not for the load: binds the scale-down window only until the
    # backlog has drained (see ``decide``).
    backlog: bool = False


@dataclass(frozen=True)
class Snapshot:
    now: float  # seconds since the epoch
    current_replicas: int  # the target's spec.replicas
    ready_replicas: int
    # None: Prometheus could not be read, or returned no sample (missing, stale or NaN).
    observed_seconds: float | None
    arrival_rps: float | None
    recommendations: tuple[Recommendation, ...] = ()  # earlier ticks', oldest first
    last_scale_time: float | None = None
    # The mean latency over the same window (the histogram's _sum / _count); None when unknown.
    mean_seconds: float | None = None
    # The completion rate over a shorter, recent window (spec.RECENT_WINDOW_SECONDS); None when unknown.
    recent_rps: float | None = None
    # The mean latency over that recent window; None when unknown. Under the window's mean: a backlog drains.
    recent_mean_seconds: float | None = None
    # What earlier ticks learnt of a replica's capacity (status.capacity).
    evidence: Evidence = NO_EVIDENCE


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: Reason
    message: str
    metrics_available: bool
    at_max: bool = False  # the objective is not predicted to hold even at maxReplicas
    recommended: int | None = None  # what the queueing plan alone asked for
    predicted_seconds: float | None = None  # predicted percentile at ``replicas``
    recommendations: tuple[Recommendation, ...] = ()  # to keep for the next tick
    evidence: Evidence = NO_EVIDENCE  # to keep for the next tick
    concurrency: int | None = None  # requests per replica at once the plan used (the spec's or the fitted)

    @property
    def changed(self) -> bool:
        return self.reason in _CHANGES


_CHANGES = {Reason.BELOW_MIN, Reason.ABOVE_MAX, Reason.BREACHED, Reason.AT_RISK, Reason.OVER_PROVISIONED, Reason.IDLE}


# Fitted utilisation above which a breach is read as saturation: the measured rate is then what the
# replicas complete, not what arrives, so the queueing plan would under-count; double instead.
SATURATED = 0.9


# A scale-down must be predicted to hold this share of the target, and of the capacity hint's rate per replica
# (hysteresis against the model's error and the rate's noise).
SCALE_DOWN_MARGIN = 0.8
# When no count holds the objective, counts predicted within this factor of the best one are as good.
DIMINISHING = 1.05
# The most a backlog's mean latency is read to grow (or shrink) per second: arrivals up to 2x the completions.
MAX_BACKLOG_SLOPE = 0.5
# A recent mean under this share of the window's is a falling latency: an at-risk plan waits for the window.
FALLING = 0.9
# The utilisation ceiling's tolerance, the HPA's: the ready count holds while the ceiling's count is within 10 %.
TOLERANCE = 0.1


@dataclass(frozen=True)
class Plan:
    replicas: int
    predicted_seconds: float | None
    at_max: bool
    saturated: bool = False
    fewer: int | None = None  # held: this many would hold the target, but not the scale-down margin
    backlog_rps: float | None = None  # a backlog: the arrival rate it shows (the completions are not)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return "inf" if math.isinf(seconds) else f"{seconds * 1000:.0f} ms"


def _ceiling(busy: float, ceiling: float, ready: int) -> int:
    """The count the utilisation ceiling asks for, with the HPA's tolerance: ``busy`` replicas' worth of work at
    ``ceiling`` is ``busy / ceiling`` replicas, and the ready count holds while within ``TOLERANCE`` of it (the
    rate's noise moves nothing)."""
    needed = busy / ceiling
    if needed / (1.0 + TOLERANCE) <= ready <= needed / (1.0 - TOLERANCE):
        return ready
    return math.ceil(needed - 1e-9)


def _drained(window: list[Recommendation], now: float, latency_window_seconds: float) -> bool:
    """A backlog's recommendations are in ``window``, the last of them a whole latency window ago, and other
    recommendations (made since) are there to take their place."""
    last = max((r.time for r in window if r.backlog), default=None)
    return last is not None and now - last >= latency_window_seconds and any(not r.backlog for r in window)


def plan(
    spec: SLOSpec,
    observed_seconds: float | None,
    arrival_rps: float,
    ready_replicas: int,
    margin: float = 1.0,
    *,
    mean_seconds: float | None = None,
    planning_rps: float | None = None,
    concurrency: int | None = None,
    floor_seconds: float | None = None,
    latency_slope: float | None = None,
) -> Plan:
    """The fewest replicas predicted to hold the objective with headroom (times ``margin``), and at least the
    counts the capacity hint (``requestsPerSecondPerReplica``, times ``margin``) and the utilisation ceiling
    (``maxUtilization``) ask for. ``margin`` under 1 is the scale-down check.

    The model is fitted to what the window observed (``observed_seconds``, ``mean_seconds`` when known, at
    ``arrival_rps`` on ``ready_replicas`` serving ``concurrency`` requests each, default the spec's) and predicts
    at ``planning_rps`` (default: ``arrival_rps``). ``floor_seconds``: the service time floor the metrics showed
    (capacity.Evidence), the service time while a backlog skews the fit. ``latency_slope``: how fast the mean
    latency grows (seconds per second, from the recent and the window's mean), which measures a backlog.
    """
    objective = spec.objective
    target = objective.target_seconds * margin
    rate = arrival_rps if planning_rps is None else max(planning_rps, 0.0)
    if rate <= 0.0:
        return Plan(spec.min_replicas, None, at_max=False)
    floor = max(spec.min_replicas, 1)
    if spec.capacity.requests_per_second_per_replica is not None:
        floor = max(floor, math.ceil(rate / (spec.capacity.requests_per_second_per_replica * margin) - 1e-9))
    if observed_seconds is None or ready_replicas <= 0:
        # Traffic but no latency to fit (e.g. woken from zero): the floor is all that is known.
        replicas = min(floor, spec.max_replicas)
        return Plan(replicas, None, at_max=floor > spec.max_replicas)
    servers = spec.capacity.concurrency_per_replica if concurrency is None else concurrency
    model = fit(objective.percentile, observed_seconds, arrival_rps, ready_replicas, servers, mean_seconds)
    breached = observed_seconds > objective.threshold_seconds
    saturated = breached and arrival_rps / model.capacity_rps(ready_replicas) >= SATURATED
    if saturated and latency_slope is None:
        # The replicas complete all they can and nothing measures by how much more arrives: double.
        wanted = max(floor, 2 * ready_replicas)
        return Plan(min(wanted, spec.max_replicas), None, at_max=wanted > spec.max_replicas, saturated=True)
    if saturated:
        # A backlog: its latency is not this count's queueing (the fit takes it for a slower service, the floor
        # does not), and the completions are not the arrivals. In a FIFO queue, a request completing now waited
        # for the backlog at its arrival, so the mean latency grows at 1 - completions / arrivals per second:
        # the arrivals are the completions / (1 - slope), more while it grows, fewer while it drains. A breach
        # never scales down.
        slope = min(max(latency_slope or 0.0, -MAX_BACKLOG_SLOPE), MAX_BACKLOG_SLOPE)
        arrivals = rate / (1.0 - slope)
        service = model.mean_service_seconds if floor_seconds is None else floor_seconds
        needed = math.ceil(arrivals * service / (servers * spec.capacity.max_utilization) - 1e-9)
        wanted = max(floor, needed, ready_replicas)
        return Plan(min(wanted, spec.max_replicas), None, wanted > spec.max_replicas, backlog_rps=arrivals)
    busy = rate * model.mean_service_seconds / servers  # replicas' worth of work at this rate
    floor = max(floor, _ceiling(busy, spec.capacity.max_utilization, ready_replicas))
    counts = range(min(floor, spec.max_replicas), spec.max_replicas + 1)
    predictions = {n: response_quantile(objective.percentile, rate, n, model) for n in counts}
    for replicas, predicted in predictions.items():
        if predicted <= target:
            return Plan(replicas, predicted, at_max=False)
    # Not even maxReplicas holds the objective. Where the latency is the service's own (not queueing),
    # more replicas do not help: take the fewest within 5 % of the best prediction.
    best = predictions[spec.max_replicas]
    replicas = min(n for n, predicted in predictions.items() if predicted <= best * DIMINISHING)
    return Plan(replicas, predictions[replicas], at_max=True)


def decide(spec: SLOSpec, snapshot: Snapshot) -> Decision:
    current = snapshot.current_replicas
    objective = spec.objective
    # A NaN percentile is no traffic when the rate is zero, and no server when there are no replicas;
    # anywhere else it is missing metrics.
    rate = snapshot.arrival_rps
    metrics = rate is not None and (snapshot.observed_seconds is not None or rate == 0.0 or current == 0)
    if current < spec.min_replicas:
        words = f"{current} replicas < minReplicas {spec.min_replicas}"
        return Decision(spec.min_replicas, Reason.BELOW_MIN, words, metrics, evidence=snapshot.evidence)
    if current > spec.max_replicas:
        words = f"{current} replicas > maxReplicas {spec.max_replicas}"
        return Decision(spec.max_replicas, Reason.ABOVE_MAX, words, metrics, evidence=snapshot.evidence)
    if not metrics or rate is None:
        return Decision(
            current,
            Reason.METRICS_UNAVAILABLE,
            f"holding {current} replicas: no current latency or request rate from Prometheus",
            metrics_available=False,
            evidence=snapshot.evidence,
        )
    since_scale = math.inf if snapshot.last_scale_time is None else snapshot.now - snapshot.last_scale_time
    evidence = snapshot.evidence
    if snapshot.ready_replicas == current and since_scale >= objective.window_seconds:
        # The window's rate and mean are these replicas' own only when their count held over all of it.
        evidence = evidence.learn(
            rate_rps=rate,
            mean_seconds=snapshot.mean_seconds,
            ready=current,
            window_seconds=objective.window_seconds,
            recent_rps=snapshot.recent_rps,
            recent_mean_seconds=snapshot.recent_mean_seconds,
        )
    concurrency = evidence.concurrency(spec.capacity.concurrency_per_replica)
    if snapshot.ready_replicas < current:
        return Decision(
            current,
            Reason.REPLICAS_STARTING,
            f"holding {current} replicas: {snapshot.ready_replicas} ready, waiting for the rest",
            metrics_available=True,
            recommendations=snapshot.recommendations,
            evidence=evidence,
            concurrency=concurrency,
        )

    observed = snapshot.observed_seconds
    # Plan for the higher of the window's rate and the recent one: a rise shows in the recent rate first.
    planning = rate if snapshot.recent_rps is None else max(rate, snapshot.recent_rps)
    ready, mean = snapshot.ready_replicas, snapshot.mean_seconds
    # The mean's growth per second: the recent window's mean is centred half the difference of the windows later.
    recent_mean, lag = snapshot.recent_mean_seconds, (objective.window_seconds - RECENT_WINDOW_SECONDS) / 2.0
    slope = None if mean is None or recent_mean is None or lag <= 0.0 else (recent_mean - mean) / lag
    inputs: dict[str, Any] = {
        "mean_seconds": mean,
        "planning_rps": planning,
        "concurrency": concurrency,
        "floor_seconds": evidence.floor_seconds,
        "latency_slope": slope,
    }
    wanted = plan(spec, observed, rate, ready, **inputs)
    if wanted.replicas < current and not wanted.at_max:
        # Fewer replicas must hold a stricter target: the fit's error must not turn into a flap. The stricter
        # plan only says how far down: where no count under the current one holds it (it may be under the
        # service's own latency, which no count reaches), hold; it is never a reason to scale up.
        stricter = plan(spec, observed, rate, ready, SCALE_DOWN_MARGIN, **inputs)
        wanted = (
            stricter
            if stricter.replicas < current and not stricter.at_max
            else Plan(current, None, False, fewer=wanted.replicas)
        )
    # The recent mean well under the window's: the window still holds a backlog's tail, not this count's queueing.
    falling = mean is not None and recent_mean is not None and recent_mean < FALLING * mean
    unmeasured = since_scale < objective.window_seconds
    settling = (
        wanted.replicas > current
        and observed is not None
        and observed <= objective.threshold_seconds
        and (unmeasured or falling)
    )
    # A window that still mostly measures the count before the last change (or a backlog since drained) is fitted
    # as if the ready replicas had queued it: an at-risk plan (not a breach) waits until the window has passed.
    recommendation = current if settling else wanted.replicas
    backlog = wanted.saturated or wanted.backlog_rps is not None
    keep = max(spec.scale_up.stabilization_seconds, spec.scale_down.stabilization_seconds)
    # Keep the window's recommendations and the last one before it, which shows the window is covered.
    older = [r for r in snapshot.recommendations if snapshot.now - r.time > keep][-1:]
    recent = [r for r in snapshot.recommendations if snapshot.now - r.time <= keep]
    history = (*older, *recent, Recommendation(snapshot.now, recommendation, backlog))
    # Like the HPA: go up only as far as every recommendation in the up-window agrees, and down only
    # as far as every one in the (longer) down-window agrees. A brief dip never removes a replica.
    up_to = min(r.replicas for r in history if snapshot.now - r.time <= spec.scale_up.stabilization_seconds)
    down_window = [r for r in history if snapshot.now - r.time <= spec.scale_down.stabilization_seconds]
    if _drained(down_window, snapshot.now, objective.window_seconds):
        # A backlog's recommendations count what it took to drain it (completions that include the drain, the
        # ready replicas a breach holds), not the load: once a whole latency window has passed without one, the
        # window's other recommendations say what the load needs.
        down_window = [r for r in down_window if not r.backlog]
    down_to = max(r.replicas for r in down_window)
    if history[0].time > snapshot.now - spec.scale_down.stabilization_seconds:
        down_to = max(down_to, current)  # the window is not covered yet (a new object): no scale-down
    desired = current
    if desired < up_to:
        desired = min(up_to, current + spec.scale_up.max_step)
    elif desired > down_to:
        desired = max(down_to, current - spec.scale_down.max_step)

    cooldown = spec.scale_up.cooldown_seconds if desired > current else spec.scale_down.cooldown_seconds
    numbers = (
        f"P{objective.percentile * 100:g} {_ms(observed)} (objective {_ms(objective.threshold_seconds)},"
        f" target {_ms(objective.target_seconds)}) at {rate:.3g} req/s"
        + (f" (last {RECENT_WINDOW_SECONDS} s: {planning:.3g})" if planning > rate else "")
        + f" on {snapshot.ready_replicas} ready"
        + ("" if mean is None else f", mean {_ms(mean)}")
        + f", {concurrency} at once per replica"
    )
    predicted_here = wanted.predicted_seconds if desired == wanted.replicas else None
    if desired != current and since_scale < cooldown:
        reason, replicas = Reason.COOLING_DOWN, current
        words = f"holding {current} replicas for {cooldown - since_scale:.0f} s of cooldown (plan {wanted.replicas})"
    elif desired > current:
        replicas = desired
        reason = Reason.BREACHED if observed is not None and observed > objective.threshold_seconds else Reason.AT_RISK
        predicted = (
            "saturated"
            if wanted.saturated
            else f"a backlog, arrivals about {wanted.backlog_rps:.3g} req/s"
            if wanted.backlog_rps is not None
            else _ms(wanted.predicted_seconds)
        )
        words = f"scaling up {current} -> {desired} (plan {wanted.replicas}: {predicted})"
    elif desired < current:
        replicas = desired
        reason = Reason.IDLE if rate == 0.0 else Reason.OVER_PROVISIONED
        words = f"scaling down {current} -> {desired} (plan {wanted.replicas}: {_ms(wanted.predicted_seconds)})"
    elif wanted.at_max:
        reason, replicas = Reason.AT_MAX, current
        words = (
            f"holding {current} replicas: the objective is not predicted to hold even at maxReplicas"
            f" {spec.max_replicas} (predicted {_ms(wanted.predicted_seconds)} at {wanted.replicas})"
        )
    elif settling:
        reason, replicas = Reason.SETTLING, current
        words = (
            f"holding {current} replicas: plan wants {wanted.replicas}, but the last change was {since_scale:.0f} s"
            f" ago and the {objective.window} window has not measured it yet"
            if unmeasured
            else f"holding {current} replicas: plan wants {wanted.replicas}, but the latency is falling (mean"
            f" {_ms(recent_mean)} over the last {RECENT_WINDOW_SECONDS} s): the window holds a backlog's tail"
        )
    elif wanted.replicas != current:
        reason, replicas = Reason.STABILIZING, current
        words = f"holding {current} replicas: plan wants {wanted.replicas}, the stabilisation window disagrees"
    elif wanted.fewer is not None:
        reason, replicas = Reason.STEADY, current
        words = (
            f"holding {current} replicas: {wanted.fewer} would be predicted to hold the target, but not the"
            f" scale-down margin ({SCALE_DOWN_MARGIN:.0%} of it)"
        )
    else:
        reason, replicas = Reason.STEADY, current
        words = f"holding {current} replicas (predicted {_ms(wanted.predicted_seconds)})"
    return Decision(
        replicas,
        reason,
        f"{words}; {numbers}",
        metrics_available=True,
        at_max=wanted.at_max,
        recommended=wanted.replicas,
        predicted_seconds=predicted_here,
        recommendations=history,
        evidence=evidence,
        concurrency=concurrency,
    )
