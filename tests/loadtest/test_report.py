"""The load test's parts that need no stack: the fault schedule's syntax, k6's thresholds read back,
and the per-phase figures and PNG from a k6 JSON output written here."""

import argparse
import json
from pathlib import Path

import pytest
from report import Phase, phase_figures, plot, read_points
from run import Fault, slo_outcomes


def test_fault_parses_time_action_and_process() -> None:
    assert Fault.parse("12.5:kill:redis") == Fault(12.5, "kill", "redis")
    with pytest.raises(argparse.ArgumentTypeError):
        Fault.parse("3:explode:redis")


def test_crossed_thresholds_are_broken_slos() -> None:
    summary = {"metrics": {"wrong_answers": {"thresholds": {"count==0": True}}, "x": {"count": 1},
                           "request_errors": {"thresholds": {"rate<0.01": False}}}}  # fmt: skip
    assert slo_outcomes(summary) == {"request_errors: rate<0.01": True, "wrong_answers: count==0": False}


def k6_point(metric: str, second: float, value: float, **tags: str) -> str:
    stamp = f"2026-01-01T00:00:{second:012.9f}Z"
    return json.dumps({"type": "Point", "metric": metric, "data": {"time": stamp, "value": value, "tags": tags}})


def test_phases_split_the_points_and_the_png_is_drawn(tmp_path: Path) -> None:
    lines = [
        k6_point("answer_latency", 0.5, 999, phase="warm", served_by="generated"),  # setup: left out
        k6_point("answer_latency", 1.25, 4, **{"class": "repeats", "served_by": "exact"}),
        k6_point("request_errors", 1.25, 0, **{"class": "repeats"}),
        k6_point("answer_latency", 2.5, 900, **{"class": "fresh", "served_by": "generated"}),
        k6_point("request_errors", 2.5, 0, **{"class": "fresh"}),
        k6_point("request_errors", 3.5, 1, **{"class": "fresh"}),
        k6_point("wrong_answers", 3.6, 1, **{"class": "near_misses"}),
    ]
    path = tmp_path / "points.json"
    path.write_text("\n".join(lines) + "\n")
    points = read_points(path)
    assert len(points) == 6
    t0 = points[0].time
    phases = [Phase("baseline", t0, t0 + 1.0), Phase("kill redis", t0 + 1.0, t0 + 3.0)]
    baseline, fault = (phase_figures(points, phase) for phase in phases)
    assert baseline["requests"] == 1 and baseline["served_by_share"] == {"exact": 1.0}
    assert fault["requests"] == 2 and fault["errors"] == 1 and fault["wrong_answers"] == 1
    assert fault["latency"] == {"generated": {"p50_ms": 900.0, "p95_ms": 900.0, "p99_ms": 900.0}}
    plot(points, phases, tmp_path / "latency.png", "test")
    assert (tmp_path / "latency.png").read_bytes()[:4] == b"\x89PNG"
