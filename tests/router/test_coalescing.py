import asyncio
from collections.abc import AsyncIterator

import pytest

from subsecond.router.coalescing import Coalescer


class Source:
    """A generation stand-in the test drives event by event."""

    def __init__(self) -> None:
        self.started = 0
        self.cancelled = False
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def run(self) -> AsyncIterator[str]:
        self.started += 1
        try:
            while (item := await self.queue.get()) is not None:
                if item == "boom":
                    raise RuntimeError("generation failed")
                yield item
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def collect(iterator: AsyncIterator[str]) -> list[str]:
    return [item async for item in iterator]


async def test_identical_requests_share_one_generation_and_all_events() -> None:
    coalescer: Coalescer[str] = Coalescer()
    source = Source()
    first, leader = coalescer.join("k", source.run)
    first_events = asyncio.create_task(collect(first.listen()))
    await source.queue.put("a")
    await asyncio.sleep(0.01)
    second, second_leader = coalescer.join("k", source.run)
    assert (leader, second_leader, second is first) == (True, False, True)
    second_events = asyncio.create_task(collect(second.listen()))
    await source.queue.put("b")
    await source.queue.put(None)
    assert await first_events == ["a", "b"]
    assert await second_events == ["a", "b"]  # the late joiner saw the start too
    assert source.started == 1
    assert len(coalescer) == 0  # forgotten once finished


async def test_different_keys_do_not_share() -> None:
    coalescer: Coalescer[str] = Coalescer()
    one, two = Source(), Source()
    a, _ = coalescer.join("a", one.run)
    b, _ = coalescer.join("b", two.run)
    assert a is not b
    for source in (one, two):
        await source.queue.put(None)
    assert await collect(a.listen()) == [] and await collect(b.listen()) == []


async def test_generation_cancelled_only_when_the_last_listener_leaves() -> None:
    coalescer: Coalescer[str] = Coalescer()
    source = Source()
    flight, _ = coalescer.join("k", source.run)
    one = asyncio.create_task(collect(flight.listen()))
    two = asyncio.create_task(collect(flight.listen()))
    await source.queue.put("a")
    await asyncio.sleep(0.01)
    one.cancel()
    await asyncio.sleep(0.01)
    assert not source.cancelled and flight.listeners == 1
    two.cancel()
    await asyncio.sleep(0.01)
    assert source.cancelled
    assert len(coalescer) == 0


async def test_a_failure_reaches_every_listener() -> None:
    coalescer: Coalescer[str] = Coalescer()
    source = Source()
    flight, _ = coalescer.join("k", source.run)
    listeners = [asyncio.create_task(collect(flight.listen())) for _ in range(2)]
    await source.queue.put("a")
    await source.queue.put("boom")
    for listener in listeners:
        with pytest.raises(RuntimeError, match="generation failed"):
            await listener


async def test_a_flight_cancelled_before_its_first_step_still_ends_and_is_forgotten() -> None:
    """The last listener can leave before the flight's task has run once: its body (and finally)
    never runs, yet the flight must end, tell its listeners and be forgotten, or every identical
    request after it would wait on a flight that never moves (and its generation slot never return)."""
    coalescer: Coalescer[int] = Coalescer()
    started: list[bool] = []
    released: list[bool] = []

    async def produce() -> AsyncIterator[int]:
        started.append(True)
        yield 1

    flight, _ = coalescer.join("k", produce)
    flight.when_ended(lambda: released.append(True))
    flight._task.cancel()  # what the last listener leaving does; reached here before the task's first step
    for _ in range(3):
        await asyncio.sleep(0)

    assert (started, released, len(coalescer)) == ([], [True], 0)
    with pytest.raises(asyncio.CancelledError):
        async for _ in flight.listen():
            pass
    late: list[bool] = []
    flight.when_ended(lambda: late.append(True))
    assert late == [True]  # registered after the end: called at once
