"""The client's stream built from an answer (router/streaming.py) and the Completion of an outcome."""

from __future__ import annotations

import dataclasses
import time

import pytest

from subsecond.kit.errors import Internal
from subsecond.router.answers import Answer, Outcome, Piece
from subsecond.router.streaming import respond
from subsecond.v1 import router_pb2, types_pb2

OUTCOME = Outcome(
    served_by=types_pb2.SERVED_BY_EXACT,
    model="small",
    prompt_tokens=42,
    completion_tokens=7,
    similarity=0.5,
    cache_age_seconds=3.0,
    tier_reason="cached",
    coalesced=True,
    trimmed_prompt_tokens=2,
    static_route="none",
)


async def streamed(answer: Answer) -> list[router_pb2.GenerateResponse]:
    return [response async for response in respond(answer, router_pb2.CHUNKING_TOKEN, time.perf_counter())]


async def test_the_answer_is_read_to_its_end_after_the_final_message() -> None:
    # Left unfinished, each generator of the answer's chain would be closed by the event loop's
    # finalizer hook, a task apiece; read to its end, the code after its last piece runs in line.
    ended: list[bool] = []

    async def answer() -> Answer:
        yield Piece("The capital ")
        yield Piece("is Paris.", OUTCOME)
        ended.append(True)

    responses = await streamed(answer())
    assert [response.text for response in responses] == ["The capital ", "is Paris."]
    assert responses[-1].HasField("done") and not responses[0].HasField("done")
    assert ended == [True]


async def test_an_answer_that_goes_on_after_its_last_piece_is_internal() -> None:
    async def answer() -> Answer:
        yield Piece("done", OUTCOME)
        yield Piece("more")

    with pytest.raises(Internal, match="went on after its last chunk"):
        await streamed(answer())


async def test_an_answer_without_its_last_piece_is_internal() -> None:
    async def answer() -> Answer:
        yield Piece("half")

    with pytest.raises(Internal, match="ended before its last chunk"):
        await streamed(answer())


def test_a_completion_carries_every_field_of_the_outcome() -> None:
    completion = OUTCOME.completion(time_to_first_chunk_seconds=0.25, total_seconds=0.5)
    for field in dataclasses.fields(Outcome):
        assert getattr(completion, field.name) == pytest.approx(getattr(OUTCOME, field.name)), field.name
    assert (completion.time_to_first_chunk_seconds, completion.total_seconds) == (0.25, 0.5)
