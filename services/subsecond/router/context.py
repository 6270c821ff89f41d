"""What the parts of one request share without knowing the servicer: the caller's deadline, and
the spawner of work that outlives the request (the write-through after the last chunk)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

# The least a downstream call is given, so that a spent deadline still makes a call that fails
# with DEADLINE_EXCEEDED rather than one with no timeout at all.
_MIN_SECONDS = 0.001


@dataclass(frozen=True)
class Deadline:
    """When the caller stops waiting, on the ``time.perf_counter`` clock."""

    at: float

    @classmethod
    def after(cls, remaining: float | None, default_seconds: float) -> Deadline:
        """The caller's remaining time, or ``default_seconds`` when the call carries no deadline."""
        return cls(time.perf_counter() + (default_seconds if remaining is None else remaining))

    def remaining(self) -> float:
        """The timeout for the next downstream call."""
        return max(self.at - time.perf_counter(), _MIN_SECONDS)


class Tasks:
    """Background work of the service: kept referenced until it ends, and awaited at shutdown."""

    def __init__(self) -> None:
        self._running: set[asyncio.Task[None]] = set()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def drain(self, grace_seconds: float) -> None:
        """Waits for the work still running, at most ``grace_seconds``."""
        if self._running:
            await asyncio.wait(self._running, timeout=grace_seconds)
