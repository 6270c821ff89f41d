"""The limits on generations, the only expensive thing the router starts: per tenant
(``TENANT_MAX_STREAMS``), in all (``MAX_GENERATIONS``), and for those started only because the
cache could not answer (``BYPASS_MAX_GENERATIONS``). Hits and static answers take no slot, so a
tenant whose generations are at its limit still gets its cached answers.

A miss over a limit is refused at once with RESOURCE_EXHAUSTED and a retry hint, rather than
queued behind generations that may take seconds; so is every miss for ``retry_after_seconds``
after the generation service itself said it was at capacity.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from subsecond.kit.errors import ResourceExhausted


@dataclass(frozen=True)
class GenerationLimits:
    per_tenant: int
    total: int
    bypassed: int
    retry_after_seconds: float


class Slot:
    """One generation's place under the limits; released once, by whoever ends the generation."""

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class GenerationSlots:
    """``on_refused`` gets the name of each limit that refused a miss, ``on_running`` the number of
    generations running whenever it changes (for the service's metrics)."""

    def __init__(
        self,
        limits: GenerationLimits,
        *,
        on_refused: Callable[[str], None] = lambda limit: None,
        on_running: Callable[[int], None] = lambda running: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._on_refused = on_refused
        self._on_running = on_running
        self._clock = clock
        self._tenants: Counter[str] = Counter()
        self._total = 0
        self._bypassed = 0
        self._saturated_until = 0.0

    def take(self, tenant: str, *, bypassed: bool) -> Slot:
        """A slot for a new generation; ResourceExhausted (with a retry hint) when a limit is reached.
        ``bypassed``: the cache could not answer, so this generation may be one a hit would have saved."""
        limits = self._limits
        if self._clock() < self._saturated_until:
            self._refuse("saturated", "generation is at capacity")
        if self._total >= limits.total:
            self._refuse("total", f"this router runs {limits.total} generations already")
        if self._tenants[tenant] >= limits.per_tenant:
            self._refuse("tenant", f"tenant {tenant} has {limits.per_tenant} generations running")
        if bypassed and self._bypassed >= limits.bypassed:
            self._refuse("bypassed", f"the cache is unavailable and {limits.bypassed} generations already replace it")
        self._tenants[tenant] += 1
        self._total += 1
        self._bypassed += bypassed
        self._on_running(self._total)

        def release() -> None:
            self._tenants[tenant] -= 1
            if not self._tenants[tenant]:
                del self._tenants[tenant]
            self._total -= 1
            self._bypassed -= bypassed
            self._on_running(self._total)

        return Slot(release)

    def saturated(self) -> None:
        """The generation service refused for capacity: new misses are refused here for a while."""
        self._saturated_until = self._clock() + self._limits.retry_after_seconds

    def refusal(self, message: str) -> ResourceExhausted:
        return ResourceExhausted(message, retry_after_seconds=self._limits.retry_after_seconds)

    def _refuse(self, limit: str, why: str) -> None:
        self._on_refused(limit)
        raise self.refusal(f"{why}; retry later")
