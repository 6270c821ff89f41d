"""Fail-open for optional backends: after a failure, skip the backend for a cool-down instead
of paying its timeout on every request, then try it again."""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    def __init__(self, cooldown_seconds: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._cooldown = cooldown_seconds
        self._clock = clock
        self._open_until = 0.0

    def available(self) -> bool:
        return self._clock() >= self._open_until

    def failed(self) -> None:
        self._open_until = self._clock() + self._cooldown
