"""Fail-open for optional backends (Redis, Qdrant, the embedding service): a call that fails with
the backend's own errors opens a breaker and raises :class:`BackendDown`, which the caller turns
into "do without it"; while the breaker is open the backend is skipped instead of paying its
timeout on every request; once the cool-down has passed it is *half-open*: one call goes through
as the trial, the others are still skipped, and the trial's outcome closes the breaker or opens it
for another cool-down. So a backend that comes back is used again within one cool-down, and one
that stays down costs one timed-out call per cool-down, not one per request.

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
    """Closed (calls go through), open (skipped until the cool-down ends), then half-open (one trial)."""

    def __init__(self, cooldown_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._closed = True
        self._open_until = 0.0
        self._trial = False

    @property
    def closed(self) -> bool:
        return self._closed

    def available(self) -> bool:
        """Whether a call would go through now (without taking the trial)."""
        return self._closed or (not self._trial and self._clock() >= self._open_until)

    def admit(self) -> bool:
        """Whether this call may go through; while half-open the first one is the trial, and the
        others are refused until its outcome is known."""
        if not self.available():
            return False
        if not self._closed:
            self._trial = True
        return True

    def succeeded(self) -> None:
        self._closed, self._trial = True, False

    def failed(self) -> None:
        self._closed, self._trial = False, False
        self._open_until = self._clock() + self._cooldown

    def abandoned(self) -> None:
        """The call ended without an outcome (cancelled, or a bug of ours): the next call may try."""
        self._trial = False


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

    @property
    def closed(self) -> bool:
        """False from a failure until a trial call succeeds."""
        return self._breaker.closed

    async def call(self, call: Callable[[], Awaitable[T]]) -> T:
        """Runs ``call``; raises BackendDown when the breaker skips it or the call failed with one
        of the backend's own errors (which opens the breaker)."""
        if not self._breaker.admit():
            self._on_bypass()
            raise BackendDown(self.backend)
        started = time.perf_counter()
        try:
            result = await call()
        except self._failures as error:
            self._breaker.failed()
            self._on_bypass()
            log.warning("backend failed, bypassing", extra={"backend": self.backend, "error": repr(error)})
            raise BackendDown(self.backend) from error
        except BaseException:
            self._breaker.abandoned()
            raise
        finally:
            self._on_duration(time.perf_counter() - started)
        was_closed = self._breaker.closed
        self._breaker.succeeded()
        if not was_closed:
            log.info("backend recovered", extra={"backend": self.backend})
        return result
