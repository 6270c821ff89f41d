"""What makes two requests "the same": one definition shared by the cache's exact key and the
router's coalescing of identical concurrent requests.

Normalisation is deliberately conservative: Unicode NFKC, trimmed, runs of whitespace collapsed.
Case and punctuation are kept, because they can change an answer ("US" vs "us"); looser matches
are the semantic tier's job, behind its false-hit guard.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from subsecond.kit.errors import InvalidArgument
from subsecond.v1 import types_pb2

# The roles a chat turn may have, everywhere a conversation is accepted.
ROLES = frozenset({"system", "user", "assistant"})
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @classmethod
    def from_proto(cls, message: types_pb2.SamplingParams) -> Sampling:
        """The one reading of ``SamplingParams``: ``top_p`` 0 means 1; an unset seed is None."""
        return cls(
            temperature=message.temperature,
            top_p=message.top_p or 1.0,
            seed=message.seed if message.HasField("seed") else None,
        )

    def canonical(self) -> dict[str, float | int | None]:
        # Rounded so that 0.7 sent as a float32 and as a float64 are the same parameter.
        return {"temperature": round(self.temperature, 4), "top_p": round(self.top_p, 4), "seed": self.seed}


def check_roles(messages: Sequence[types_pb2.ChatMessage], field: str) -> None:
    """Refuses (INVALID_ARGUMENT, naming ``field[i].role``) a message whose role is not one of ROLES."""
    for i, message in enumerate(messages):
        if message.role not in ROLES:
            raise InvalidArgument(f"{field}[{i}].role: {message.role!r} is not one of {', '.join(sorted(ROLES))}")


def normalise_text(text: str) -> str:
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def _digest(payload: object) -> str:
    encoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return hashlib.sha256(encoded.encode()).hexdigest()


def request_digest(tenant: str, model: str, turns: Sequence[Turn], sampling: Sampling) -> str:
    """Identical for requests whose answers are interchangeable: same tenant, model, normalised
    conversation and output-changing sampling parameters."""
    return _digest(
        {
            "tenant": tenant,
            "model": model,
            "turns": [[turn.role, normalise_text(turn.content)] for turn in turns],
            "sampling": sampling.canonical(),
        }
    )


def context_digest(model: str, turns: Sequence[Turn], sampling: Sampling) -> str:
    """Everything but the final user turn: answers to similar final turns are interchangeable
    only when this matches (same model, system prompt, history and sampling)."""
    return _digest(
        {
            "model": model,
            "turns": [[turn.role, normalise_text(turn.content)] for turn in turns[:-1]],
            "sampling": sampling.canonical(),
        }
    )
