"""Shared fixtures of the operator tests: the CRD from the chart (the single source)."""

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
