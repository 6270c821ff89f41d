"""Property-based fuzzing of admission (hypothesis): whatever a GenerateRequest holds and whatever key
comes with it, ``admit`` admits it or refuses it with the kit's InvalidArgument or Unauthenticated, and
never raises anything else; and the servicer, over a real channel in front of fake downstreams (as in
test_router_service.py), ends every such call with OK, INVALID_ARGUMENT, UNAUTHENTICATED or
RESOURCE_EXHAUSTED."""

from __future__ import annotations

import string
from collections.abc import AsyncIterator

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_router_service import Stack, running_stack

from subsecond.kit.errors import InvalidArgument
from subsecond.router.admission import admit
from subsecond.router.auth import API_KEY_HEADER, hash_key
from subsecond.router.settings import RouterSettings
from subsecond.v1 import router_pb2, types_pb2

SETTINGS = RouterSettings.from_env(
    {
        "SUBSECOND_ROUTER_TIERS": "small,large",
        "SUBSECOND_ROUTER_AUTO_LARGE_TIER": "large",
        "SUBSECOND_ROUTER_TIER_PROMPT_TOKENS": "small=256,large=4096",
    }
)

# Strings protobuf can carry (no lone surrogates), short ones mostly, and now and then one past the limits.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
LONG = st.builds(lambda c, n: c * n, st.characters(exclude_categories=("Cs",)), st.integers(1_000, 40_000))
CONTENT = st.one_of(TEXT, TEXT, TEXT, LONG)
ROLE = st.one_of(st.sampled_from(["system", "user", "assistant"]), TEXT)
MESSAGE = st.builds(types_pb2.ChatMessage, role=ROLE, content=CONTENT)
SHORT_MESSAGE = st.builds(types_pb2.ChatMessage, role=ROLE, content=TEXT)
MESSAGES = st.one_of(
    st.lists(MESSAGE, max_size=6), st.builds(lambda m, n: [m] * n, SHORT_MESSAGE, st.integers(200, 300))
)
UINT32 = st.integers(0, 2**32 - 1)
# Enums are open in proto3: any int32 arrives.
ENUM = st.one_of(st.integers(0, 4), st.integers(-(2**31), 2**31 - 1))
FLOAT = st.floats(width=32)
SAMPLING = st.builds(
    types_pb2.SamplingParams, temperature=FLOAT, top_p=FLOAT, seed=st.one_of(st.none(), st.integers(0, 2**64 - 1))
)
REQUEST = st.builds(
    router_pb2.GenerateRequest,
    prompt=st.one_of(st.just(""), CONTENT),
    messages=MESSAGES,
    model=st.one_of(st.sampled_from(["", "auto", "small", "large"]), TEXT),
    max_tokens=st.one_of(st.integers(0, 2048), UINT32),
    sampling=SAMPLING,
    cache=st.builds(router_pb2.CachePolicy, mode=ENUM, max_age_seconds=UINT32),
    chunking=ENUM,
    task=st.one_of(st.sampled_from(["", "classify", "write"]), TEXT),
    replay=ENUM,
)
API_KEY = st.one_of(st.none(), st.just("key-a"), st.text(string.ascii_letters + string.digits + "-", max_size=12))


def metadata(key: str | None) -> dict[str, str]:
    return {} if key is None else {API_KEY_HEADER: key}


@settings(max_examples=1000, deadline=None)
@given(request=REQUEST)
def test_admission_admits_or_refuses_with_a_kit_error(request: router_pb2.GenerateRequest) -> None:
    try:
        admitted = admit(request, "tenant-a", SETTINGS)
    except InvalidArgument as error:
        assert error.message.split(":")[0]  # names what was wrong
        return
    assert admitted.turns and admitted.turns[-1].role == "user"
    assert sum(len(turn.content) for turn in admitted.turns) <= SETTINGS.max_prompt_chars
    assert len(admitted.turns) <= SETTINGS.max_messages


@pytest.fixture(scope="module")
async def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    keys = {"API_KEYS": f"{hash_key('key-a')}=tenant-a:generate"}
    async with running_stack(tmp_path_factory.mktemp("fuzz"), keys) as stack:
        yield stack


EXPECTED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=REQUEST, key=API_KEY)
async def test_the_servicer_answers_every_request_with_an_expected_status(
    fuzzed_stack: Stack, request: router_pb2.GenerateRequest, key: str | None
) -> None:
    call = fuzzed_stack.router.Generate(request, metadata=tuple(metadata(key).items()), timeout=10)
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError:
        pass  # the status is checked below
    assert await call.code() in EXPECTED, await call.details()

