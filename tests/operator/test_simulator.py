"""The simulator: deterministic, and the queueing estimate predicts what it measures; short runs of the policies."""

from __future__ import annotations

import dataclasses
import math

import pytest

from subsecond.operator.queueing import ServiceModel, fit, response_quantile
from subsecond.operator.simulator import Service, default_spec, simulate

SHORT = {"duration": 900.0, "base_rps": 40.0, "service": Service(), "seed": 3}


def test_simulator_is_deterministic() -> None:
    first = simulate(default_spec(), "step", "operator", **SHORT)  # type: ignore[arg-type]
    second = simulate(default_spec(), "step", "operator", **SHORT)  # type: ignore[arg-type]
    assert (first.replicas, first.p95_ms) == (second.replicas, second.p95_ms)


def test_operator_holds_steady_load_without_flapping_and_with_fewer_replicas() -> None:
    operator = simulate(default_spec(), "steady", "operator", **SHORT)  # type: ignore[arg-type]
    baseline = simulate(default_spec(), "steady", "baseline", **SHORT)  # type: ignore[arg-type]
    assert operator.flaps == 0 and operator.actions <= 2
    assert operator.attainment >= 0.99
    assert operator.replica_minutes <= baseline.replica_minutes


def test_operator_scales_up_through_a_step() -> None:
    run = simulate(default_spec(), "step", "operator", **SHORT)  # type: ignore[arg-type]
    before, after = run.replicas[len(run.replicas) // 4], run.replicas[-1]
    assert after > before
    assert run.attainment >= 0.9


@pytest.mark.parametrize("servers", [2, 4, 8])
def test_queueing_estimate_against_the_simulated_service(servers: int) -> None:
    """Fitted at one load, the M/M/c estimate predicts the simulated P95 at another within 35 %."""
    service = Service(median_service_seconds=0.06, sigma=0.5, startup_seconds=0.0)
    mean = service.median_service_seconds * math.exp(service.sigma**2 / 2)
    spec = default_spec()
    measured = {}
    for utilisation in (0.5, 0.8):
        rate = utilisation * servers / mean
        spec_fixed = dataclasses.replace(spec, min_replicas=servers, max_replicas=servers)
        run = simulate(spec_fixed, "steady", "baseline", duration=1200.0, base_rps=rate, service=service, seed=5)
        assert set(run.replicas) == {servers}
        p95s = sorted(p for p in run.p95_ms if p is not None)
        measured[utilisation] = (rate, p95s[len(p95s) // 2] / 1000)
    model = fit(0.95, measured[0.5][1], measured[0.5][0], servers)
    predicted = response_quantile(0.95, measured[0.8][0], servers, model)
    assert predicted == pytest.approx(measured[0.8][1], rel=0.35)
    assert isinstance(model, ServiceModel) and model.mean_service_seconds < mean * 1.5
