"""Fixtures of the embedding tests: the real int8 model, built once into the repository's model
cache (the real redis-server for the embedding cache is tests/conftest.py's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from subsecond_tools.embedding_export import export_model

MODEL_DIR = Path(__file__).resolve().parents[2] / ".cache" / "models" / "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return export_model(MODEL_DIR)
