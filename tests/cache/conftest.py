"""Fixtures of the cache tests: a real redis-server and a stand-in embedding service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_embedder import FakeEmbedder
from redis_server import redis_server

__all__ = ["fake_embedder", "redis_server"]


@pytest.fixture
async def fake_embedder() -> AsyncIterator[FakeEmbedder]:
    embedder = FakeEmbedder()
    await embedder.start()
    yield embedder
    await embedder.stop()
