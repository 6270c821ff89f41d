"""The one place that builds Redis clients: a standalone server, a Redis Cluster or a Sentinel group,
chosen by the URL's scheme.

- ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS), ``unix://...``: one server
  (redis-py's own URL syntax and query options);
- ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://`` with TLS): a
  Redis Cluster (or a managed Redis in cluster mode), found from any of the seed nodes; the client
  follows the slot map and its changes (a failover moves a primary);
- ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``
  (``rediss+sentinel://`` when the primary speaks TLS): the primary that the sentinels name for
  service_name, asked again on every new connection, so a failover is followed. ``?sentinel_password=``
  gives the sentinels' own password when they have one (else they are asked without one).

Credentials travel in the URL (percent-encoded), as the chart builds it from a Secret; a URL is
therefore never logged.

Every key the services write carries its tenant as a hash tag (``{acme}``), so a tenant's keys share
one slot of a cluster: a multi-key command (an embedding request's MGET, a quota's script) never
crosses slots. :data:`REDIS_FAILURES` are the errors that mean "Redis is down or moving" for any of
the three (kit.failopen catches them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import redis.asyncio as redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError

# A client of any of the three kinds; they share the commands the services use.
RedisClient = redis.Redis | RedisCluster

# RedisError covers a server's error replies and lost connections (a failover's MASTERDOWN, READONLY
# and TRYAGAIN included); RedisClusterException is not one of them, and is what a cluster client raises
# when no seed node answers or no node serves a slot (and for a command whose keys cross slots, which
# the tenant hash tags rule out: a multi-key command here names one tenant's keys); OSError is a
# refused or reset socket.
REDIS_FAILURES: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)

STANDALONE_SCHEMES = ("redis", "rediss", "unix")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379


@dataclass(frozen=True)
class RedisTarget:
    """What a URL names: its mode, the nodes to ask first, credentials and, for Sentinel, the service."""

    mode: str  # "standalone", "cluster" or "sentinel"
    nodes: tuple[tuple[str, int], ...]
    username: str | None = None
    password: str | None = None
    tls: bool = False
    service_name: str = ""
    db: int = 0
    sentinel_password: str | None = None


def parse_url(url: str) -> RedisTarget:
    """The target of a ``redis+cluster://`` or ``redis+sentinel://`` URL (a standalone URL is only
    checked for its scheme: redis-py parses it). ValueError says what is wrong, without the URL,
    which may hold a password."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("a Redis URL needs a scheme: redis://, rediss://, redis+cluster:// or redis+sentinel://")
    if scheme in STANDALONE_SCHEMES:
        return RedisTarget("standalone", ())
    if scheme not in CLUSTER_SCHEMES + SENTINEL_SCHEMES:
        raise ValueError(f"unknown Redis URL scheme {scheme!r}: use redis, rediss, redis+cluster or redis+sentinel")
    sentinel = scheme in SENTINEL_SCHEMES
    rest, _, query = rest.partition("?")
    location, _, path = rest.partition("/")
    userinfo, at, hosts = location.rpartition("@")
    username, password = _credentials(userinfo) if at else (None, None)
    nodes = tuple(_node(item, DEFAULT_SENTINEL_PORT if sentinel else DEFAULT_PORT) for item in hosts.split(","))
    options = {name: values[-1] for name, values in parse_qs(query).items()}
    tls = scheme.startswith("rediss")
    if not sentinel:
        if path.strip("/") not in ("", "0"):
            raise ValueError("a Redis Cluster has only database 0")
        _no_options(options, allowed=())
        return RedisTarget("cluster", nodes, username, password, tls)
    service_name, _, db = path.strip("/").partition("/")
    if not service_name:
        raise ValueError("a Sentinel URL names the primary's service: redis+sentinel://host:26379/mymaster")
    if db and not db.isdigit():
        raise ValueError(f"database {db!r} is not a number")
    _no_options(options, allowed=("sentinel_password",))
    return RedisTarget(
        "sentinel", nodes, username, password, tls, service_name, int(db or 0), options.get("sentinel_password")
    )


def connect(url: str, *, timeout_seconds: float, retry: Retry | None = None) -> RedisClient:
    """A client for url; nothing connects until the first command (a service starts while Redis is
    down, and fails open meanwhile). timeout_seconds bounds connecting and each reply; retry, when
    given, replaces redis-py's default retries (a caller that would rather fail open at once gives
    none)."""
    options: dict[str, Any] = {"socket_timeout": timeout_seconds, "socket_connect_timeout": timeout_seconds}
    if retry is not None:
        options["retry"] = retry
    target = parse_url(url)
    if target.mode == "standalone":
        return redis.Redis.from_url(url, **options)
    credentials: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        # redis-py's cluster client retries a command three times by default, re-reading the slot map
        # in between, with back-off: through a failover that held a lookup for seconds (measured: 3.4 s)
        # where it should fail open at once. Without retries a command that finds its node gone fails
        # at once and marks the slot map stale; the next command (after the caller's cool-down) reads
        # it again, which finds the promoted replica once there is one. Re-reading costs 0.1-0.2 s of
        # CPU in redis-py (measured on a loaded machine), so one a cool-down, not two a command.
        # MOVED and ASK redirections are followed either way.
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            ssl=target.tls,
            **credentials,
            **options,
        )
    sentinels = Sentinel(
        list(target.nodes),
        sentinel_kwargs={"password": target.sentinel_password, **options},
        ssl=target.tls,
        db=target.db,
        **credentials,
        **options,
    )
    client = sentinels.master_for(target.service_name, redis_class=_SentinelPrimary)
    client.sentinels = sentinels
    return client


class _SentinelPrimary(redis.Redis):
    """The primary a Sentinel group names; closing it also closes the connections to the sentinels."""

    sentinels: Sentinel

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in self.sentinels.sentinels:
            await sentinel.aclose()


def _credentials(userinfo: str) -> tuple[str | None, str | None]:
    user, colon, password = userinfo.partition(":")
    return (unquote(user) or None), (unquote(password) if colon else None)


def _node(item: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6 address]:port``."""
    item = item.strip()
    if item.startswith("["):
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError("a node without a host")
    if port and not port.isdigit():
        raise ValueError(f"port {port!r} of {host} is not a number")
    return host, int(port) if port else default_port


def _no_options(options: Mapping[str, str], *, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown URL options {unknown}; allowed: {list(allowed) or 'none'}")
