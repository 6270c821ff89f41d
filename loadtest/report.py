"""Reads k6's JSON output (one point per line) into per-phase figures and the PNG of a run."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

SERVED_BY = ("exact", "semantic", "static", "generated")
# k6 writes nanoseconds; datetime takes microseconds.
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True)
class Point:
    time: float  # seconds since the epoch
    metric: str
    value: float
    tags: dict[str, str]


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # seconds since the epoch
    end: float


def read_points(path: Path, metrics: tuple[str, ...] = ("answer_latency", "first_chunk_latency", "request_errors",
                                                        "wrong_answers")) -> list[Point]:
    """The samples of ``metrics`` taken while the scenario ran (the warm-up in setup is left out)."""
    points = []
    with path.open() as lines:
        for line in lines:
            record = json.loads(line)
            if record["type"] != "Point" or record["metric"] not in metrics:
                continue
            data = record["data"]
            tags = data.get("tags") or {}
            if "class" not in tags:
                continue
            stamp = datetime.fromisoformat(_FRACTION.sub(r"\1", data["time"]).replace("Z", "+00:00"))
            points.append(Point(stamp.timestamp(), record["metric"], float(data["value"]), tags))
    return points


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50_ms": round(float(p50), 1), "p95_ms": round(float(p95), 1), "p99_ms": round(float(p99), 1)}


def phase_figures(points: list[Point], phase: Phase) -> dict[str, object]:
    """Requests, error rate, wrong answers, latency per ``served_by``, first chunk and served-by shares."""
    inside = [p for p in points if phase.start <= p.time < phase.end]
    answers = [p for p in inside if p.metric == "answer_latency"]
    outcomes = [p for p in inside if p.metric == "request_errors"]
    served = Counter(p.tags["served_by"] for p in answers)
    return {
        "phase": phase.name,
        "seconds": round(phase.end - phase.start, 1),
        "requests": len(outcomes),
        "errors": int(sum(p.value for p in outcomes)),
        "error_rate": round(sum(p.value for p in outcomes) / len(outcomes), 4) if outcomes else None,
        "wrong_answers": int(sum(p.value for p in inside if p.metric == "wrong_answers")),
        "served_by_share": {name: round(served[name] / len(answers), 3) for name in served} if answers else {},
        "latency": {
            name: _percentiles([p.value for p in answers if p.tags["served_by"] == name])
            for name in SERVED_BY
            if served[name]
        },
        "first_chunk": _percentiles([p.value for p in inside if p.metric == "first_chunk_latency"]),
    }


def plot(points: list[Point], phases: list[Phase], path: Path, title: str) -> None:
    """Latency percentiles and throughput per second, the served-by shares, fault windows shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    answers = [p for p in points if p.metric == "answer_latency"]
    start = min((p.time for p in points), default=0.0)
    seconds = np.array([p.time - start for p in answers])
    values = np.array([p.value for p in answers])
    edges = np.arange(0, (seconds.max() if len(seconds) else 0) + 2, 1.0)
    figure, (latency, throughput, shares) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    middles = edges[:-1] + 0.5
    for q in (50, 95, 99):
        series = [
            np.percentile(values[(seconds >= lo) & (seconds < lo + 1)], q)
            if np.any((seconds >= lo) & (seconds < lo + 1))
            else np.nan
            for lo in edges[:-1]
        ]
        latency.plot(middles, series, label=f"p{q}")
    latency.set_yscale("log")
    latency.set_ylabel("answer latency (ms)")
    latency.legend(loc="upper left")
    counts = [np.histogram(seconds[[p.tags["served_by"] == name for p in answers]], edges)[0] for name in SERVED_BY]
    throughput.plot(middles, np.sum(counts, axis=0), color="black")
    throughput.set_ylabel("answers per second")
    totals = np.maximum(np.sum(counts, axis=0), 1)
    shares.stackplot(middles, *(c / totals for c in counts), labels=SERVED_BY)
    shares.set_ylabel("served-by share")
    shares.set_xlabel("seconds since the first request")
    shares.legend(loc="upper left", fontsize="small")
    for phase in phases[1:]:
        for axis in (latency, throughput, shares):
            axis.axvspan(phase.start - start, phase.end - start, color="red", alpha=0.08)
        latency.annotate(phase.name, (phase.start - start, 1.0), xycoords=("data", "axes fraction"),
                         va="top", fontsize="small", rotation=90)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
