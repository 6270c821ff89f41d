"""Pure parts of the cache: validating a query, its keys, and the stored form of an answer."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

from subsecond.kit.errors import InvalidArgument
from subsecond.kit.prompt_identity import Sampling, Turn, check_roles, context_digest, normalise_text, request_digest
from subsecond.kit.settings import NAME_PATTERN
from subsecond.v1 import cache_pb2, types_pb2

# v2: the tenant became a hash tag (``{acme}``), so that a tenant's keys share one slot of a Redis
# Cluster (kit.redis_client). v1 keys are never read again: they expire with their TTL, and a cache
# that must forget them at once is flushed (``redis-cli --scan --pattern 'subsecond:v1:ans:*'``).
KEY_PREFIX = "subsecond:v2:ans"
# Bounds on a query, checked before anything reads its messages (their roles, the key's hash, the
# guard): above what any router admits (its MAX_MESSAGES and MAX_PROMPT_CHARS defaults are 256 and
# 32,000), so they only stop a caller that is not a router.
MAX_QUERY_MESSAGES = 4096
MAX_QUERY_CHARS = 1_000_000
# A revision is only hashed (never part of a key pattern); bounded so that it stays an identity.
MAX_REVISION_CHARS = 128

@dataclass(frozen=True)
class Query:
    tenant: str
    model: str
    turns: tuple[Turn, ...]
    sampling: Sampling
    # The model's identity behind the tier and the cache epoch (CacheQuery.revision): hashed into
    # the exact key and the scope, so another revision's answers are neither exact nor semantic hits,
    # while the key's prefix keeps the tier (invalidating a tier removes every revision of it).
    revision: str = ""

    @property
    def versioned_model(self) -> str:
        return f"{self.model}@{self.revision}" if self.revision else self.model

    # Cached: each is a hash (or a scan) of the whole conversation, read more than once per call.
    @cached_property
    def exact_key(self) -> str:
        return tenant_prefix(self.tenant, self.model) + request_digest(
            self.tenant, self.versioned_model, self.turns, self.sampling
        )

    @cached_property
    def scope(self) -> str:
        return context_digest(self.versioned_model, self.turns, self.sampling)

    @cached_property
    def semantic_text(self) -> str | None:
        """The text the semantic tier compares: the user's turn of a single-turn request (system
        prompts allowed, and part of the scope). Multi-turn conversations are exact-only."""
        *context, last = self.turns
        if last.role != "user" or any(turn.role != "system" for turn in context):
            return None
        return normalise_text(last.content)


def tenant_prefix(tenant: str, model: str = "") -> str:
    """The start of every key of a tenant (or of one of its models). The tenant is a validated name
    (never holds a brace), so the hash tag is exactly the tenant."""
    return f"{KEY_PREFIX}:{{{tenant}}}:{model + ':' if model else ''}"


def parse_owner(message: cache_pb2.CacheQuery) -> tuple[str, str]:
    """The tenant and model a query names, checked; the model may be empty (every model), since
    they go into a key pattern a name must not widen."""
    if not NAME_PATTERN.match(message.tenant):
        raise InvalidArgument("query.tenant: a simple name (letters, digits, . _ -) is required")
    if message.model and not NAME_PATTERN.match(message.model):
        raise InvalidArgument(f"query.model: {message.model!r} is not a model tier name (or auto)")
    return message.tenant, message.model


def parse_query(message: cache_pb2.CacheQuery) -> Query:
    tenant, model = parse_owner(message)
    if not model:
        raise InvalidArgument("query.model: a model tier name (or auto) is required")
    if len(message.revision) > MAX_REVISION_CHARS or not message.revision.isprintable():
        raise InvalidArgument(f"query.revision: at most {MAX_REVISION_CHARS} printable characters")
    return Query(tenant, model, _turns(message.messages), Sampling.from_proto(message.sampling), message.revision)


def _turns(messages: Sequence[types_pb2.ChatMessage]) -> tuple[Turn, ...]:
    if not messages:
        raise InvalidArgument("query.messages: at least one message is required")
    if len(messages) > MAX_QUERY_MESSAGES:
        raise InvalidArgument(f"query.messages: {len(messages)} messages, at most {MAX_QUERY_MESSAGES}")
    size = sum(len(message.content) for message in messages)
    if size > MAX_QUERY_CHARS:
        raise InvalidArgument(f"query.messages: {size} characters, at most {MAX_QUERY_CHARS}")
    check_roles(messages, "query.messages")
    return tuple(Turn(m.role, m.content) for m in messages)


def encode_answer(answer: cache_pb2.CachedAnswer) -> bytes:
    return json.dumps(
        {
            "chunks": list(answer.chunks),
            "prompt_tokens": answer.prompt_tokens,
            "completion_tokens": answer.completion_tokens,
            "finish_reason": answer.finish_reason,
            "created_at": answer.created_at or time.time(),
            "chunk_offsets_seconds": [round(offset, 4) for offset in answer.chunk_offsets_seconds],
            "model": answer.model,
        },
        ensure_ascii=False,
    ).encode()


def decode_answer(raw: bytes | str) -> cache_pb2.CachedAnswer:
    data = json.loads(raw)
    return cache_pb2.CachedAnswer(
        chunks=data["chunks"],
        prompt_tokens=data["prompt_tokens"],
        completion_tokens=data["completion_tokens"],
        finish_reason=data["finish_reason"],
        created_at=data["created_at"],
        chunk_offsets_seconds=data.get("chunk_offsets_seconds", []),
        model=data.get("model", ""),
    )


def usable(answer: cache_pb2.CachedAnswer, *, max_tokens: int, max_age_seconds: int, now: float) -> bool:
    """A cached answer serves a request when the caller would have let it run that long and it is fresh enough."""
    if max_tokens and answer.completion_tokens > max_tokens:
        return False
    return not (max_age_seconds and now - answer.created_at > max_age_seconds)
