"""A discrete-event model of a scaled service, to compare the operator's decision with a reactive baseline.

Requests arrive as a Poisson process whose rate follows a load profile; each takes a log-normal
service time (a realistic tail: P95 about 2.3x the median) on the first free server of a FIFO pool;
replicas added by a policy serve only after a start-up delay. Every ``interval`` seconds a policy sees
what the operator would read from Prometheus (the P95, mean and completion rate over the last ``window``
seconds, the completion rate over the last 30 s, the ready replicas) and sets a replica count.

Policies: ``operator`` is :func:`subsecond.operator.decision.decide` with the default spec; two more
operator rows change one setting each (:data:`POLICIES`): ``objective.headroom: 0.4``, and a capacity hint
of 7 req/s per replica (about half of what one replica serves: room for a 2x jump). ``baseline`` scales in
proportion to observed P95 / threshold, like a latency-driven HPA (10 % tolerance, 300 s scale-down
stabilisation). Reported per run: SLO attainment (share of 15 s slots whose P95 held the threshold),
replica-minutes, scaling actions and reversals (an action against the previous one within 10 min).

``python -m subsecond.operator.simulator --help``; ``make simulate`` writes the table, a JSON and a PNG.
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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from subsecond.operator.decision import Recommendation, Snapshot, decide
from subsecond.operator.spec import RECENT_WINDOW_SECONDS, SLOSpec

SLOT_SECONDS = 15.0
FLAP_SECONDS = 600.0


@dataclass(frozen=True)
class Service:
    median_service_seconds: float = 0.06
    sigma: float = 0.5  # of the service time's logarithm
    startup_seconds: float = 30.0


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


def _rate(latencies: list[float], tick: float, seconds: float) -> float:
    """Completions per second over a window, as Prometheus's rate() extrapolates it: over the part covered."""
    return len(latencies) / min(seconds, tick)


def baseline(spec: SLOSpec) -> Callable[[Snapshot, list[Recommendation]], int]:
    """Reactive proportional scaling on the observed P95, like an HPA with a latency metric."""

    def policy(snapshot: Snapshot, history: list[Recommendation]) -> int:
        current = snapshot.current_replicas
        if snapshot.observed_seconds is None:
            return current
        ratio = snapshot.observed_seconds / spec.objective.threshold_seconds
        wanted = current if abs(ratio - 1.0) <= 0.1 else math.ceil(current * ratio)
        wanted = max(spec.min_replicas, min(spec.max_replicas, wanted))
        history.append(Recommendation(snapshot.now, wanted))
        window = [r.replicas for r in history if snapshot.now - r.time <= 300]
        return wanted if wanted >= current else min(current, max(window))

    return policy


def simulate(
    spec: SLOSpec, profile: str, policy: str, *, duration: float, base_rps: float, service: Service, seed: int
) -> Run:
    rng = random.Random(seed)  # the same arrivals and service times for both policies
    run = Run(profile, policy)
    # Start at 60 % utilisation of the first arrival rate, as a service that has been running would.
    mean_service = service.median_service_seconds * math.exp(service.sigma**2 / 2)
    wanted = math.ceil(profile_rate(profile, 0.0, duration, base_rps) * mean_service / 0.6)
    initial = min(spec.max_replicas, max(spec.min_replicas, wanted))
    free: list[float] = [0.0] * initial  # when each server is next free (a new one: when ready)
    heapq.heapify(free)
    finished: dict[int, list[float]] = {}  # latencies by the second they finished in
    history: list[Recommendation] = []
    recommendations: tuple[Recommendation, ...] = ()
    last_scale: float | None = None
    last_action: tuple[float, int] | None = None
    ready_at: list[float] = [0.0] * initial
    decide_baseline = baseline(spec)
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
            current = len(free)
            ready = sum(1 for r in ready_at if r <= tick)
            slot_p95 = _p95(slot)
            snapshot = Snapshot(
                tick,
                current,
                ready,
                _p95(window),
                _rate(window, tick, window_seconds),
                recommendations,
                last_scale,
                mean_seconds=sum(window) / len(window) if window else None,
                recent_rps=None if recent is None else _rate(recent, tick, RECENT_WINDOW_SECONDS),
            )
            if policy == "operator":
                decision = decide(spec, snapshot)
                wanted, recommendations = decision.replicas, decision.recommendations
            else:
                wanted = decide_baseline(snapshot, history)
            if wanted != current:
                direction = 1 if wanted > current else -1
                if last_action is not None and last_action[1] != direction and tick - last_action[0] < FLAP_SECONDS:
                    run.flaps += 1
                run.actions += 1
                last_action, last_scale = (tick, direction), tick
                if wanted > current:
                    for _ in range(wanted - current):
                        heapq.heappush(free, tick + service.startup_seconds)
                        ready_at.append(tick + service.startup_seconds)
                else:
                    free = sorted(free)[:wanted]
                    heapq.heapify(free)
                    ready_at = sorted(ready_at)[:wanted]
            run.times.append(tick)
            run.replicas.append(len(free))
            run.p95_ms.append(None if slot_p95 is None else slot_p95 * 1000)
            run.mean_ms.append(sum(slot) / len(slot) * 1000 if slot else None)
            run.replica_minutes += len(free) * SLOT_SECONDS / 60.0
            tick += SLOT_SECONDS
        if t >= duration:
            break
        start = max(t, heapq.heappop(free))
        end = start + serve
        heapq.heappush(free, end)
        finished.setdefault(int(end), []).append(end - t)
    measured = [p for p in run.p95_ms if p is not None]
    run.attainment = sum(p <= spec.objective.threshold_seconds * 1000 for p in measured) / max(1, len(measured))
    return run


def default_spec(*, headroom: float | None = None, requests_per_second_per_replica: float | None = None) -> SLOSpec:
    """The simulated service's LatencySLO: the CRD's defaults, or one of them changed."""
    objective: dict[str, object] = {"thresholdMs": 300, "metric": "simulated_request_duration_seconds"}
    if headroom is not None:
        objective["headroom"] = headroom
    spec: dict[str, object] = {
        "scaleTargetRef": {"kind": "Deployment", "name": "simulated"},
        "objective": objective,
        "minReplicas": 1,
        "maxReplicas": 30,
    }
    if requests_per_second_per_replica is not None:
        spec["capacity"] = {"requestsPerSecondPerReplica": requests_per_second_per_replica}
    return SLOSpec.parse(spec)


# (label, the decision that scales: "operator" or "baseline", its spec's settings); one run of each per profile.
POLICIES: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("operator", "operator", {}),
    ("operator (headroom 0.4)", "operator", {"headroom": 0.4}),
    ("operator (7 req/s per replica)", "operator", {"requests_per_second_per_replica": 7.0}),
    ("baseline", "baseline", {}),
)


def _plot(runs: list[Run], path: Path, threshold_ms: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = sorted({r.profile for r in runs}, key=list(PROFILES).index)
    figure, axes = plt.subplots(2, len(profiles), figsize=(4 * len(profiles), 6.5), sharex=True, squeeze=False)
    colours = {label: f"C{i}" for i, (label, _, _) in enumerate(POLICIES)}
    for column, profile in enumerate(profiles):
        for run in (r for r in runs if r.profile == profile):
            minutes = [t / 60 for t in run.times]
            baseline = run.policy == "baseline"
            colour, style = ("0.3", ":") if baseline else (colours.get(run.policy, "C9"), "-")
            line = {"color": colour, "linestyle": style, "linewidth": 1.2, "label": run.policy}
            axes[0][column].step(minutes, run.replicas, where="post", **line)
            axes[1][column].plot(minutes, [math.nan if p is None else p for p in run.p95_ms], alpha=0.8, **line)
        axes[0][column].set_title(profile)
        axes[1][column].axhline(threshold_ms, color="red", linestyle="--", linewidth=1)
        axes[1][column].set_yscale("log")
        axes[1][column].set_xlabel("minutes")
    axes[0][0].set_ylabel("replicas")
    axes[1][0].set_ylabel("P95 per 15 s (ms)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False)
    figure.tight_layout(rect=(0, 0.05, 1, 1))
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _job(job: tuple[str, str, str, dict[str, float], float, float, Service, int]) -> Run:
    profile, label, policy, settings, duration, rps, service, seed = job
    started = time.perf_counter()
    run = simulate(
        default_spec(**settings), profile, policy, duration=duration, base_rps=rps, service=service, seed=seed
    )
    run.policy = label
    print(f"  {profile:8s} {label:30s} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m subsecond.operator.simulator",
        description="Simulate a service under load profiles, scaled by the operator's decision and by a reactive "
        "baseline; print attainment, replica-minutes, actions and flaps; write a JSON and a PNG.",
    )
    parser.add_argument("--profiles", default=",".join(PROFILES), help="comma-separated: " + ", ".join(PROFILES))
    parser.add_argument("--minutes", type=float, default=60.0, help="length of each run (default 60)")
    parser.add_argument("--rps", type=float, default=40.0, help="base arrival rate, requests/s (default 40)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for simulator.json/png")
    args = parser.parse_args(argv)
    service = Service()
    profiles = [p for p in args.profiles.split(",") if p]
    jobs = [
        (profile, *policy, args.minutes * 60, args.rps, service, args.seed)
        for profile in profiles
        for policy in POLICIES
    ]
    # The runs are independent (each seeds its own generator): one process each, results in order.
    with ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 1)) as pool:
        runs = list(pool.map(_job, jobs))
    header = "| profile | policy | attainment | replica-minutes | actions | flaps |"
    lines = [header, "|---|---|---:|---:|---:|---:|"]
    lines += [
        f"| {r.profile} | {r.policy} | {r.attainment * 100:.1f} % | {r.replica_minutes:.0f} | {r.actions} | {r.flaps} |"
        for r in runs
    ]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {
        "settings": {"minutes": args.minutes, "rps": args.rps, "seed": args.seed, "service": asdict(service)},
        "policies": {label: {"decision": policy, "spec": settings} for label, policy, settings in POLICIES},
        "runs": [asdict(r) for r in runs],
    }
    (args.out / "simulator.json").write_text(json.dumps(summary))
    _plot(runs, args.out / "simulator.png", default_spec().objective.threshold_seconds * 1000)
    print(f"wrote {args.out / 'simulator.json'} and {args.out / 'simulator.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
