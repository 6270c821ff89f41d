"""The Redis embedding cache, with the round trips of concurrent calls shared.

A read that finds no other of its tenant in flight is sent at once (a lone lookup, such as a
semantic lookup's, waits for nothing); the reads of that tenant that arrive while one is in flight
are sent together, as one MGET, when it returns. Per tenant because a tenant's keys share a hash tag:
an MGET of one tenant's keys stays in one slot of a Redis Cluster, where keys of two slots would be
refused (CROSSSLOT). Writes go the same way: those queued while a pipeline is in flight make the next
one. With 16 callers of one text each, every call paid an MGET and a pipeline of its own, about 8%
of the service's CPU time per text (Redis on against off, benchmarks/embedding_throughput.py).

Redis is optional (kit.failopen): when it fails with its own errors, reads find nothing and writes
are dropped, and it is skipped for a cool-down. Vectors are kept as their float32 bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from subsecond.kit.failopen import BackendDown, FailOpen
from subsecond.kit.redis_client import REDIS_FAILURES, RedisClient

log = logging.getLogger(__name__)

Vector = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.float32]
# A read waiting for its tenant's next MGET: its keys, and the future its vectors are set on.
_Read = tuple[Sequence[str], "asyncio.Future[list[Vector | None]]"]


class EmbeddingCache:
    def __init__(self, redis: RedisClient, *, ttl_seconds: int, on_bypass: Callable[[], None]) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._backend = FailOpen("redis", REDIS_FAILURES, on_bypass=on_bypass)
        # The tenants with an MGET in flight, and the reads queued for each one's next MGET.
        self._queued_reads: dict[str, list[_Read]] = {}
        self._queued_writes: list[tuple[str, bytes]] = []
        self._tasks: set[asyncio.Task[None]] = set()  # the next MGET, the writer: awaited at close
        self._writer: asyncio.Task[None] | None = None

    async def get(self, tenant: str, keys: Sequence[str]) -> list[Vector | None]:
        """Each key's vector, or None where it is not cached (or Redis is being skipped); the keys are
        ``tenant``'s (one hash tag)."""
        if (queued := self._queued_reads.get(tenant)) is not None:
            future: asyncio.Future[list[Vector | None]] = asyncio.get_running_loop().create_future()
            queued.append((keys, future))
            return await future
        self._queued_reads[tenant] = []
        try:
            return await self._mget(keys)
        finally:
            self._next_read(tenant)

    def put(self, keys: Sequence[str], vectors: Vectors) -> None:
        """Stores these vectors after the caller has its answer (nobody waits for the write)."""
        self._queued_writes.extend(zip(keys, (vector.astype(np.float32).tobytes() for vector in vectors), strict=True))
        if self._writer is None:
            self._writer = self._start(self._write_queued())

    async def close(self) -> None:
        """Waits for the reads and writes still queued."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)  # each logged already

    async def _mget(self, keys: Sequence[str]) -> list[Vector | None]:
        redis = self._redis
        try:
            raw = await self._backend.call(lambda: redis.mget(keys))
        except BackendDown:
            return [None] * len(keys)
        return [np.frombuffer(value, dtype=np.float32) if isinstance(value, bytes) else None for value in raw]

    def _next_read(self, tenant: str) -> None:
        """The tenant's reads queued while its last MGET was in flight go as the next one, or its
        reading stops."""
        queued = self._queued_reads.pop(tenant)
        if queued:
            self._queued_reads[tenant] = []
            self._start(self._read_queued(tenant, queued))

    async def _read_queued(self, tenant: str, queued: list[_Read]) -> None:
        try:
            found = await self._mget([key for keys, _ in queued for key in keys])
        except Exception as error:  # not Redis failing (that is a miss): every waiting caller hears it
            for _, future in queued:
                if not future.done():
                    future.set_exception(error)
        else:
            offset = 0
            for keys, future in queued:
                if not future.done():  # a caller that gave up (its deadline) wants nothing
                    future.set_result(found[offset : offset + len(keys)])
                offset += len(keys)
        finally:
            self._next_read(tenant)

    async def _write_queued(self) -> None:
        try:
            while self._queued_writes:
                writes, self._queued_writes = self._queued_writes, []
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, value in writes:
                        pipe.set(key, value, ex=self._ttl)
                    with contextlib.suppress(BackendDown):  # the vectors are computed; not caching them is fine
                        await self._backend.call(pipe.execute)
        finally:
            self._writer = None

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:  # not Redis failing: a bug
            log.error("embedding-cache read or write failed", exc_info=error)
