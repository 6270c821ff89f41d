import asyncio
import threading
from collections.abc import Sequence

import numpy as np
import pytest

from subsecond.embedding.batching import MicroBatcher, Vectors


class Model:
    """Embeds a text as [len(text)]; records each call's batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def __call__(self, texts: Sequence[str]) -> Vectors:
        self.batches.append(list(texts))
        if "fail" in texts:
            raise ValueError("model failed")
        return np.array([[float(len(text))] for text in texts], dtype=np.float32)


async def test_concurrent_requests_share_a_batch_and_get_their_own_rows() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=16, max_wait=0.05)
    results = await asyncio.gather(batcher.embed(["a"]), batcher.embed(["bb", "ccc"]), batcher.embed(["dddd"]))
    assert [row.ravel().tolist() for row in results] == [[1.0], [2.0, 3.0], [4.0]]
    assert model.batches == [["a", "bb", "ccc", "dddd"]]
    await batcher.close()


async def test_a_full_batch_runs_without_waiting_and_the_bound_holds() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=2, max_wait=10.0)
    results = await asyncio.wait_for(asyncio.gather(*(batcher.embed([t]) for t in ["a", "b", "c", "d"])), 5.0)
    assert len(results) == 4
    assert all(len(batch) <= 2 for batch in model.batches)
    await batcher.close()


async def test_a_model_error_reaches_the_callers_of_that_batch_only() -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=8, max_wait=0.01)
    failing = asyncio.gather(batcher.embed(["fail"]), batcher.embed(["x"]), return_exceptions=True)
    outcome = await failing
    assert all(isinstance(item, ValueError) for item in outcome)
    assert (await batcher.embed(["ok"])).ravel().tolist() == [2.0]
    await batcher.close()


async def test_the_batch_waits_at_most_max_wait() -> None:
    batcher = MicroBatcher(Model(), max_batch=1000, max_wait=0.02)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await batcher.embed(["lonely"])
    assert loop.time() - started < 1.0
    await batcher.close()


def test_cancelled_callers_are_skipped() -> None:
    async def scenario() -> list[list[str]]:
        model = Model()
        batcher = MicroBatcher(model, max_batch=8, max_wait=0.05)
        doomed = asyncio.create_task(batcher.embed(["gone"]))
        kept = asyncio.create_task(batcher.embed(["kept"]))
        await asyncio.sleep(0)
        doomed.cancel()
        await kept
        await batcher.close()
        return model.batches

    assert asyncio.run(scenario()) == [["kept"]]


@pytest.mark.parametrize("max_batch", [1, 3])
async def test_one_request_bigger_than_the_batch_still_runs(max_batch: int) -> None:
    model = Model()
    batcher = MicroBatcher(model, max_batch=max_batch, max_wait=0.01)
    assert (await batcher.embed(["a", "b", "c", "d"])).shape == (4, 1)
    await batcher.close()


class MeetingModel(Model):
    """Each call waits until ``parties`` calls are inside it at once (or fails after a second)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self._barrier = threading.Barrier(parties, timeout=1.0)

    def __call__(self, texts: Sequence[str]) -> Vectors:
        self._barrier.wait()
        return super().__call__(texts)


async def test_with_a_concurrency_of_two_two_batches_run_at_once() -> None:
    # The first batch's call blocks until a second call is inside the model: with one batch at a
    # time it would time out (BrokenBarrierError) instead.
    model = MeetingModel(parties=2)
    batcher = MicroBatcher(model, max_batch=1, max_wait=0.0, concurrency=2)
    results = await asyncio.wait_for(asyncio.gather(batcher.embed(["a"]), batcher.embed(["bb"])), 5.0)
    assert [row.ravel().tolist() for row in results] == [[1.0], [2.0]]
    assert sorted(map(tuple, model.batches)) == [("a",), ("bb",)]
    await batcher.close()

