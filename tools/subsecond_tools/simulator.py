"""A discrete-event model of a scaled service, to compare the operator's decision with the usual autoscalers.

Requests arrive as a Poisson process whose rate follows a load profile; each takes a log-normal
service time on the first free slot of a FIFO pool. A replica has ``concurrency`` slots: ``single`` serves
one request at a time (P95 about 2.3x the median); ``batching`` serves 8 at once at the same per-request
latency, as a server with in-flight batching does up to its batch size, and queues beyond. Replicas added by
a policy serve only after a start-up delay. Every 15 s a policy sees what it would read from Prometheus or
metrics-server (the P95, mean and completion rate over the last ``window`` seconds, the completion rate and the
mean over the last 30 s, the busy share of the ready replicas' slots, the ready replicas) and sets a replica count.

Policies (:data:`POLICIES`): ``operator`` is :func:`subsecond_operator.decision.decide` with the default spec
(and the service's concurrency, as the chart renders it), which fits the replicas' capacity from what it reads
(kept across ticks as the operator keeps it in status); ``told`` is a bound on it, not a policy: the operator raised
at every tick to what the true arrival rate needs, as no metric could tell it sooner. Two baselines are the
autoscalers a team would otherwise use, with the HPA's default behaviour
(:func:`hpa_replicas`): ``hpa`` on CPU utilisation (target 60 %: the busy share of the slots), ``keda`` on the
request rate per replica (target 60 % of what a replica serves, as KEDA's Prometheus scaler hands the HPA an
average value). Reported per run: SLO attainment (share of 15 s slots whose P95 held the threshold),
replica-minutes, scaling actions and reversals (an action against the previous one within 10 min).

``python -m subsecond_tools.simulator --help``; ``make simulate`` writes the table, a JSON and a PNG.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from subsecond_operator.capacity import NO_EVIDENCE
from subsecond_operator.decision import Recommendation, Snapshot, decide
from subsecond_operator.spec import RECENT_WINDOW_SECONDS, SLOSpec

SLOT_SECONDS = 15.0
FLAP_SECONDS = 600.0


@dataclass(frozen=True)
class Service:
    median_service_seconds: float = 0.06
    sigma: float = 0.5  # of the service time's logarithm
    startup_seconds: float = 30.0
    concurrency: int = 1  # requests one replica serves at once at the same latency (a batch); more queue
    load_factor: float = 1.0  # times the base rate: a batching replica serves many more requests

    @property
    def mean_service_seconds(self) -> float:
        return self.median_service_seconds * math.exp(self.sigma**2 / 2)

    @property
    def replica_rps(self) -> float:
        """Requests per second one replica completes when all its slots are busy."""
        return self.concurrency / self.mean_service_seconds


# The simulated services: a server of one request at a time, and a batching server (8 at once, 100 ms median).
SERVICES = {
    "single": Service(),
    "batching": Service(median_service_seconds=0.1, sigma=0.3, concurrency=8, load_factor=10.0),
}


def profile_rate(name: str, t: float, duration: float, base: float) -> float:
    """Arrivals per second at time ``t`` of a profile."""
    if name == "steady":
        return base
    if name == "step":
        return base if t < duration / 3 else 2 * base
    if name == "ramp":
        return base * (0.5 + 2.0 * t / duration)
    if name == "spike":
        return 3 * base if duration / 2 <= t < duration / 2 + 120 else base
    if name == "diurnal":
        return base * (1.0 + 0.75 * math.sin(2 * math.pi * t / duration - math.pi / 2))
    raise ValueError(f"unknown profile {name!r}")


PROFILES = ("steady", "step", "ramp", "spike", "diurnal")


@dataclass
class Run:
    profile: str
    policy: str
    service: str = "single"
    attainment: float = 0.0
    replica_minutes: float = 0.0
    actions: int = 0
    flaps: int = 0
    times: list[float] = field(default_factory=list)
    replicas: list[int] = field(default_factory=list)
    p95_ms: list[float | None] = field(default_factory=list)
    mean_ms: list[float | None] = field(default_factory=list)


def _p95(latencies: list[float]) -> float | None:
    if not latencies:
        return None
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def _finished(finished: dict[int, list[float]], tick: float, seconds: float) -> list[float]:
    """Latencies of the requests that finished in the ``seconds`` before ``tick``."""
    return [x for s in range(int(tick - seconds), int(tick)) for x in finished.get(s, ())]


def _mean(latencies: list[float]) -> float | None:
    return sum(latencies) / len(latencies) if latencies else None


def _rate(latencies: list[float], tick: float, seconds: float) -> float:
    """Completions per second over a window, as Prometheus's rate() extrapolates it: over the part covered."""
    return len(latencies) / min(seconds, tick)


# The HorizontalPodAutoscaler's documented defaults (kubernetes.io, "Horizontal Pod Autoscaling", and the
# autoscaling/v2 API's HPAScalingRules): no change while the usage ratio is within 10 % of 1; up by the larger of
# 100 % and 4 pods per 15 s, without stabilisation; down to the highest recommendation of the last 300 s.
HPA_TOLERANCE = 0.1
HPA_UP_PODS = 4
HPA_DOWN_WINDOW_SECONDS = 300.0
# Both baselines aim at 60 % of a replica: CPU utilisation, or that share of the requests it serves.
BASELINE_TARGET = 0.6


def hpa_replicas(spec: SLOSpec, snapshot: Snapshot, ratio: float | None, history: list[Recommendation]) -> int:
    """The HPA's next count from its usage ratio (metric / target, averaged over the current replicas).

    ``history`` keeps the recommendations for the scale-down window. No ratio (no metric yet): hold."""
    current = snapshot.current_replicas
    if ratio is None:
        return current
    wanted = current if abs(ratio - 1.0) <= HPA_TOLERANCE else math.ceil(current * ratio - 1e-9)
    wanted = max(spec.min_replicas, min(spec.max_replicas, wanted))
    history.append(Recommendation(snapshot.now, wanted))
    if wanted > current:
        return min(wanted, max(2 * current, current + HPA_UP_PODS))
    window = [r.replicas for r in history if snapshot.now - r.time <= HPA_DOWN_WINDOW_SECONDS]
    return min(current, max(window))


def cpu_ratio(snapshot: Snapshot, busy_share: float | None) -> float | None:
    """The HPA's CPU usage ratio: the ready replicas' utilisation over the target; to scale up, replicas not
    ready yet count as idle (the HPA sets aside pods that are starting, then assumes 0 % for them)."""
    if busy_share is None or snapshot.ready_replicas <= 0 or snapshot.current_replicas <= 0:
        return None
    ratio = busy_share / BASELINE_TARGET
    if ratio > 1.0 + HPA_TOLERANCE and snapshot.ready_replicas < snapshot.current_replicas:
        ratio *= snapshot.ready_replicas / snapshot.current_replicas
    return ratio


def rate_ratio(snapshot: Snapshot, service: Service) -> float | None:
    """KEDA's ratio: requests per second per replica over its target (an external metric, no readiness rule)."""
    if snapshot.arrival_rps is None or snapshot.current_replicas <= 0:
        return None
    return snapshot.arrival_rps / snapshot.current_replicas / (BASELINE_TARGET * service.replica_rps)


def told_replicas(spec: SLOSpec, service: Service, rate: float) -> int:
    """What the arrival ``rate`` needs at the spec's utilisation ceiling, told by the profile itself: no metric,
    however leading, tells a policy more, or sooner (a step lands on a tick, so this sees it the instant it comes)."""
    busy = rate * service.mean_service_seconds / service.concurrency
    return min(spec.max_replicas, math.ceil(busy / spec.capacity.max_utilization - 1e-9))


def simulate(
    spec: SLOSpec, profile: str, policy: str, *, duration: float, base_rps: float, service: Service, seed: int
) -> Run:
    if policy not in {"operator", "told", "hpa", "keda"}:
        raise ValueError(f"unknown policy {policy!r}")
    rng = random.Random(seed)  # the same arrivals and service times for every policy
    run = Run(profile, policy)
    slots = service.concurrency
    base_rps *= service.load_factor
    # Start at 60 % utilisation of the first arrival rate, as a service that has been running would.
    wanted = math.ceil(profile_rate(profile, 0.0, duration, base_rps) / service.replica_rps / 0.6)
    initial = min(spec.max_replicas, max(spec.min_replicas, wanted))
    free: list[float] = [0.0] * (initial * slots)  # when each slot is next free (a new replica's: when ready)
    heapq.heapify(free)
    finished: dict[int, list[float]] = {}  # latencies by the second they finished in
    busy: dict[int, float] = {}  # slot-seconds of service by the second the request finished in
    history: list[Recommendation] = []
    recommendations: tuple[Recommendation, ...] = ()
    evidence = NO_EVIDENCE  # the operator's status.capacity
    last_scale: float | None = None
    last_action: tuple[float, int] | None = None
    ready_at: list[float] = [0.0] * initial
    mu = math.log(service.median_service_seconds)
    window_seconds = spec.objective.window_seconds

    t, tick = 0.0, SLOT_SECONDS
    while t < duration:
        rate = profile_rate(profile, t, duration, base_rps)
        t += rng.expovariate(rate)
        serve = rng.lognormvariate(mu, service.sigma)
        while tick <= min(t, duration):
            window = _finished(finished, tick, window_seconds)
            recent = (
                _finished(finished, tick, RECENT_WINDOW_SECONDS) if window_seconds > RECENT_WINDOW_SECONDS else None
            )
            slot = _finished(finished, tick, SLOT_SECONDS)
            current = len(free) // slots
            ready = sum(1 for r in ready_at if r <= tick)
            covered = min(window_seconds, tick)
            served = sum(busy.get(s, 0.0) for s in range(int(tick - covered), int(tick)))
            busy_share = served / (covered * ready * slots) if ready else None
            slot_p95 = _p95(slot)
            snapshot = Snapshot(
                tick,
                current,
                ready,
                _p95(window),
                _rate(window, tick, window_seconds),
                recommendations,
                last_scale,
                mean_seconds=_mean(window),
                recent_rps=None if recent is None else _rate(recent, tick, RECENT_WINDOW_SECONDS),
                recent_mean_seconds=None if recent is None else _mean(recent),
                evidence=evidence,
            )
            if policy in {"operator", "told"}:
                decision = decide(spec, snapshot)
                wanted, recommendations, evidence = decision.replicas, decision.recommendations, decision.evidence
                if policy == "told":
                    wanted = max(wanted, told_replicas(spec, service, profile_rate(profile, tick, duration, base_rps)))
            elif policy == "hpa":
                wanted = hpa_replicas(spec, snapshot, cpu_ratio(snapshot, busy_share), history)
            else:
                wanted = hpa_replicas(spec, snapshot, rate_ratio(snapshot, service), history)
            if wanted != current:
                direction = 1 if wanted > current else -1
                if last_action is not None and last_action[1] != direction and tick - last_action[0] < FLAP_SECONDS:
                    run.flaps += 1
                run.actions += 1
                last_action, last_scale = (tick, direction), tick
                if wanted > current:
                    for _ in range((wanted - current) * slots):
                        heapq.heappush(free, tick + service.startup_seconds)
                    ready_at += [tick + service.startup_seconds] * (wanted - current)
                else:
                    free = sorted(free)[: wanted * slots]
                    heapq.heapify(free)
                    ready_at = sorted(ready_at)[:wanted]
            replicas = len(free) // slots
            run.times.append(tick)
            run.replicas.append(replicas)
            run.p95_ms.append(None if slot_p95 is None else slot_p95 * 1000)
            slot_mean = _mean(slot)
            run.mean_ms.append(None if slot_mean is None else slot_mean * 1000)
            run.replica_minutes += replicas * SLOT_SECONDS / 60.0
            tick += SLOT_SECONDS
        if t >= duration:
            break
        start = max(t, heapq.heappop(free))
        end = start + serve
        heapq.heappush(free, end)
        finished.setdefault(int(end), []).append(end - t)
        busy[int(end)] = busy.get(int(end), 0.0) + serve
    measured = [p for p in run.p95_ms if p is not None]
    run.attainment = sum(p <= spec.objective.threshold_seconds * 1000 for p in measured) / max(1, len(measured))
    return run


def default_spec(
    *,
    headroom: float | None = None,
    requests_per_second_per_replica: float | None = None,
    concurrency_per_replica: int = 1,
    max_utilization: float | None = None,
) -> SLOSpec:
    """The simulated service's LatencySLO: the CRD's defaults with the service's concurrency, or one of them changed."""
    objective: dict[str, object] = {"thresholdMs": 300, "metric": "simulated_request_duration_seconds"}
    if headroom is not None:
        objective["headroom"] = headroom
    spec: dict[str, object] = {
        "scaleTargetRef": {"kind": "Deployment", "name": "simulated"},
        "objective": objective,
        "minReplicas": 1,
        "maxReplicas": 30,
    }
    capacity: dict[str, object] = {"concurrencyPerReplica": concurrency_per_replica}
    if requests_per_second_per_replica is not None:
        capacity["requestsPerSecondPerReplica"] = requests_per_second_per_replica
    if max_utilization is not None:
        capacity["maxUtilization"] = max_utilization
    spec["capacity"] = capacity
    return SLOSpec.parse(spec)


# (label, the decision that scales: "operator", "told", "hpa" or "keda"); one run each per profile. "told" is a
# bound, not a policy: the operator raised at every tick to what the true arrival rate needs (told_replicas).
POLICIES: tuple[tuple[str, str], ...] = (
    ("operator", "operator"),
    ("bound: operator told the rate", "told"),
    ("hpa (CPU 60 %)", "hpa"),
    ("keda (req/s per replica)", "keda"),
)
BASELINES = {"hpa", "keda"}


def best_baseline(runs: list[Run]) -> Run:
    """The baseline with the highest attainment, then the fewest replica-minutes."""
    return min(runs, key=lambda r: (-round(r.attainment, 4), r.replica_minutes))


def _plot(runs: list[Run], path: Path, threshold_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = sorted({r.profile for r in runs}, key=list(PROFILES).index)
    services = [name for name in SERVICES if any(r.service == name for r in runs)]
    rows = 2 * len(services)
    figure, axes = plt.subplots(
        rows, len(profiles), figsize=(4 * len(profiles), 3.2 * rows), sharex=True, squeeze=False
    )
    colours = {label: f"C{i}" for i, (label, _) in enumerate(POLICIES)}
    styles = {label: ":" if kind in BASELINES else "--" if kind == "told" else "-" for label, kind in POLICIES}
    for row, service in enumerate(services):
        replicas_axis, latency_axis = axes[2 * row], axes[2 * row + 1]
        for column, profile in enumerate(profiles):
            for run in (r for r in runs if r.profile == profile and r.service == service):
                minutes = [t / 60 for t in run.times]
                line = {"color": colours[run.policy], "linestyle": styles[run.policy], "linewidth": 1.2}
                replicas_axis[column].step(minutes, run.replicas, where="post", label=run.policy, **line)
                p95 = [math.nan if p is None else p for p in run.p95_ms]
                latency_axis[column].plot(minutes, p95, alpha=0.8, **line)
            replicas_axis[column].set_title(f"{service}: {profile}")
            latency_axis[column].axhline(threshold_ms, color="red", linestyle="--", linewidth=1)
            latency_axis[column].set_yscale("log")
        replicas_axis[0].set_ylabel("replicas")
        latency_axis[0].set_ylabel("P95 per 15 s (ms)")
    for column in range(len(profiles)):
        axes[-1][column].set_xlabel("minutes")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.tight_layout(rect=(0, 0.03, 1, 1))
    figure.savefig(path, dpi=80)
    plt.close(figure)


def _job(job: tuple[str, str, str, str, float, float, int]) -> Run:
    service_name, profile, label, policy, duration, rps, seed = job
    service = SERVICES[service_name]
    started = time.perf_counter()
    run = simulate(
        default_spec(concurrency_per_replica=service.concurrency),
        profile,
        policy,
        duration=duration,
        base_rps=rps,
        service=service,
        seed=seed,
    )
    run.policy, run.service = label, service_name
    print(
        f"  {service_name:8s} {profile:8s} {label:30s} done in {time.perf_counter() - started:.1f} s", file=sys.stderr
    )
    return run


def _row(run: Run) -> str:
    return (
        f"| {run.service} | {run.profile} | {run.policy} | {run.attainment * 100:.1f} % | {run.replica_minutes:.0f}"
        f" | {run.actions} | {run.flaps} |"
    )


def _against_best(runs: list[Run]) -> list[str]:
    """Per service and profile, the default operator against the best baseline."""
    decisions = dict(POLICIES)
    lines = [
        "| service | profile | best baseline | its attainment | its replica-minutes | operator attainment"
        " | operator replica-minutes |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for service in SERVICES:
        for profile in PROFILES:
            these = [r for r in runs if r.service == service and r.profile == profile]
            baselines = [r for r in these if decisions[r.policy] in BASELINES]
            operator = [r for r in these if r.policy == POLICIES[0][0]]
            if not baselines or not operator:
                continue
            best, ours = best_baseline(baselines), operator[0]
            lines.append(
                f"| {service} | {profile} | {best.policy} | {best.attainment * 100:.1f} % | {best.replica_minutes:.0f}"
                f" | {ours.attainment * 100:.1f} % | {ours.replica_minutes:.0f} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subsecond_tools.simulator",
        description="Simulate services under load profiles, scaled by the operator's decision and by an HPA on CPU "
        "and KEDA on request rate; print attainment, replica-minutes, actions and flaps; write a JSON and a PNG.",
    )
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated: " + ", ".join(PROFILES))
    parser.add_argument("--services", default=",".join(SERVICES), help="comma-separated: " + ", ".join(SERVICES))
    parser.add_argument("--minutes", type=float, default=60.0, help="length of each run (default 60)")
    parser.add_argument("--rps", type=float, default=40.0, help="base arrival rate, requests/s (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for simulator.json/png")
    args = parser.parse_args(argv)
    profiles = [p for p in args.profiles.split(",") if p]
    services = [s for s in args.services.split(",") if s]
    jobs = [
        (service, profile, *policy, args.minutes * 60, args.rps, args.seed)
        for service in services
        for profile in profiles
        for policy in POLICIES
    ]
    # The runs are independent (each seeds its own generator): one process each, results in order.
    with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        runs = list(pool.map(_job, jobs))
    lines = [
        "| service | profile | policy | attainment | replica-minutes | actions | flaps |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    lines += [_row(r) for r in runs]
    print("\n".join(lines))
    print()
    print("\n".join(_against_best(runs)))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "settings": {
            "minutes": args.minutes,
            "rps": args.rps,
            "seed": args.seed,
            "services": {name: asdict(SERVICES[name]) for name in services},
        },
        "policies": dict(POLICIES),
        "runs": [asdict(r) for r in runs],
    }
    (args.out / "simulator.json").write_text(json.dumps(summary))
    _plot(runs, args.out / "simulator.png", default_spec().objective.threshold_seconds * 1000)
    print(f"wrote {args.out / 'simulator.json'} and {args.out / 'simulator.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
