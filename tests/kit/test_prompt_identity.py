import pytest

from subsecond.kit.errors import InvalidArgument
from subsecond.kit.prompt_identity import (
    Sampling,
    Turn,
    check_roles,
    context_digest,
    normalise_text,
    request_digest,
)
from subsecond.v1 import types_pb2

USER = (Turn("user", "What is 2 + 2?"),)


def test_whitespace_and_unicode_forms_normalise_away() -> None:
    assert normalise_text("  What\tis\n 2 + 2?  ") == "What is 2 + 2?"
    assert normalise_text("ﬁle") == "file"  # NFKC ligature


def test_case_is_kept() -> None:
    assert normalise_text("US") != normalise_text("us")


def test_same_request_same_digest() -> None:
    spaced = (Turn("user", " What is  2 + 2? "),)
    assert request_digest("t", "small", USER, Sampling()) == request_digest("t", "small", spaced, Sampling())


def test_each_part_of_the_identity_matters() -> None:
    base = request_digest("t", "small", USER, Sampling())
    assert request_digest("u", "small", USER, Sampling()) != base
    assert request_digest("t", "large", USER, Sampling()) != base
    assert request_digest("t", "small", (Turn("user", "What is 2 + 3?"),), Sampling()) != base
    assert request_digest("t", "small", USER, Sampling(temperature=0.7)) != base
    assert request_digest("t", "small", USER, Sampling(seed=1)) != base
    assert request_digest("t", "small", (Turn("system", "Be brief."), *USER), Sampling()) != base


def test_float32_rounding_does_not_split_identities() -> None:
    import numpy as np

    as_float32 = float(np.float32(0.7))
    assert request_digest("t", "m", USER, Sampling(temperature=as_float32)) == request_digest(
        "t", "m", USER, Sampling(temperature=0.7)
    )


def test_context_digest_ignores_the_final_turn_only() -> None:
    system = Turn("system", "Be brief.")
    assert context_digest("m", (system, Turn("user", "a")), Sampling()) == context_digest(
        "m", (system, Turn("user", "b")), Sampling()
    )
    assert context_digest("m", (Turn("user", "a"),), Sampling()) != context_digest(
        "m", (system, Turn("user", "a")), Sampling()
    )


def test_roles_are_checked_in_one_place_naming_the_field() -> None:
    messages = [types_pb2.ChatMessage(role="user", content="hi"), types_pb2.ChatMessage(role="robot", content="x")]
    refused = r"^query\.messages\[1\]\.role: 'robot' is not one of assistant, system, user$"
    with pytest.raises(InvalidArgument, match=refused):
        check_roles(messages, "query.messages")
    check_roles(messages[:1], "messages")  # a known role passes


def test_sampling_reads_top_p_zero_as_one_and_an_unset_seed_as_none() -> None:
    assert Sampling.from_proto(types_pb2.SamplingParams(temperature=0.5)) == Sampling(0.5, 1.0, None)
    seeded = Sampling.from_proto(types_pb2.SamplingParams(top_p=0.9, seed=0))
    assert (seeded.top_p, seeded.seed) == (pytest.approx(0.9), 0)
