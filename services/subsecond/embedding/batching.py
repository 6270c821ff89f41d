"""Micro-batching: concurrent requests share one model call.

The first waiting text opens a batch; the batch runs when it holds ``max_batch`` texts or
``max_wait`` seconds after it opened, whichever comes first. At most ``concurrency`` batches run at
a time, each on a worker thread, so the model is never oversubscribed (one batch per core the
service is given), and the event loop stays free while they run. With two, a batch starts with
what arrived while the other was running instead of waiting for it to end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


@dataclass
class _Pending:
    texts: Sequence[str]
    future: asyncio.Future[Vectors]


class MicroBatcher:
    def __init__(
        self,
        embed: Callable[[Sequence[str]], Vectors],
        *,
        max_batch: int,
        max_wait: float,
        on_batch: Callable[[int, float], None] | None = None,
        concurrency: int = 1,
    ) -> None:
        self._embed = embed
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._on_batch = on_batch
        self._queue: list[_Pending] = []
        self._queued_texts = 0
        self._wakeup = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="embed")
        self._slots = asyncio.Semaphore(concurrency)
        self._running: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None

    async def embed(self, texts: Sequence[str]) -> Vectors:
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        future: asyncio.Future[Vectors] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(texts, future))
        self._queued_texts += len(texts)
        self._wakeup.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            await self._slots.acquire()  # a free worker; the texts arriving meanwhile join this batch
            deadline = loop.time() + self._max_wait
            while self._queued_texts < self._max_batch and (remaining := deadline - loop.time()) > 0:
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
            batch, self._queue = self._take_batch()
            self._queued_texts = sum(len(p.texts) for p in self._queue)
            if not self._queue:
                self._wakeup.clear()
            live = [pending for pending in batch if not pending.future.cancelled()]
            if not live:
                self._slots.release()
                continue
            task = asyncio.create_task(self._run_batch(live))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, live: list[_Pending]) -> None:
        """Runs one batch on a worker thread and answers its callers; frees the worker's slot."""
        try:
            texts = [text for pending in live for text in pending.texts]
            started = time.perf_counter()
            try:
                vectors = await asyncio.get_running_loop().run_in_executor(self._executor, self._embed, texts)
            except Exception as error:  # the model failed: every caller of this batch hears why
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                return
            if self._on_batch is not None:
                self._on_batch(len(texts), time.perf_counter() - started)
            offset = 0
            for pending in live:
                if not pending.future.done():
                    pending.future.set_result(vectors[offset : offset + len(pending.texts)])
                offset += len(pending.texts)
        finally:
            self._slots.release()

    def _take_batch(self) -> tuple[list[_Pending], list[_Pending]]:
        """Whole requests, oldest first, up to max_batch texts (at least one request)."""
        taken, count = 0, 0
        for pending in self._queue:
            if taken and count + len(pending.texts) > self._max_batch:
                break
            taken += 1
            count += len(pending.texts)
        return self._queue[:taken], self._queue[taken:]

    async def close(self) -> None:
        tasks = [*self._running, *([self._runner] if self._runner is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)
