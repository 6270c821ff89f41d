"""Fixtures of the embedding tests: the real int8 model, built once into the repository's model
cache, and a real redis-server for the embedding cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from subsecond.embedding.export import export_model

MODEL_DIR = Path(__file__).resolve().parents[2] / ".cache" / "models" / "all-minilm-l6-v2"


def _cache_tests_module(name: str) -> object:
    """A helper module of tests/cache, loaded by path: test directories are not packages, and the
    redis-server fixture is defined once, there."""
    path = Path(__file__).parents[1] / "cache" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"cache_tests_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


redis_server = _cache_tests_module("redis_server").redis_server  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return export_model(MODEL_DIR)
