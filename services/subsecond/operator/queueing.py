"""A queueing estimate of a service's latency percentile at other replica counts.

Each replica is ``k`` servers (its concurrency), the replicas share one queue (the load balancer
spreads requests), arrivals are Poisson and service times exponential: an M/M/c queue with
``c = replicas * k``. Its response time T = W + S has a closed-form tail,

    P(T > t) = (1 - C) e^(-mu t) + C (theta e^(-mu t) - mu e^(-theta t)) / (theta - mu),

where C is Erlang's C (the chance of waiting), mu = 1/s the service rate of one server and
theta = c mu - lambda the rate at which the queue drains. The one unknown, the mean service time s,
is fitted so that the model reproduces the percentile observed now at the rate and ready replicas
observed now; the fitted model then predicts the percentile at other replica counts.

Pure functions over floats: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_ITERATIONS = 60


@dataclass(frozen=True)
class ServiceModel:
    """A fitted service: mean service time of one request and how many one replica serves at once."""

    mean_service_seconds: float
    servers_per_replica: int = 1

    def capacity_rps(self, replicas: int) -> float:
        """Request rate at which ``replicas`` would be fully busy (utilisation 1)."""
        return replicas * self.servers_per_replica / self.mean_service_seconds


def erlang_c(servers: int, offered: float) -> float:
    """Probability that an arrival waits in an M/M/c queue with ``offered`` Erlangs (must be < servers)."""
    if offered <= 0.0:
        return 0.0
    blocking = 1.0  # Erlang B by its stable recursion
    for count in range(1, servers + 1):
        blocking = offered * blocking / (count + offered * blocking)
    utilisation = offered / servers
    return blocking / (1.0 - utilisation * (1.0 - blocking))


def _tail(t: float, wait_chance: float, mu: float, theta: float) -> float:
    service_only = math.exp(-mu * t)
    if abs(theta - mu) < 1e-9 * mu:
        both = (1.0 + mu * t) * service_only
    else:
        both = (theta * service_only - mu * math.exp(-theta * t)) / (theta - mu)
    return (1.0 - wait_chance) * service_only + wait_chance * both


def response_quantile(percentile: float, arrival_rps: float, replicas: int, model: ServiceModel) -> float:
    """The ``percentile`` of response time; ``inf`` when the replicas cannot keep up (or there are none)."""
    servers = replicas * model.servers_per_replica
    mu = 1.0 / model.mean_service_seconds
    offered = max(arrival_rps, 0.0) * model.mean_service_seconds
    if servers <= 0 or offered >= servers:
        return math.inf
    wait_chance = erlang_c(servers, offered)
    theta = servers * mu - max(arrival_rps, 0.0)
    goal = 1.0 - percentile
    high = model.mean_service_seconds
    while _tail(high, wait_chance, mu, theta) > goal:
        high *= 2.0
    low = 0.0
    for _ in range(_ITERATIONS):
        middle = (low + high) / 2.0
        if _tail(middle, wait_chance, mu, theta) > goal:
            low = middle
        else:
            high = middle
    return high


def fit(
    percentile: float, observed_seconds: float, arrival_rps: float, replicas: int, servers_per_replica: int = 1
) -> ServiceModel:
    """The service model that reproduces ``observed_seconds`` at this rate and replica count.

    The percentile of T is at least that of S alone, s * -ln(1 - p), and grows without bound as the
    utilisation nears 1, so the mean service time lies in (0, min(observed / -ln(1 - p), c / lambda)):
    bisect on it.
    """
    if observed_seconds <= 0.0 or replicas <= 0:
        raise ValueError("fit needs a positive observed latency and at least one replica")
    servers = replicas * servers_per_replica
    high = observed_seconds / -math.log(1.0 - percentile)
    if arrival_rps > 0.0:
        high = min(high, servers / arrival_rps * (1.0 - 1e-9))
    low = 0.0
    for _ in range(_ITERATIONS):
        middle = (low + high) / 2.0
        predicted = response_quantile(percentile, arrival_rps, replicas, ServiceModel(middle, servers_per_replica))
        if predicted < observed_seconds:
            low = middle
        else:
            high = middle
    return ServiceModel(max(low, 1e-9), servers_per_replica)
