"""Admission: a pure translation of a GenerateRequest of an authenticated tenant (``auth.py``, checked
first) into a validated request.

Everything here is checked before any other work: a bad field is ``InvalidArgument`` naming the
field. The sizes are checked before
anything walks the request's text (the number of messages before their roles, the characters
before any other look at them), so a refusal costs the same whatever was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from subsecond.kit.errors import InvalidArgument
from subsecond.kit.prompt_identity import Sampling, Turn, check_roles
from subsecond.kit.settings import NAME_PATTERN
from subsecond.router.settings import RouterSettings
from subsecond.v1 import router_pb2, types_pb2

CACHE_MODES = frozenset(router_pb2.CacheMode.values())
CHUNKINGS = frozenset(router_pb2.Chunking.values())
REPLAYS = frozenset(router_pb2.Replay.values())
AUTO = "auto"


@dataclass(frozen=True)
class Admitted:
    tenant: str
    # A tier name, or "auto" (the router chooses after the cache lookup; answers are cached under "auto").
    tier: str
    # "requested" or "default"; empty for "auto".
    tier_reason: str
    turns: tuple[Turn, ...]
    # As requested; 0 leaves it to the tier's default.
    max_tokens: int
    sampling: Sampling
    cache_mode: int
    max_age_seconds: int
    chunking: int
    task: str
    replay: int

    @property
    def last_user_text(self) -> str:
        return self.turns[-1].content

    def sampling_params(self) -> types_pb2.SamplingParams:
        """The sampling as sent downstream (``top_p`` already read as 1 when it was 0)."""
        params = types_pb2.SamplingParams(temperature=self.sampling.temperature, top_p=self.sampling.top_p)
        if self.sampling.seed is not None:
            params.seed = self.sampling.seed
        return params


def chat_messages(turns: Sequence[Turn]) -> list[types_pb2.ChatMessage]:
    return [types_pb2.ChatMessage(role=turn.role, content=turn.content) for turn in turns]


def _turns(request: router_pb2.GenerateRequest, settings: RouterSettings) -> tuple[Turn, ...]:
    # Each field read once: every read of a message's field builds a Python object.
    prompt, messages = request.prompt, request.messages
    if prompt and messages:
        raise InvalidArgument("prompt, messages: set exactly one of them, not both")
    if len(messages) > settings.max_messages:
        raise InvalidArgument(f"messages: {len(messages)} messages, at most {settings.max_messages}")
    size = len(prompt) + sum(len(message.content) for message in messages) if messages else len(prompt)
    if size > settings.max_prompt_chars:
        raise InvalidArgument(f"prompt: {size} characters, at most {settings.max_prompt_chars} (MAX_PROMPT_CHARS)")
    if prompt:
        if not prompt.strip():
            raise InvalidArgument("prompt: must not be blank")
        turns: tuple[Turn, ...] = (Turn("user", prompt),)
    elif messages:
        check_roles(messages, "messages")
        for i, message in enumerate(messages):
            if not message.content.strip():
                raise InvalidArgument(f"messages[{i}].content: must not be blank")
        if messages[-1].role != "user":
            raise InvalidArgument("messages: the last message must have role 'user'")
        turns = tuple(Turn(m.role, m.content) for m in messages)
    else:
        raise InvalidArgument("prompt: set prompt or messages")
    return turns


def admit(request: router_pb2.GenerateRequest, tenant: str, settings: RouterSettings) -> Admitted:
    turns = _turns(request, settings)
    if request.model == "":
        tier, reason = settings.default_tier, "default"
    elif request.model == AUTO or request.model in settings.tiers:
        tier, reason = request.model, "requested" if request.model != AUTO else ""
    else:
        raise InvalidArgument(
            f"model: unknown tier {request.model!r}; use auto or one of {', '.join(settings.tiers)}"
        )
    if request.max_tokens > settings.max_tokens_limit:
        raise InvalidArgument(f"max_tokens: {request.max_tokens} is over the limit of {settings.max_tokens_limit}")
    sampling = request.sampling
    if not 0.0 <= sampling.temperature <= 2.0:
        raise InvalidArgument(f"sampling.temperature: {sampling.temperature} is outside [0, 2]")
    if not 0.0 <= sampling.top_p <= 1.0:
        raise InvalidArgument(f"sampling.top_p: {sampling.top_p} is outside [0, 1] (0 means 1)")
    if request.cache.mode not in CACHE_MODES:
        raise InvalidArgument(f"cache.mode: unknown value {request.cache.mode}")
    if request.chunking not in CHUNKINGS:
        raise InvalidArgument(f"chunking: unknown value {request.chunking}")
    if request.replay not in REPLAYS:
        raise InvalidArgument(f"replay: unknown value {request.replay}")
    if request.task and not NAME_PATTERN.match(request.task):
        raise InvalidArgument(f"task: {request.task!r} is not a simple name ([A-Za-z0-9_-])")
    return Admitted(
        tenant=tenant,
        tier=tier,
        tier_reason=reason,
        turns=turns,
        max_tokens=request.max_tokens,
        sampling=Sampling.from_proto(sampling),
        cache_mode=request.cache.mode,
        max_age_seconds=request.cache.max_age_seconds,
        chunking=request.chunking,
        task=request.task,
        replay=request.replay,
    )
