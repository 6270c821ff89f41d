"""Shared fixtures of the operator tests: the CRD from the chart (the single source) and a base spec."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CRD_PATH = Path(__file__).resolve().parents[2] / "charts" / "subsecond" / "crds" / "latencyslos.yaml"


@pytest.fixture(scope="session")
def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded


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
