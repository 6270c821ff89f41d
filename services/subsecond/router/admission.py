"""Admission: a pure translation of a GenerateRequest and its caller into a validated request.

Everything here is checked before anything else happens; the error names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from subsecond.kit.prompt_identity import Sampling, Turn
from subsecond.kit.settings import NAME_PATTERN
from subsecond.router.settings import RouterSettings
from subsecond.v1 import router_pb2

ROLES = frozenset({"system", "user", "assistant"})
API_KEY_HEADER = "x-api-key"
CACHE_MODES = frozenset(router_pb2.CacheMode.values())
CHUNKINGS = frozenset(router_pb2.Chunking.values())
REPLAYS = frozenset(router_pb2.Replay.values())
AUTO = "auto"


class Rejected(Exception):
    """A request refused at admission: ``unauthenticated`` picks UNAUTHENTICATED over INVALID_ARGUMENT."""

    def __init__(self, message: str, *, unauthenticated: bool = False) -> None:
        super().__init__(message)
        self.unauthenticated = unauthenticated


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


def resolve_tenant(metadata: Mapping[str, str], settings: RouterSettings) -> str:
    key = metadata.get(API_KEY_HEADER)
    if key is None:
        if not settings.default_tenant:
            raise Rejected(f"missing {API_KEY_HEADER} metadata", unauthenticated=True)
        return settings.default_tenant
    tenant = settings.api_keys.get(key)
    if tenant is None:
        raise Rejected(f"unknown {API_KEY_HEADER}", unauthenticated=True)
    return tenant


def _turns(request: router_pb2.GenerateRequest, settings: RouterSettings) -> tuple[Turn, ...]:
    if request.prompt and request.messages:
        raise Rejected("prompt, messages: set exactly one of them, not both")
    if request.prompt:
        if not request.prompt.strip():
            raise Rejected("prompt: must not be blank")
        turns: tuple[Turn, ...] = (Turn("user", request.prompt),)
    elif request.messages:
        for i, message in enumerate(request.messages):
            if message.role not in ROLES:
                raise Rejected(f"messages[{i}].role: {message.role!r} is not one of {', '.join(sorted(ROLES))}")
            if not message.content.strip():
                raise Rejected(f"messages[{i}].content: must not be blank")
        if request.messages[-1].role != "user":
            raise Rejected("messages: the last message must have role 'user'")
        turns = tuple(Turn(m.role, m.content) for m in request.messages)
    else:
        raise Rejected("prompt: set prompt or messages")
    size = sum(len(turn.content) for turn in turns)
    if size > settings.max_prompt_chars:
        raise Rejected(f"prompt: {size} characters, at most {settings.max_prompt_chars}")
    return turns


def admit(request: router_pb2.GenerateRequest, metadata: Mapping[str, str], settings: RouterSettings) -> Admitted:
    tenant = resolve_tenant(metadata, settings)
    turns = _turns(request, settings)
    if request.model == "":
        tier, reason = settings.default_tier, "default"
    elif request.model == AUTO or request.model in settings.tiers:
        tier, reason = request.model, "requested" if request.model != AUTO else ""
    else:
        raise Rejected(f"model: unknown tier {request.model!r}; use auto or one of {', '.join(settings.tiers)}")
    if request.max_tokens > settings.max_tokens_limit:
        raise Rejected(f"max_tokens: {request.max_tokens} is over the limit of {settings.max_tokens_limit}")
    sampling = request.sampling
    if not 0.0 <= sampling.temperature <= 2.0:
        raise Rejected(f"sampling.temperature: {sampling.temperature} is outside [0, 2]")
    if not 0.0 <= sampling.top_p <= 1.0:
        raise Rejected(f"sampling.top_p: {sampling.top_p} is outside [0, 1] (0 means 1)")
    if request.cache.mode not in CACHE_MODES:
        raise Rejected(f"cache.mode: unknown value {request.cache.mode}")
    if request.chunking not in CHUNKINGS:
        raise Rejected(f"chunking: unknown value {request.chunking}")
    if request.replay not in REPLAYS:
        raise Rejected(f"replay: unknown value {request.replay}")
    if request.task and not NAME_PATTERN.match(request.task):
        raise Rejected(f"task: {request.task!r} is not a simple name ([A-Za-z0-9_-])")
    return Admitted(
        tenant=tenant,
        tier=tier,
        tier_reason=reason,
        turns=turns,
        max_tokens=request.max_tokens,
        sampling=Sampling(
            temperature=sampling.temperature,
            top_p=sampling.top_p or 1.0,
            seed=sampling.seed if sampling.HasField("seed") else None,
        ),
        cache_mode=request.cache.mode,
        max_age_seconds=request.cache.max_age_seconds,
        chunking=request.chunking,
        task=request.task,
        replay=request.replay,
    )
