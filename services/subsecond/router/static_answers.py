"""A static route's answer as a stream: its fixed text at once, and each free part of a skeleton
filled by the cache-or-generate path the caller hands in (``fill``), whose text is forwarded as
it arrives. The outcome adds up what the free parts cost. The parts come computed (by
``static_routes.answer``, which the caller runs off the event loop for a large text)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from subsecond.kit.prompt_identity import Turn
from subsecond.router.admission import Admitted
from subsecond.router.answers import Answer, Outcome, Piece
from subsecond.router.metrics import STATIC_ANSWERS
from subsecond.router.static_routes import Part
from subsecond.v1 import types_pb2

# Answers one free part: the request with the part's instruction as its only turn.
Fill = Callable[[Admitted], Answer]


async def static_answer(request: Admitted, route: str, parts: Sequence[Part], fill: Fill) -> Answer:
    STATIC_ANSWERS.labels(route).inc()
    filled: list[Outcome] = []
    for part in parts:
        if not part.generate:
            yield Piece(part.text)
            continue
        async for piece in fill(replace(request, turns=(Turn("user", part.text),), task="")):
            yield Piece(piece.text)
            if piece.outcome is not None:
                filled.append(piece.outcome)
    truncated = any(outcome.finish_reason == types_pb2.FINISH_REASON_LENGTH for outcome in filled)
    yield Piece(
        "",
        Outcome(
            served_by=types_pb2.SERVED_BY_STATIC,
            static_route=route,
            model=filled[-1].model if filled else "",
            finish_reason=types_pb2.FINISH_REASON_LENGTH if truncated else types_pb2.FINISH_REASON_STOP,
            prompt_tokens=sum(outcome.prompt_tokens for outcome in filled),
            completion_tokens=sum(outcome.completion_tokens for outcome in filled),
        ),
    )
