import pytest

from subsecond.cache.entries import (
    MAX_QUERY_CHARS,
    MAX_QUERY_MESSAGES,
    decode_answer,
    encode_answer,
    parse_owner,
    parse_query,
    tenant_prefix,
    usable,
)
from subsecond.kit.errors import InvalidArgument
from subsecond.v1 import cache_pb2, types_pb2


def query(*messages: tuple[str, str], tenant: str = "t", model: str = "small") -> cache_pb2.CacheQuery:
    return cache_pb2.CacheQuery(
        tenant=tenant, model=model, messages=[types_pb2.ChatMessage(role=r, content=c) for r, c in messages]
    )


def test_exact_key_is_namespaced_by_tenant_and_model() -> None:
    key = parse_query(query(("user", "hi"))).exact_key
    assert key.startswith(tenant_prefix("t", "small"))
    assert key.startswith(tenant_prefix("t"))
    assert parse_query(query(("user", "hi"), tenant="u")).exact_key != key


def test_semantic_text_only_for_single_turn_requests() -> None:
    assert parse_query(query(("user", " What  is it? "))).semantic_text == "What is it?"
    assert parse_query(query(("system", "Be brief."), ("user", "q"))).semantic_text == "q"
    assert parse_query(query(("user", "q"), ("assistant", "a"), ("user", "again"))).semantic_text is None


def test_system_prompt_changes_the_scope() -> None:
    plain = parse_query(query(("user", "q"))).scope
    assert parse_query(query(("system", "Be brief."), ("user", "q"))).scope != plain
    assert parse_query(query(("user", "other"))).scope == plain


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (query(("user", "q"), tenant=""), "query.tenant"),
        (query(("user", "q"), tenant="a:b"), "query.tenant"),
        (query(("user", "q"), model=""), "query.model"),
        (query(), "query.messages"),
        (query(("wizard", "q")), "query.messages[0].role"),
        (query(*[("user", "q")] * (MAX_QUERY_MESSAGES + 1)), f"query.messages: {MAX_QUERY_MESSAGES + 1} messages"),
        (query(("user", "q" * (MAX_QUERY_CHARS + 1))), f"query.messages: {MAX_QUERY_CHARS + 1} characters"),
    ],
)
def test_invalid_queries_name_the_field(bad: cache_pb2.CacheQuery, field: str) -> None:
    with pytest.raises(InvalidArgument) as error:
        parse_query(bad)
    assert error.value.message.startswith(field if " " in field else field + ":")


def test_an_owner_may_leave_the_model_out_but_not_widen_the_key_pattern() -> None:
    assert parse_owner(cache_pb2.CacheQuery(tenant="t")) == ("t", "")
    assert parse_owner(cache_pb2.CacheQuery(tenant="t", model="small")) == ("t", "small")
    for bad, field in [("*", "query.tenant"), ("t", "query.model")]:
        with pytest.raises(InvalidArgument) as error:
            parse_owner(cache_pb2.CacheQuery(tenant=bad, model="s*" if bad == "t" else ""))
        assert error.value.message.startswith(field if " " in field else field + ":")


def test_top_p_zero_means_one_in_the_key() -> None:
    """The sampling rule is the kit's: top_p 0 and 1 are the same request."""
    unset = query(("user", "q"))
    one = query(("user", "q"))
    one.sampling.top_p = 1.0
    assert parse_query(unset).exact_key == parse_query(one).exact_key


def test_answer_round_trip() -> None:
    answer = cache_pb2.CachedAnswer(
        chunks=["Par", "is."],
        prompt_tokens=5,
        completion_tokens=2,
        finish_reason=types_pb2.FINISH_REASON_STOP,
        created_at=10.0,
    )
    assert decode_answer(encode_answer(answer)) == answer


def test_usable() -> None:
    answer = cache_pb2.CachedAnswer(completion_tokens=50, created_at=1000.0)
    assert usable(answer, max_tokens=50, max_age_seconds=0, now=5000.0)
    assert not usable(answer, max_tokens=49, max_age_seconds=0, now=1001.0)  # caller allows fewer tokens
    assert usable(answer, max_tokens=0, max_age_seconds=100, now=1099.0)
    assert not usable(answer, max_tokens=0, max_age_seconds=100, now=1101.0)  # too old for this caller
