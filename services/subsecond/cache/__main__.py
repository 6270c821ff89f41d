"""``python -m subsecond.cache``: run the cache service."""

from subsecond.cache.service import definition
from subsecond.cache.settings import CacheSettings
from subsecond.kit.server import run_service

run_service("cache", CacheSettings.from_env, definition)
