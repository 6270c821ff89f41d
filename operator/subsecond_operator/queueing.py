"""A queueing estimate of a service's latency percentile at other replica counts.

Each replica is ``k`` servers (its concurrency) and the replicas share one queue (the load balancer
spreads requests); arrivals are Poisson. A request's service time is a fixed part ``d`` plus an
exponential part of mean ``s - d`` (``s`` the mean service time): ``d = 0`` is the exponential service
of M/M/c, a larger ``d`` a tighter spread (real services are rarely as spread as an exponential). The
wait is M/M/c's, c = replicas * k: with Erlang's C the chance to wait, then exponential, draining at
theta = c / s - lambda, shortened by Allen-Cunneen's (1 + cv^2) / 2 for the service's spread cv. The
response time T = d + E + W (E the exponential part) has a closed-form tail beyond d,

    P(T > d + t) = (1 - C) e^(-mu t) + C (theta e^(-mu t) - mu e^(-theta t)) / (theta - mu),  mu = 1 / (s - d),

so the percentile at any c is a bisection away, and the mean is s + C / theta.

:func:`fit` takes the model that reproduces what is observed now, at the rate and ready replicas
observed now: the percentile, and when Prometheus has it (the histogram's ``_sum / _count``) the mean.
With the mean, ``s`` and ``d`` are both fitted; without it, ``d = 0`` and ``s`` is fitted to the
percentile alone, which under-estimates ``s`` (over-estimates capacity) for a service whose tail is
tighter than an exponential's. The fitted model then predicts the percentile at other replica counts.

Pure functions over floats: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

_ITERATIONS = 60
_FIT_ITERATIONS = 40
# The largest share of the mean service time the fit may read as fixed (the model's spread stays > 0).
MAX_FIXED_SHARE = 0.9


@dataclass(frozen=True)
class ServiceModel:
    """A fitted service: mean service time of one request, how many one replica serves at once, and the
    part of every request's service time that does not vary."""

    mean_service_seconds: float
    servers_per_replica: int = 1
    fixed_seconds: float = 0.0

    def capacity_rps(self, replicas: int) -> float:
        """Request rate at which ``replicas`` would be fully busy (utilisation 1)."""
        return replicas * self.servers_per_replica / self.mean_service_seconds

    @property
    def variation(self) -> float:
        """Coefficient of variation of the service time: 1 for an exponential, 0 for a constant."""
        return (self.mean_service_seconds - self.fixed_seconds) / self.mean_service_seconds


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


def _queue(arrival_rps: float, replicas: int, model: ServiceModel) -> tuple[float, float] | None:
    """Erlang's C and the wait's drain rate; None when the replicas cannot keep up (or there are none)."""
    servers = replicas * model.servers_per_replica
    arrivals = max(arrival_rps, 0.0)
    offered = arrivals * model.mean_service_seconds
    if servers <= 0 or offered >= servers:
        return None
    spread = (1.0 + model.variation**2) / 2.0
    return erlang_c(servers, offered), (servers / model.mean_service_seconds - arrivals) / spread


def mean_response(arrival_rps: float, replicas: int, model: ServiceModel) -> float:
    """The mean response time; ``inf`` when the replicas cannot keep up (or there are none)."""
    queue = _queue(arrival_rps, replicas, model)
    if queue is None:
        return math.inf
    wait_chance, theta = queue
    return model.mean_service_seconds + wait_chance / theta


def response_quantile(percentile: float, arrival_rps: float, replicas: int, model: ServiceModel) -> float:
    """The ``percentile`` of response time; ``inf`` when the replicas cannot keep up (or there are none)."""
    queue = _queue(arrival_rps, replicas, model)
    if queue is None:
        return math.inf
    wait_chance, theta = queue
    mu = 1.0 / (model.mean_service_seconds - model.fixed_seconds)
    goal = 1.0 - percentile
    high = 1.0 / mu
    while _tail(high, wait_chance, mu, theta) > goal:
        high *= 2.0
    low = 0.0
    for _ in range(_ITERATIONS):
        middle = (low + high) / 2.0
        if _tail(middle, wait_chance, mu, theta) > goal:
            low = middle
        else:
            high = middle
    return model.fixed_seconds + high


def _bisect_service(
    observed: float,
    measure: Callable[[ServiceModel], float],
    arrival_rps: float,
    replicas: int,
    servers: int,
    share: float,
) -> ServiceModel:
    """The model with this fixed share of the service time whose ``measure`` (the mean, or a percentile)
    is ``observed``.

    Both grow with the mean service time, without bound as the utilisation nears 1, and neither is less
    than it: bisect on it below ``min(observed, c / lambda)``.
    """
    high = observed
    if arrival_rps > 0.0:
        high = min(high, replicas * servers / arrival_rps * (1.0 - 1e-9))
    low = 0.0
    for _ in range(_ITERATIONS):
        middle = (low + high) / 2.0
        if measure(ServiceModel(middle, servers, share * middle)) < observed:
            low = middle
        else:
            high = middle
    low = max(low, 1e-9)
    return ServiceModel(low, servers, share * low)


def fit(
    percentile: float,
    observed_seconds: float,
    arrival_rps: float,
    replicas: int,
    servers_per_replica: int = 1,
    mean_seconds: float | None = None,
) -> ServiceModel:
    """The service model that reproduces ``observed_seconds`` (and ``mean_seconds``, when known) at this
    rate and replica count.

    Without the mean: an exponential service (no fixed part) fitted to the percentile. With it: for each
    fixed share of the service time, the mean service time that reproduces the observed mean; the
    percentile falls as the share grows (a tighter spread), so bisect on the share until it matches.
    A percentile wider than even an exponential's at that mean keeps the exponential fitted to the
    percentile (the larger, safer service time); one tighter than the largest share allows keeps that share.
    """
    if observed_seconds <= 0.0 or replicas <= 0:
        raise ValueError("fit needs a positive observed latency and at least one replica")

    def quantile(model: ServiceModel) -> float:
        return response_quantile(percentile, arrival_rps, replicas, model)

    def mean(model: ServiceModel) -> float:
        return mean_response(arrival_rps, replicas, model)

    exponential = _bisect_service(observed_seconds, quantile, arrival_rps, replicas, servers_per_replica, 0.0)
    if mean_seconds is None or not 0.0 < mean_seconds < observed_seconds:
        return exponential

    def at(share: float) -> tuple[ServiceModel, float]:
        model = _bisect_service(mean_seconds, mean, arrival_rps, replicas, servers_per_replica, share)
        return model, quantile(model)

    if at(0.0)[1] <= observed_seconds:
        return exponential  # a tail at least as wide as an exponential's: its service time is the larger
    tightest, predicted = at(MAX_FIXED_SHARE)
    if predicted >= observed_seconds:
        return tightest
    low, high = 0.0, MAX_FIXED_SHARE
    for _ in range(_FIT_ITERATIONS):
        middle = (low + high) / 2.0
        if at(middle)[1] > observed_seconds:
            low = middle
        else:
            high = middle
    return at(high)[0]
