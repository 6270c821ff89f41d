"""Fail-open for optional backends (Redis, Qdrant, the embedding service): a call that fails with
the backend's own errors opens a breaker and raises :class:`BackendDown`, which the caller turns
into "do without it"; while the breaker is open the backend is skipped instead of paying its
timeout on every request; after a short cool-down it is tried again.

Only the exception types a backend's client raises for an outage are caught: a bug in our own
code still surfaces as an error, never as a silent bypass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BackendDown(Exception):
    """The named backend failed or is being skipped; the caller carries on without it."""

    def __init__(self, backend: str) -> None:
        super().__init__(backend)
        self.backend = backend


class Breaker:
    def __init__(self, cooldown_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._open_until = 0.0

    def available(self) -> bool:
        return self._clock() >= self._open_until

    def failed(self) -> None:
        self._open_until = self._clock() + self._cooldown


class FailOpen:
    """One optional backend: its name, the exceptions that mean "it is down", and its breaker.

    ``on_bypass`` runs once per skipped or failed call (to count it in the service's metrics);
    ``on_duration`` gets each attempted call's duration in seconds.
    """

    def __init__(
        self,
        backend: str,
        failures: tuple[type[BaseException], ...],
        *,
        on_bypass: Callable[[], None] = lambda: None,
        on_duration: Callable[[float], None] = lambda seconds: None,
        breaker: Breaker | None = None,
    ) -> None:
        self.backend = backend
        self._failures = failures
        self._on_bypass = on_bypass
        self._on_duration = on_duration
        self._breaker = breaker or Breaker()

    def available(self) -> bool:
        return self._breaker.available()

    async def call(self, call: Callable[[], Awaitable[T]]) -> T:
        """Runs ``call``; raises BackendDown when the breaker is open or the call failed with one of
        the backend's own errors (which opens the breaker)."""
        if not self._breaker.available():
            self._on_bypass()
            raise BackendDown(self.backend)
        started = time.perf_counter()
        try:
            return await call()
        except self._failures as error:
            self._breaker.failed()
            self._on_bypass()
            log.warning("backend failed, bypassing", extra={"backend": self.backend, "error": repr(error)})
            raise BackendDown(self.backend) from error
        finally:
            self._on_duration(time.perf_counter() - started)
