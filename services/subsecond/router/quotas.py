"""Per-tenant quotas shared by every router replica: requests a minute and tokens a minute.

Each replica alone can only limit what it sees, so N replicas would allow N times a limit; the
counts live in Redis instead (``QUOTA_REDIS_URL``), one hash per tenant, updated by one Lua script
that reads and writes it atomically, so concurrent replicas never both take the last unit. The
script reads Redis's clock (``TIME``), not the replica's, so replicas with skewed clocks still agree
on the window. The key carries the tenant as a hash tag (``subsecond:quota:{tenant}``): all of a
tenant's state stays in one slot of a Redis Cluster. A tenant is always a validated name (auth.py),
never a pattern.

The window is a sliding-window counter: the count of the current minute plus the previous minute's
count weighted by how much of it is still inside the last 60 seconds. It has the fixed window's cost
(two numbers per quota) without its burst of twice the limit across a minute's boundary. A refusal
carries how long until the estimate leaves room (``retry_after_seconds``).

What is counted where:

- requests, at admission (after authentication), whatever serves them: a workflow counts one per step;
- tokens (prompt and completion), when a generation's usage is known, i.e. its last chunk; a tenant
  whose tokens are over its budget is refused before its next *generation*. Cache hits and static
  answers cost no tokens and are never refused by the token quota: they cost next to nothing to serve.

A request does not ask Redis each time: the script that admits one may also *lease* the replica a few
more of the tenant's requests (at most ``QuotaSettings.lease``, and at most a quarter of the room left
in the window divided among ``QUOTA_REPLICAS``), counted in the shared window at once; the replica
admits from its lease without a round trip until it is spent or the window ends (the script says when,
on Redis's clock). Leased units are counted whether used or not, so replicas together never admit more
than the limit; a lease unused at the window's end only makes the tenant's count look higher (by at most
``lease`` a replica) until it fades out with that minute. Near the limit the leases shrink to nothing and
every request asks Redis, as a limit of a few requests a minute always does. On an exact hit the round
trip cost the router more CPU than the rest of the hit (the router's README, "Where an exact hit's time
goes").

If Redis cannot be asked (kit.failopen: its errors open a breaker, one trial after the cool-down),
each replica decides alone with its share of each limit (``limit / QUOTA_REPLICAS``), counted in
``subsecond_router_quota_fallback_total`` with the gauge ``subsecond_router_quota_fallback_active`` at 1;
the first trial call that succeeds returns to the shared counts. Without a URL the share is all there
is. A limit of 0 is no limit (the default), and then Redis is not asked at all.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from subsecond.kit.errors import ResourceExhausted
from subsecond.kit.failopen import BackendDown, Breaker, FailOpen
from subsecond.kit.redis_client import REDIS_FAILURES, RedisClient, connect
from subsecond.router.metrics import (
    QUOTA_FALLBACK,
    QUOTA_FALLBACK_ACTIVE,
    QUOTA_REFUSALS,
    QUOTA_REQUESTS,
    QUOTA_TOKENS,
    child,
)

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60.0
# Per-tenant metrics are labelled with the tenant only for configured tenants (keys, overrides, the
# anonymous one): a bounded set; anything else would be "other".
OTHER_TENANT = "other"
REQUESTS, TOKENS = "requests", "tokens"
_FIELDS = {REQUESTS: "r", TOKENS: "t"}

# KEYS[1]: the tenant's hash. ARGV: the quota's field prefix, its limit (0: none), the room a call needs,
# what it adds when admitted, the window in ms, the most units to lease besides (0: none), the replicas
# sharing the room. Fields <f>w, <f>c, <f>p: the window's index, its count, the previous window's count.
# Returns {0, units leased (counted too), ms until the window ends} when admitted, {ms until the room is
# there, 0, 0} when not. Mirrors _Window.take below (the fallback, which leases nothing), which the
# tests hold to the same behaviour.
_TAKE = """
local f, limit, need, add, window = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local lease, replicas = tonumber(ARGV[6]), tonumber(ARGV[7])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local index = math.floor(now / window)
local state = redis.call('HMGET', KEYS[1], f .. 'w', f .. 'c', f .. 'p')
local stored, current, previous = tonumber(state[1]) or index, tonumber(state[2]) or 0, tonumber(state[3]) or 0
if stored == index - 1 then
  previous, current = current, 0
elseif stored ~= index then
  previous, current = 0, 0
end
local start = index * window
local spare = 0
if limit > 0 then
  local elapsed = (now - start) / window
  local estimate = previous * (1 - elapsed) + current
  if estimate + need > limit then
    if current + need <= limit then
      return {math.max(1, math.ceil(start + window * (1 - (limit - need - current) / previous) - now)), 0, 0}
    end
    return {math.max(1, math.ceil(start + window * (2 - (limit - need) / current) - now)), 0, 0}
  end
  spare = math.max(0, math.min(lease, math.floor((limit - estimate - need) / (4 * replicas))))
end
if add + spare > 0 then
  redis.call('HSET', KEYS[1], f .. 'w', index, f .. 'c', current + add + spare, f .. 'p', previous)
  redis.call('PEXPIRE', KEYS[1], 2 * window)
end
return {0, spare, start + window - now}
"""


@dataclass(frozen=True)
class Quota:
    """A tenant's limits; 0 is no limit."""

    requests_per_minute: int = 0
    tokens_per_minute: int = 0

    def share(self, replicas: int) -> Quota:
        """One replica's part of the limits (at least 1 where there is a limit)."""

        def part(limit: int) -> int:
            return max(1, limit // replicas) if limit else 0

        return Quota(part(self.requests_per_minute), part(self.tokens_per_minute))

    def limit(self, quota: str) -> int:
        return self.requests_per_minute if quota == REQUESTS else self.tokens_per_minute


@dataclass(frozen=True)
class QuotaSettings:
    # Empty: no shared counts, each replica enforces its share alone.
    redis_url: str = ""
    default: Quota = Quota()
    overrides: Mapping[str, Quota] = field(default_factory=dict)
    # Replicas sharing the limits: a replica's share while Redis cannot be asked is limit / replicas.
    replicas: int = 1
    redis_timeout_seconds: float = 0.05
    # After a Redis failure, how long the replicas decide alone before one trial call.
    redis_cooldown_seconds: float = 1.0
    # The most requests a replica leases from the shared count at once (0: every request asks Redis).
    lease: int = 16

    def of(self, tenant: str) -> Quota:
        return self.overrides.get(tenant, self.default)


def parse_overrides(raw: Mapping[str, str]) -> dict[str, Quota]:
    """``tenant -> "rpm/tpm"`` (from ``QUOTA_OVERRIDES=tenant=rpm/tpm,...``); ValueError names the tenant."""
    overrides: dict[str, Quota] = {}
    for tenant, value in raw.items():
        requests, slash, tokens = value.partition("/")
        try:
            quota = Quota(int(requests), int(tokens))
        except ValueError:
            quota = Quota(-1, -1)
        if not slash or quota.requests_per_minute < 0 or quota.tokens_per_minute < 0:
            raise ValueError(f"{tenant}={value}: not requests/tokens a minute, two integers of at least 0")
        overrides[tenant] = quota
    return overrides


class _Window:
    """One quota's sliding-window counter in this replica (the fallback): the script's logic, in Python."""

    def __init__(self, window_seconds: float) -> None:
        self._window = window_seconds
        self._index = 0
        self._current = 0
        self._previous = 0

    def take(self, now: float, limit: int, need: int, add: int) -> float:
        """0 when admitted (``add`` counted), else the seconds until ``need`` fits under ``limit``."""
        index = math.floor(now / self._window)
        if self._index == index - 1:
            self._previous, self._current = self._current, 0
        elif self._index != index:
            self._previous, self._current = 0, 0
        self._index = index
        if limit and need > limit:
            # More at once than this replica's share (the fallback's, smaller than the limit the
            # request passed): no wait makes room here; the shared count may, once it is back.
            return self._window
        start = index * self._window
        if limit and self._previous * (1 - (now - start) / self._window) + self._current + need > limit:
            if self._current + need <= limit:
                return start + self._window * (1 - (limit - need - self._current) / self._previous) - now
            return start + self._window * (2 - (limit - need) / self._current) - now
        self._current += add
        return 0.0


@dataclass
class _Lease:
    """Requests of one tenant this replica took from the shared count ahead of time."""

    units: int
    # Its window's end, on this replica's monotonic clock.
    until: float


class Quotas:
    """The quota checks of one router. ``tenants``: the configured tenants (metric labels)."""

    def __init__(
        self, settings: QuotaSettings, tenants: frozenset[str], *, clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self._labels = tenants | frozenset(settings.overrides)
        self._clock = clock
        self._local: dict[tuple[str, str], _Window] = {}
        self._leases: dict[str, _Lease] = {}
        self._redis: RedisClient | None = None
        if settings.redis_url:
            # No retries: a failed call is decided locally at once rather than holding the request.
            self._redis = connect(
                settings.redis_url, timeout_seconds=settings.redis_timeout_seconds, retry=Retry(NoBackoff(), 0)
            )
        self._take_script = self._redis.register_script(_TAKE) if self._redis is not None else None
        self._backend = FailOpen(
            "quota-redis",
            REDIS_FAILURES,
            on_bypass=QUOTA_FALLBACK.inc,
            breaker=Breaker(settings.redis_cooldown_seconds),
        )

    def label(self, tenant: str) -> str:
        return tenant if tenant in self._labels else OTHER_TENANT

    async def admit(self, tenant: str, requests: int = 1) -> None:
        """Counts ``requests`` against the tenant's request rate; ResourceExhausted when over it."""
        limit = self._settings.of(tenant).requests_per_minute
        if limit and requests > limit:  # no wait would make room: no retry hint
            QUOTA_REFUSALS.labels(self.label(tenant), REQUESTS).inc()
            raise ResourceExhausted(
                f"tenant {tenant}: {requests} requests at once are over its limit of {limit} a minute"
            )
        if limit and not self._from_lease(tenant, requests):  # no limit: nothing to take (an exact hit's case)
            await self._take(tenant, REQUESTS, need=requests, add=requests, lease=self._settings.lease)
        child(QUOTA_REQUESTS, self.label(tenant)).inc(requests)

    def _from_lease(self, tenant: str, requests: int) -> bool:
        """Takes ``requests`` from the tenant's lease when it holds that many still in their window."""
        lease = self._leases.get(tenant)
        if lease is None or lease.units < requests or time.monotonic() >= lease.until:
            return False
        lease.units -= requests
        return True

    async def check_tokens(self, tenant: str) -> None:
        """ResourceExhausted when the tenant has no token left this minute (before a generation)."""
        await self._take(tenant, TOKENS, need=1, add=0)

    async def spend_tokens(self, tenant: str, tokens: int) -> None:
        """Counts a finished generation's tokens; never refuses (the next generation is refused instead)."""
        child(QUOTA_TOKENS, self.label(tenant)).inc(tokens)
        if tokens > 0:
            await self._take(tenant, TOKENS, need=0, add=tokens)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()

    async def _take(self, tenant: str, quota: str, *, need: int, add: int, lease: int = 0) -> None:
        limit = self._settings.of(tenant).limit(quota)
        if not limit:
            return
        wait = await self._shared(tenant, quota, limit, need, add, lease)
        if wait is None:
            local_limit = self._settings.of(tenant).share(self._settings.replicas).limit(quota)
            window = self._local.setdefault((tenant, quota), _Window(WINDOW_SECONDS))
            wait = window.take(self._clock(), local_limit, need, add)
        if wait > 0:
            QUOTA_REFUSALS.labels(self.label(tenant), quota).inc()
            raise ResourceExhausted(
                f"tenant {tenant} is over its quota of {limit} {quota} a minute", retry_after_seconds=wait
            )

    async def _shared(self, tenant: str, quota: str, limit: int, need: int, add: int, lease: int) -> float | None:
        """The shared counts' answer (seconds to wait, 0: admitted, with ``lease`` units at most
        leased besides), or None: decide locally."""
        script = self._take_script
        if script is None:
            return None
        key = f"subsecond:quota:{{{tenant}}}"
        args = (_FIELDS[quota], limit, need, add, int(WINDOW_SECONDS * 1000), lease, self._settings.replicas)
        try:
            wait_ms, leased, window_left_ms = await self._backend.call(lambda: script(keys=[key], args=args))
        except BackendDown:
            QUOTA_FALLBACK_ACTIVE.set(1)
            return None
        QUOTA_FALLBACK_ACTIVE.set(0)
        if int(leased) > 0:
            until = time.monotonic() + int(window_left_ms) / 1000.0
            held = self._leases.get(tenant)
            units = held.units if held is not None and held.until > time.monotonic() else 0
            self._leases[tenant] = _Lease(units + int(leased), until)
        return int(wait_ms) / 1000.0
