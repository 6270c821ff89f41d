"""``python -m subsecond.embedding``: run the embedding service."""

from subsecond.embedding.service import definition
from subsecond.embedding.settings import EmbeddingSettings
from subsecond.kit.server import run_service

run_service("embedding", EmbeddingSettings.from_env, definition)
