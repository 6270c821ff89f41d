"""Fixtures every test folder may use (test folders are not packages: this folder is on sys.path)."""

from redis_server import redis_server

__all__ = ["redis_server"]
