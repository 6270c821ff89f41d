"""A LatencySLO spec as a user writes it, for the operator's tests (not in conftest.py: tests/chart has one
too, and a `from conftest import ...` finds whichever was imported first)."""

from __future__ import annotations

from typing import Any


def base_spec(**overrides: Any) -> dict[str, Any]:
    """A LatencySLO spec as a user writes it: only the required fields and a few common ones."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "subsecond-router"},
        "objective": {"thresholdMs": 300, "metric": "subsecond_router_request_duration_seconds"},
        "minReplicas": 1,
        "maxReplicas": 10,
    }
    spec.update(overrides)
    return spec
