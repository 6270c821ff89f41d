"""Coalescing: identical concurrent misses share one generation.

The first request for a key starts a *flight* that runs the generation once and buffers its
events; every request for the same key while the flight is running listens to it from the
first event. A listener that leaves (cancelled, deadline) stops listening; when the last one
leaves before the end, the generation itself is cancelled. A flight is forgotten as soon as
it ends, so later requests go to the cache (or start a new flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Generic, TypeVar

E = TypeVar("E")


class Flight(Generic[E]):
    def __init__(self, produce: AsyncIterator[E], on_end: Callable[[], None]) -> None:
        self._events: list[E] = []
        self._error: BaseException | None = None
        self._finished = False
        self._changed = asyncio.Event()
        self._listeners = 0
        self._on_end: list[Callable[[], None]] = [on_end]
        self._task = asyncio.create_task(self._run(produce))
        # Also when the task is cancelled before its first step (its body, and so its finally, never runs).
        self._task.add_done_callback(lambda task: self._end())

    async def _run(self, produce: AsyncIterator[E]) -> None:
        try:
            async for event in produce:
                self._events.append(event)
                self._notify()
        except asyncio.CancelledError:
            self._error = asyncio.CancelledError()
            raise
        except Exception as error:  # handed to every listener, who maps it to a status
            self._error = error
        finally:
            self._end()

    def _end(self) -> None:
        if self._finished:
            return
        self._finished = True
        if self._error is None and self._task.cancelled():
            self._error = asyncio.CancelledError()
        for callback in self._on_end:
            callback()
        self._notify()

    def when_ended(self, callback: Callable[[], None]) -> None:
        """Runs ``callback`` once the flight has ended, however it ended (at once if it has)."""
        if self._finished:
            callback()
        else:
            self._on_end.append(callback)

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def listeners(self) -> int:
        return self._listeners

    def listen(self) -> AsyncGenerator[E, None]:
        """Every event from the start, then the flight's error (if any) is raised. The listener
        counts from this call on, so a flight is not cancelled between joining and iterating."""
        self._listeners += 1
        return self._events_from_start()

    async def _events_from_start(self) -> AsyncGenerator[E, None]:
        seen = 0
        try:
            while True:
                while seen < len(self._events):
                    seen += 1
                    yield self._events[seen - 1]
                if self._finished:
                    if self._error is not None:
                        raise self._error
                    return
                await self._changed.wait()
        finally:
            self._listeners -= 1
            if self._listeners == 0 and not self._finished:
                self._task.cancel()


class Coalescer(Generic[E]):
    def __init__(self) -> None:
        self._flights: dict[str, Flight[E]] = {}

    def join(self, key: str, start: Callable[[], AsyncIterator[E]]) -> tuple[Flight[E], bool]:
        """The running flight for ``key`` (and False), or a new one started with ``start()`` (and True)."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = Flight(start(), on_end=lambda: self._forget(key))
        self._flights[key] = flight
        return flight, True

    def _forget(self, key: str) -> None:
        del self._flights[key]

    def __len__(self) -> int:
        return len(self._flights)
