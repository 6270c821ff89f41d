"""What a replica serves, fitted from the metrics and remembered across ticks in the LatencySLO's status.

The spec's ``capacity.concurrencyPerReplica`` (rendered by the chart from a server's batch or worker count) is a
prior and an upper bound: a batching server rarely keeps its latency up to its full batch. The metrics give
three facts, remembered in ``status.capacity``:

- the **service time floor**: the lowest mean latency seen (the window's ``_sum / _count``), the time a request
  takes when it does not queue;
- the **peak rate per replica**: the highest completion rate per ready replica seen (only over windows in which the
  replica count did not change, so that the rate is the ready replicas' own);
- whether the latency has **climbed**: a mean over ``CLIMB`` times the floor, over the window and over its last
  30 s, at a completion rate that held (the recent rate within ``STEADY`` of the window's), is queueing that lasted,
  so the replicas were at (or near) what they can serve, and the peak rate is then a measured saturation
  throughput. The first window of a jump is not: its rate mixes the load before it (in the simulator's batching
  step, it read 5 at once for 8).

By Little's law, the requests a replica serves at once are its completion rate times the time each takes: at the
saturation throughput, that is the concurrency. So once the latency has climbed, the fitted concurrency is
``peak rate x floor`` (rounded, at least 1), and the operator plans with the lower of it and the prior; before that
there is no evidence against the prior, which it keeps. It reads a little low (the mean doubles before a replica is
fully busy: about 90 % busy for 8 slots), which errs towards more replicas, and a later, higher peak raises it.

Pure: the decision feeds it each tick's reading and keeps what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# A window's mean counts as evidence only over this many completions (a handful of requests is noise).
MIN_COMPLETIONS = 50
# A mean this many times the floor is queueing: the latency has climbed.
CLIMB = 2.0
# A completion rate that held: the recent (30 s) one within this share of the window's.
STEADY = 0.1


@dataclass(frozen=True)
class Evidence:
    floor_seconds: float | None = None  # the lowest mean latency seen
    peak_rps_per_replica: float | None = None  # the highest completion rate per ready replica seen
    climbed: bool = False  # a mean over CLIMB x the floor has been seen: the peak is a saturation throughput

    def learn(
        self,
        *,
        rate_rps: float,
        mean_seconds: float | None,
        ready: int,
        window_seconds: float,
        recent_rps: float | None = None,
        recent_mean_seconds: float | None = None,
    ) -> Evidence:
        """The evidence after a window in which ``ready`` replicas (unchanged over it) completed ``rate_rps`` at a
        mean of ``mean_seconds`` (and over its recent part, ``recent_rps`` at ``recent_mean_seconds``; without
        them, no climb is read)."""
        if mean_seconds is None or mean_seconds <= 0.0 or ready <= 0 or rate_rps * window_seconds < MIN_COMPLETIONS:
            return self
        floor = mean_seconds if self.floor_seconds is None else min(self.floor_seconds, mean_seconds)
        per_replica = rate_rps / ready
        peak = per_replica if self.peak_rps_per_replica is None else max(self.peak_rps_per_replica, per_replica)
        climbed = (
            mean_seconds >= CLIMB * floor
            and recent_mean_seconds is not None
            and recent_mean_seconds >= CLIMB * floor
            and recent_rps is not None
            and abs(recent_rps - rate_rps) <= STEADY * rate_rps
        )
        return Evidence(floor, peak, self.climbed or climbed)

    @property
    def fitted_concurrency(self) -> int | None:
        """Requests a replica serves at once by Little's law at the saturation throughput; None before the latency
        has climbed (no evidence yet)."""
        if not self.climbed or self.floor_seconds is None or self.peak_rps_per_replica is None:
            return None
        return max(1, round(self.peak_rps_per_replica * self.floor_seconds))

    def concurrency(self, prior: int) -> int:
        """The concurrency to plan with: the fitted one under the prior (the spec's), else the prior."""
        fitted = self.fitted_concurrency
        return prior if fitted is None else min(prior, fitted)

    def to_status(self, prior: int, in_flight_per_replica: float | None) -> dict[str, Any]:
        """``status.capacity``: the evidence, the prior, what was fitted and what the plan used."""
        fitted = self.fitted_concurrency
        return {
            "serviceTimeFloorMs": None if self.floor_seconds is None else round(self.floor_seconds * 1000.0, 2),
            "peakRequestsPerSecondPerReplica": (
                None if self.peak_rps_per_replica is None else round(self.peak_rps_per_replica, 3)
            ),
            "latencyClimbed": self.climbed,
            "inFlightPerReplica": None if in_flight_per_replica is None else round(in_flight_per_replica, 2),
            "specConcurrencyPerReplica": prior,
            "fittedConcurrencyPerReplica": fitted,
            "concurrencyPerReplica": self.concurrency(prior),
        }

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> Evidence:
        """The evidence an earlier tick kept in ``status.capacity`` (none: a new object)."""
        kept = status.get("capacity") or {}
        floor, peak = kept.get("serviceTimeFloorMs"), kept.get("peakRequestsPerSecondPerReplica")
        return cls(
            None if floor is None else float(floor) / 1000.0,
            None if peak is None else float(peak),
            bool(kept.get("latencyClimbed", False)),
        )


NO_EVIDENCE = Evidence()  # a new object's
