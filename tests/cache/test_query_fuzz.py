"""Property-based fuzzing of the cache's query parsing (hypothesis): whatever a CacheQuery holds,
``parse_query`` returns a query whose keys can be computed, or refuses with the kit's InvalidArgument
naming the field, and never raises anything else."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from subsecond.cache.entries import KEY_PREFIX, MAX_QUERY_MESSAGES, parse_query
from subsecond.kit.errors import InvalidArgument
from subsecond.v1 import cache_pb2, types_pb2

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
NAME = st.one_of(st.sampled_from(["", "t", "tenant-a", "small", "auto", "a:b", "*"]), TEXT)
MESSAGE = st.builds(
    types_pb2.ChatMessage, role=st.one_of(st.sampled_from(["system", "user", "assistant"]), TEXT), content=TEXT
)
MESSAGES = st.one_of(
    st.lists(MESSAGE, max_size=6),
    st.lists(MESSAGE, max_size=6),
    st.builds(lambda m, n: [m] * n, MESSAGE, st.integers(MAX_QUERY_MESSAGES - 2, MAX_QUERY_MESSAGES + 2)),
)
FLOAT = st.floats(width=32)
QUERY = st.builds(
    cache_pb2.CacheQuery,
    tenant=NAME,
    model=NAME,
    messages=MESSAGES,
    sampling=st.builds(
        types_pb2.SamplingParams, temperature=FLOAT, top_p=FLOAT, seed=st.one_of(st.none(), st.integers(0, 2**64 - 1))
    ),
)


@settings(max_examples=400, deadline=None)
@given(message=QUERY)
def test_parses_or_refuses_naming_the_field(message: cache_pb2.CacheQuery) -> None:
    try:
        query = parse_query(message)
    except InvalidArgument as error:
        assert error.message.startswith("query.")
        return
    assert query.exact_key.startswith(f"{KEY_PREFIX}:{{{message.tenant}}}:{message.model}:")
    assert query.scope
    assert query.semantic_text is None or isinstance(query.semantic_text, str)
