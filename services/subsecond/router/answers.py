"""What every way of answering produces: a stream of pieces of text, the last of which carries the
answer's outcome.

A static route, a cache hit and a generation all answer in this one shape, so that streaming,
rechunking and the client's final ``Completion`` are done once for all of them (``streaming.py``
builds the ``Completion`` from the outcome and its own timings).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from subsecond.v1 import router_pb2, types_pb2


@dataclass(frozen=True)
class Outcome:
    """How an answer was produced: the ``Completion`` fields other than its timings."""

    served_by: types_pb2.ServedBy
    model: str = ""
    finish_reason: types_pb2.FinishReason = types_pb2.FINISH_REASON_STOP
    prompt_tokens: int = 0
    completion_tokens: int = 0
    similarity: float = 0.0
    cache_age_seconds: float = 0.0
    tier_reason: str = ""
    coalesced: bool = False
    trimmed_prompt_tokens: int = 0
    static_route: str = ""

    def completion(self, *, time_to_first_chunk_seconds: float, total_seconds: float) -> router_pb2.Completion:
        # vars(), not dataclasses.asdict: the fields are flat, and asdict deep-copies each of them
        # (29 us against 5 us a Completion on this machine).
        return router_pb2.Completion(
            **vars(self), time_to_first_chunk_seconds=time_to_first_chunk_seconds, total_seconds=total_seconds
        )


@dataclass(frozen=True)
class Piece:
    """A piece of an answer's text; the last piece of an answer carries its ``outcome``."""

    text: str
    outcome: Outcome | None = None


# An answer as it is produced; ends with the piece that carries the outcome.
Answer = AsyncIterator[Piece]
