import pytest

from subsecond.kit.errors import InvalidArgument
from subsecond.router.admission import admit
from subsecond.router.settings import RouterSettings
from subsecond.v1 import router_pb2, types_pb2

SETTINGS = RouterSettings.from_env({})


def request(**fields: object) -> router_pb2.GenerateRequest:
    return router_pb2.GenerateRequest(**({"prompt": "Hello?"} | fields))  # type: ignore[arg-type]


def test_defaults() -> None:
    admitted = admit(request(), "local", SETTINGS)
    assert admitted.tenant == "local"
    assert (admitted.tier, admitted.tier_reason) == ("small", "default")
    assert admitted.max_tokens == 0  # left to the tier: see sizing.fit_to_tier
    assert admitted.sampling.top_p == 1.0
    assert [turn.role for turn in admitted.turns] == ["user"]


@pytest.mark.parametrize(
    ("fields", "field_named"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   "}, "prompt"),
        ({"prompt": "x", "messages": [types_pb2.ChatMessage(role="user", content="y")]}, "prompt, messages"),
        ({"prompt": "", "messages": [types_pb2.ChatMessage(role="robot", content="y")]}, "messages[0].role"),
        (
            {"prompt": "", "messages": [types_pb2.ChatMessage(role="user", content=" ")]},
            "messages[0].content",
        ),
        (
            {
                "prompt": "",
                "messages": [
                    types_pb2.ChatMessage(role="user", content="q"),
                    types_pb2.ChatMessage(role="assistant", content="a"),
                ],
            },
            "messages",
        ),
        ({"model": "huge"}, "model"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"sampling": types_pb2.SamplingParams(temperature=3.0)}, "sampling.temperature"),
        ({"sampling": types_pb2.SamplingParams(top_p=1.5)}, "sampling.top_p"),
        ({"cache": router_pb2.CachePolicy(mode=7)}, "cache.mode"),  # type: ignore[arg-type]
        ({"chunking": 9}, "chunking"),
        ({"replay": 5}, "replay"),
        ({"task": "two words"}, "task"),
        ({"prompt": "x" * 40_000}, "prompt"),
    ],
)
def test_bad_requests_name_the_field(fields: dict[str, object], field_named: str) -> None:
    with pytest.raises(InvalidArgument) as rejected:
        admit(request(**fields), "local", SETTINGS)
    assert rejected.value.message.startswith(field_named + ":")


def test_auto_stays_auto_until_the_lookup_and_seed_is_kept() -> None:
    sampling = types_pb2.SamplingParams(seed=7, temperature=0.5)
    admitted = admit(request(model="auto", sampling=sampling), "local", SETTINGS)
    assert (admitted.tier, admitted.tier_reason) == ("auto", "")
    assert admitted.sampling.seed == 7
    sent = admitted.sampling_params()
    assert (sent.seed, sent.top_p) == (7, 1.0)  # top_p 0 is sent downstream as 1


def test_a_named_tier_is_requested() -> None:
    assert admit(request(model="small", task="classify"), "local", SETTINGS).tier_reason == "requested"


def turns(*pairs: tuple[str, str]) -> list[types_pb2.ChatMessage]:
    return [types_pb2.ChatMessage(role=role, content=content) for role, content in pairs]


def test_sizes_are_refused_naming_their_limit() -> None:
    many = turns(*[("user", "q")] * (SETTINGS.max_messages + 1))
    with pytest.raises(InvalidArgument, match=r"^messages: 257 messages, at most 256$"):
        admit(request(prompt="", messages=many), "local", SETTINGS)
    # The size is the whole conversation's, before any message is read for its role.
    wide = turns(("robot", "x" * 20_000), ("user", "y" * 20_000))
    with pytest.raises(InvalidArgument, match=r"^prompt: 40000 characters, at most 32000 \(MAX_PROMPT_CHARS\)$"):
        admit(request(prompt="", messages=wide), "local", SETTINGS)

