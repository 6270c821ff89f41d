"""The kit's fail-open helper: which errors mean "the backend is down", the breaker's cool-down,
and what the callbacks see. The backend here is a coroutine that fails on demand; the services'
tests run the helper against real Redis, gRPC and Qdrant failures."""

from __future__ import annotations

import asyncio

import pytest

from subsecond.kit.failopen import BackendDown, Breaker, FailOpen


class Backend:
    """A backend call that counts its attempts and fails with the given error while it is set."""

    def __init__(self) -> None:
        self.attempts = 0
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.attempts += 1
        if self.error is not None:
            raise self.error
        return "answer"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorded:
    def __init__(self) -> None:
        self.bypasses = 0
        self.durations: list[float] = []

    def bypass(self) -> None:
        self.bypasses += 1


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def recorded() -> Recorded:
    return Recorded()


@pytest.fixture
def store(clock: Clock, recorded: Recorded) -> FailOpen:
    return FailOpen(
        "store",
        (ConnectionError, TimeoutError),
        on_bypass=recorded.bypass,
        on_duration=recorded.durations.append,
        breaker=Breaker(cooldown_seconds=5.0, clock=clock),
    )


async def test_a_working_backend_answers_and_its_time_is_reported(store: FailOpen, recorded: Recorded) -> None:
    backend = Backend()

    assert await store.call(backend) == "answer"

    assert backend.attempts == 1
    assert recorded.bypasses == 0
    assert len(recorded.durations) == 1
    assert recorded.durations[0] >= 0.0


async def test_the_backends_own_error_is_a_bypass_naming_it(store: FailOpen, recorded: Recorded) -> None:
    backend = Backend()
    backend.error = ConnectionError("refused")

    with pytest.raises(BackendDown) as down:
        await store.call(backend)

    assert down.value.backend == "store"
    assert down.value.__cause__ is backend.error
    assert recorded.bypasses == 1
    assert len(recorded.durations) == 1  # the failed attempt took time too
    assert not store.available()


async def test_any_other_error_is_not_a_bypass_and_leaves_the_breaker_closed(
    store: FailOpen, recorded: Recorded
) -> None:
    """A bug (here a TypeError) must surface, not be swallowed as "the backend is down"."""
    backend = Backend()
    backend.error = TypeError("unsupported operand")

    with pytest.raises(TypeError, match="unsupported operand"):
        await store.call(backend)

    assert recorded.bypasses == 0
    assert store.available()
    backend.error = None
    assert await store.call(backend) == "answer"


async def test_a_failed_backend_is_skipped_for_its_cool_down_then_tried_again(
    store: FailOpen, clock: Clock, recorded: Recorded
) -> None:
    backend = Backend()
    backend.error = TimeoutError()
    with pytest.raises(BackendDown):
        await store.call(backend)
    backend.error = None  # it recovers at once, but the breaker does not know yet

    clock.now += 4.9
    with pytest.raises(BackendDown):
        await store.call(backend)
    assert backend.attempts == 1  # skipped: not called, not timed
    assert recorded.bypasses == 2
    assert len(recorded.durations) == 1

    clock.now += 0.1
    assert await store.call(backend) == "answer"
    assert backend.attempts == 2
    assert store.available()


async def test_after_the_cool_down_one_trial_goes_through_and_the_others_wait_for_its_outcome(
    store: FailOpen, clock: Clock
) -> None:


    backend = Backend()
    backend.error = TimeoutError()
    with pytest.raises(BackendDown):
        await store.call(backend)
    clock.now += 5.0
    backend.error = None
    release = asyncio.Event()

    async def slow_trial() -> str:
        await release.wait()
        return await backend()

    trial = asyncio.ensure_future(store.call(slow_trial))
    await asyncio.sleep(0)
    with pytest.raises(BackendDown):  # half-open: the trial is out, this call is skipped
        await store.call(backend)
    assert not store.closed
    release.set()
    assert await trial == "answer"
    assert store.closed  # the trial succeeded: closed again, every call goes through
    assert await store.call(backend) == "answer"


async def test_a_cancelled_trial_frees_the_slot_for_the_next_call(store: FailOpen, clock: Clock) -> None:


    backend = Backend()
    backend.error = TimeoutError()
    with pytest.raises(BackendDown):
        await store.call(backend)
    clock.now += 5.0
    backend.error = None

    async def never() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    trial = asyncio.ensure_future(store.call(never))
    await asyncio.sleep(0)
    trial.cancel()
    with pytest.raises(asyncio.CancelledError):
        await trial
    assert await store.call(backend) == "answer"  # without the release, half-open would skip it forever
    assert store.closed
