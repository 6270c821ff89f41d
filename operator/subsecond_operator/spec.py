"""A LatencySLO's spec as frozen dataclasses, parsed and checked once per tick.

The CRD's schema (charts/subsecond/crds/latencyslos.yaml) rejects most bad specs at admission; this
parser applies the same defaults (an API server without the CRD's defaulting may hand us a bare spec)
and checks what the schema cannot, raising :class:`SpecError`, which the handler turns into a
permanent error stated in status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_METRIC = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_WINDOW = re.compile(r"^[1-9][0-9]*(s|m|h)$")
# The recent window: the completion rate over it shows a rise before the objective's window does. Two
# scrapes at the usual 15 s interval; queried only when the objective's window is longer.
RECENT_WINDOW_SECONDS = 30
# capacity.maxUtilization's default: like the HPA's usual CPU target, room for a jump the replicas starting
# cannot absorb in time (see the operator's README, "Simulator").
DEFAULT_MAX_UTILIZATION = 0.65


class SpecError(ValueError):
    """The spec cannot be acted on; retrying will not help until it is edited."""


class Latency(StrEnum):
    END_TO_END = "EndToEnd"
    TIME_TO_FIRST_CHUNK = "TimeToFirstChunk"


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str  # Deployment | StatefulSet
    name: str

    @property
    def plural(self) -> str:
        return self.kind.lower() + "s"


@dataclass(frozen=True)
class Objective:
    percentile: float
    threshold_seconds: float
    latency: Latency
    metric: str
    selector: str
    window: str
    query: str
    rate_query: str
    headroom: float

    @property
    def window_seconds(self) -> float:
        """The rate() window in seconds."""
        return float(self.window[:-1]) * {"s": 1, "m": 60, "h": 3600}[self.window[-1]]

    @property
    def target_seconds(self) -> float:
        """The latency a planned replica count must be predicted to stay under."""
        return self.threshold_seconds * (1.0 - self.headroom)


@dataclass(frozen=True)
class Behavior:
    max_step: int
    stabilization_seconds: float
    cooldown_seconds: float


@dataclass(frozen=True)
class Capacity:
    requests_per_second_per_replica: float | None
    concurrency_per_replica: int
    # The busy share of the replicas' slots the plan may reach (rate x service time / slots): capacity in reserve.
    max_utilization: float


@dataclass(frozen=True)
class SLOSpec:
    target: TargetRef
    objective: Objective
    min_replicas: int
    max_replicas: int
    scale_up: Behavior
    scale_down: Behavior
    capacity: Capacity

    @classmethod
    def parse(cls, spec: Mapping[str, Any]) -> SLOSpec:
        try:
            return _parse(spec)
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, SpecError):
                raise
            raise SpecError(f"invalid spec: {error!r}") from error


def _section(parent: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = parent.get(key) or {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{key} must be an object")
    return value


def _number(section: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{key} must be a number, not {value!r}")
    return float(value)


def _integer(section: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{key} must be an integer, not {value!r}")
    return value


def _behavior(section: Mapping[str, Any], step: int, window: int, cooldown: int) -> Behavior:
    behavior = Behavior(
        max_step=_integer(section, "maxStepReplicas", step),
        stabilization_seconds=_integer(section, "stabilizationWindowSeconds", window),
        cooldown_seconds=_integer(section, "cooldownSeconds", cooldown),
    )
    if behavior.max_step < 1 or behavior.stabilization_seconds < 0 or behavior.cooldown_seconds < 0:
        raise SpecError("behavior: maxStepReplicas must be >= 1, windows and cooldowns >= 0")
    return behavior


def _parse(spec: Mapping[str, Any]) -> SLOSpec:
    ref = _section(spec, "scaleTargetRef")
    target = TargetRef(
        api_version=str(ref.get("apiVersion", "apps/v1")), kind=str(ref.get("kind", "")), name=str(ref.get("name", ""))
    )
    if target.api_version != "apps/v1" or target.kind not in {"Deployment", "StatefulSet"} or not target.name:
        raise SpecError("scaleTargetRef must name an apps/v1 Deployment or StatefulSet")

    section = _section(spec, "objective")
    objective = Objective(
        percentile=_number(section, "percentile", 0.95),
        threshold_seconds=_number(section, "thresholdMs") / 1000.0,
        latency=Latency(section.get("latency", Latency.END_TO_END)),
        metric=str(section.get("metric") or ""),
        selector=str(section.get("selector") or ""),
        window=str(section.get("window") or "1m"),
        query=str(section.get("query") or ""),
        rate_query=str(section.get("rateQuery") or ""),
        headroom=_number(section, "headroom", 0.2),
    )
    if not 0.0 < objective.percentile < 1.0:
        raise SpecError(f"objective.percentile must be in (0, 1), not {objective.percentile}")
    if objective.threshold_seconds <= 0.0:
        raise SpecError("objective.thresholdMs must be > 0")
    if not 0.0 <= objective.headroom <= 0.9:
        raise SpecError("objective.headroom must be in [0, 0.9]")
    if not objective.metric and not (objective.query and objective.rate_query):
        raise SpecError("objective needs metric, or both query and rateQuery")
    if objective.metric and not _METRIC.match(objective.metric):
        raise SpecError(f"objective.metric {objective.metric!r} is not a metric name")
    if not _WINDOW.match(objective.window):
        raise SpecError(f"objective.window {objective.window!r} is not a duration such as 30s, 1m or 1h")

    behavior = _section(spec, "behavior")
    capacity = _section(spec, "capacity")
    rps = capacity.get("requestsPerSecondPerReplica")
    parsed = SLOSpec(
        target=target,
        objective=objective,
        min_replicas=_integer(spec, "minReplicas", 1),
        max_replicas=_integer(spec, "maxReplicas"),
        scale_up=_behavior(_section(behavior, "scaleUp"), step=4, window=0, cooldown=30),
        scale_down=_behavior(_section(behavior, "scaleDown"), step=100, window=300, cooldown=15),
        capacity=Capacity(
            requests_per_second_per_replica=None if rps is None else _number(capacity, "requestsPerSecondPerReplica"),
            concurrency_per_replica=_integer(capacity, "concurrencyPerReplica", 1),
            max_utilization=_number(capacity, "maxUtilization", DEFAULT_MAX_UTILIZATION),
        ),
    )
    if parsed.min_replicas < 0 or parsed.max_replicas < max(1, parsed.min_replicas):
        raise SpecError(
            f"need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1"
            f" (minReplicas={parsed.min_replicas}, maxReplicas={parsed.max_replicas})"
        )
    if rps is not None and float(rps) <= 0:
        raise SpecError("capacity.requestsPerSecondPerReplica must be > 0")
    if parsed.capacity.concurrency_per_replica < 1:
        raise SpecError("capacity.concurrencyPerReplica must be >= 1")
    if not 0.0 < parsed.capacity.max_utilization <= 1.0:
        raise SpecError("capacity.maxUtilization must be in (0, 1]")
    return parsed
