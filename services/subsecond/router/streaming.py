"""An answer as the client's stream: its text rechunked as the client asked, each piece sent the
moment it is ready, and a final message carrying the ``Completion`` (built here, once, from the
answer's outcome and this stream's timings)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from subsecond.kit.errors import Internal
from subsecond.router.answers import Answer, Outcome
from subsecond.router.chunking import SentenceChunker
from subsecond.router.metrics import FIRST_CHUNK, REQUEST_DURATION, SERVED_BY, TOKENS, child
from subsecond.v1 import router_pb2


class Rechunker:
    """Turns the pieces of an answer into the chunks the client asked for."""

    def __init__(self, chunking: int) -> None:
        self._sentences = SentenceChunker() if chunking == router_pb2.CHUNKING_SENTENCE else None

    def feed(self, text: str) -> list[str]:
        if self._sentences is None:
            return [text] if text else []
        return self._sentences.feed(text)

    def last(self, text: str) -> tuple[list[str], str]:
        """For the answer's final text: the chunks to send before the final message, and the text
        the final message carries (in token mode, all of it: one message fewer)."""
        if self._sentences is None:
            return [], text
        return self._sentences.feed(text), self._sentences.flush()


async def respond(answer: Answer, chunking: int, started: float) -> AsyncIterator[router_pb2.GenerateResponse]:
    """Streams ``answer``; ``started`` is when the call (or workflow step) began, for the timings.

    After the final message the answer is read to its end rather than left: an async generator
    left unfinished is closed by the event loop's finalizer hook, which schedules a task for each
    generator of the chain (four on an exact hit) and wakes the loop through its self-pipe."""
    rechunker = Rechunker(chunking)
    index = 0
    first_at: float | None = None
    finished = False
    async for piece in answer:
        if finished:
            raise Internal("the answer went on after its last chunk")
        if piece.outcome is None:
            chunks, tail = rechunker.feed(piece.text), ""
        else:
            chunks, tail = rechunker.last(piece.text)
        for text in chunks:
            if first_at is None:
                first_at = time.perf_counter()
            yield router_pb2.GenerateResponse(text=text, index=index)
            index += 1
        if piece.outcome is not None:
            done = _completion(piece.outcome, started, first_at)
            finished = True
            yield router_pb2.GenerateResponse(text=tail, index=index, done=done)
    if not finished:
        raise Internal("the answer ended before its last chunk")


def _completion(outcome: Outcome, started: float, first_at: float | None) -> router_pb2.Completion:
    now = time.perf_counter()
    completion = outcome.completion(
        time_to_first_chunk_seconds=(first_at if first_at is not None else now) - started,
        total_seconds=now - started,
    )
    label = SERVED_BY[outcome.served_by]
    child(FIRST_CHUNK, label).observe(completion.time_to_first_chunk_seconds)
    child(REQUEST_DURATION, label).observe(completion.total_seconds)
    if outcome.model:
        child(TOKENS, outcome.model, "prompt").inc(outcome.prompt_tokens)
        child(TOKENS, outcome.model, "completion").inc(outcome.completion_tokens)
    return completion
