"""The per-tenant limit on open streams (``TENANT_MAX_STREAMS``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from subsecond.kit.errors import ResourceExhausted


class TenantStreams:
    def __init__(self, max_streams: int) -> None:
        self._max = max_streams
        self._open: Counter[str] = Counter()

    @contextmanager
    def stream(self, tenant: str) -> Iterator[None]:
        """Holds one of the tenant's streams for the block; ResourceExhausted when none is left."""
        if self._open[tenant] >= self._max:
            raise ResourceExhausted(f"tenant {tenant} has {self._max} streams open; retry later")
        self._open[tenant] += 1
        try:
            yield
        finally:
            self._open[tenant] -= 1
