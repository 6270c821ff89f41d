"""A LatencySLO's status, built from a decision: pure functions from values to the dict kopf patches in."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any

from subsecond_operator.decision import Decision, Reason, Recommendation, Snapshot

INVALID_SPEC = "InvalidSpec"
PROMETHEUS_UNAVAILABLE = "PrometheusUnavailable"


def iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp()


def history(status: Mapping[str, Any]) -> tuple[Recommendation, ...]:
    """The recommendations an earlier tick kept, oldest first."""
    kept = []
    for item in status.get("recommendations") or ():
        time = parse_iso(item.get("time"))
        if time is not None:
            kept.append(Recommendation(time, int(item["replicas"]), bool(item.get("backlog", False))))
    return tuple(sorted(kept, key=lambda r: r.time))


def _condition(
    previous: Mapping[str, Any] | None, kind: str, state: bool, reason: str, message: str, now: float
) -> dict[str, Any]:
    value = "True" if state else "False"
    unchanged = previous is not None and previous.get("status") == value
    since = previous.get("lastTransitionTime") if previous is not None and unchanged else iso(now)
    return {"type": kind, "status": value, "reason": reason, "message": message, "lastTransitionTime": since}


Condition = tuple[bool, str, str]  # status, reason, message


def conditions(
    previous: Mapping[str, Any], now: float, *, ready: Condition, degraded: Condition, at_max: Condition
) -> list[dict[str, Any]]:
    """Ready, Degraded and AtMaxReplicas, keeping each one's lastTransitionTime while its status holds."""
    before = {c.get("type"): c for c in previous.get("conditions") or ()}
    return [
        _condition(before.get(kind), kind, *value, now)
        for kind, value in (("Ready", ready), ("Degraded", degraded), ("AtMaxReplicas", at_max))
    ]


def condition_status(status: Mapping[str, Any], kind: str) -> bool:
    return any(c.get("type") == kind and c.get("status") == "True" for c in status.get("conditions") or ())


def decided(
    previous: Mapping[str, Any],
    snapshot: Snapshot,
    decision: Decision,
    *,
    generation: int,
    prometheus_error: str | None,
    spec_concurrency: int,
    why_missing: str | None = None,
) -> dict[str, Any]:
    """The status after a decision (``decision.replicas`` is already patched when it differs); ``why_missing``
    says why metrics are missing, when the reading knows (no series matched); ``spec_concurrency``: the spec's
    concurrencyPerReplica, shown beside the fitted one."""
    now = snapshot.now
    scaled = decision.replicas != snapshot.current_replicas
    message = decision.message
    if prometheus_error is not None:
        degraded = (True, PROMETHEUS_UNAVAILABLE, prometheus_error)
    elif not decision.metrics_available:
        message = decision.message if why_missing is None else f"{decision.message}; {why_missing}"
        degraded = (True, Reason.METRICS_UNAVAILABLE.value, message)
    else:
        degraded = (False, "MetricsAvailable", "latency and request rate read from Prometheus")
    ready = (not degraded[0], decision.reason.value, message)
    at_max = (decision.at_max, Reason.AT_MAX.value if decision.at_max else "ObjectiveHeld", message)
    return {
        "capacity": decision.evidence.to_status(spec_concurrency, _in_flight_per_replica(snapshot)),
        "observedGeneration": generation,
        "observedLatencyMs": _ms(snapshot.observed_seconds),
        "predictedLatencyMs": _ms(decision.predicted_seconds),
        "requestsPerSecond": None if snapshot.arrival_rps is None else round(snapshot.arrival_rps, 3),
        "currentReplicas": snapshot.current_replicas,
        "readyReplicas": snapshot.ready_replicas,
        "desiredReplicas": decision.replicas,
        "reason": decision.reason.value,
        "message": message,
        "lastDecisionTime": iso(now),
        "lastScaleTime": iso(now) if scaled else previous.get("lastScaleTime"),
        "recommendations": [
            {"time": iso(r.time), "replicas": r.replicas, **({"backlog": True} if r.backlog else {})}
            for r in decision.recommendations
        ],
        "conditions": conditions(previous, now, ready=ready, degraded=degraded, at_max=at_max),
    }


def invalid(previous: Mapping[str, Any], message: str, now: float, generation: int) -> dict[str, Any]:
    state = (False, INVALID_SPEC, message)
    return {
        "observedGeneration": generation,
        "reason": INVALID_SPEC,
        "message": message,
        "lastDecisionTime": iso(now),
        "conditions": conditions(previous, now, ready=state, degraded=state, at_max=state),
    }


def _in_flight_per_replica(snapshot: Snapshot) -> float | None:
    """Little's law: the requests each ready replica holds on average (rate x mean latency / replicas)."""
    rate, mean = snapshot.arrival_rps, snapshot.mean_seconds
    if rate is None or mean is None or snapshot.ready_replicas <= 0:
        return None
    return rate * mean / snapshot.ready_replicas


def _ms(seconds: float | None) -> float | None:
    if seconds is None or seconds == float("inf"):
        return None
    return round(seconds * 1000.0, 1)
