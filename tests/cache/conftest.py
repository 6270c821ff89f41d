"""Fixtures of the cache tests: a stand-in embedding service (the real redis-server is tests/conftest.py's)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_embedder import FakeEmbedder


@pytest.fixture
async def fake_embedder() -> AsyncIterator[FakeEmbedder]:
    embedder = FakeEmbedder()
    await embedder.start()
    yield embedder
    await embedder.stop()
