"""Right-sizing: which model tier answers a request, and how much of it the tier is asked to read and write.

``choose_tier`` is the policy behind ``model: "auto"``. The first rule that applies decides:

1. a task hint: the request's ``task`` is one of the small tier's tasks (classify, extract, ...)
   or the large tier's (write, explain, ...);
2. a long answer: ``max_tokens`` asked for above what the small tier is meant to write;
3. a long prompt: more prompt tokens than the small tier is meant to read;
4. the prompt's embedding (the one the cache computed for its semantic lookup) is nearer one
   tier's centroid than the other's by at least a margin; the centroids are the mean embeddings
   of labelled example prompts (``tier_examples.json``, built by ``subsecond prepare``);
5. otherwise the small tier: a short request with no sign of long-form work.

``fit_to_tier`` is the prompt economy: ``max_tokens`` defaults to the tier's default and is capped
at its limit, and a chat history over the tier's prompt budget loses its oldest turns (system
messages and the last user turn always stay). Token counts are estimated at four characters a
token, the usual rule of thumb for English with BPE tokenisers; the router does not hold the
models' tokenisers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from subsecond.kit.prompt_identity import Turn


def estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


@dataclass(frozen=True)
class TierLimits:
    default_max_tokens: int
    max_tokens: int
    prompt_tokens: int


@dataclass(frozen=True)
class AutoPolicy:
    small: str
    large: str
    small_tasks: frozenset[str]
    large_tasks: frozenset[str]
    # Asking for more tokens than this, or sending a longer prompt, goes to the large tier.
    small_max_tokens: int
    small_prompt_tokens: int
    # Tier -> unit-length mean embedding of its example prompts; empty disables rule 4.
    centroids: Mapping[str, tuple[float, ...]]
    centroid_margin: float


@dataclass(frozen=True)
class Signals:
    task: str
    # As requested; 0 when the request left it to the tier.
    max_tokens: int
    prompt_tokens: int
    embedding: Sequence[float] = ()


@dataclass(frozen=True)
class TierChoice:
    tier: str
    reason: str


def choose_tier(signals: Signals, policy: AutoPolicy) -> TierChoice:
    if signals.task in policy.small_tasks:
        return TierChoice(policy.small, "task")
    if signals.task in policy.large_tasks:
        return TierChoice(policy.large, "task")
    if signals.max_tokens > policy.small_max_tokens:
        return TierChoice(policy.large, "max_tokens")
    if signals.prompt_tokens > policy.small_prompt_tokens:
        return TierChoice(policy.large, "prompt_length")
    if signals.embedding and len(policy.centroids) >= 2:
        scores = sorted(((_dot(signals.embedding, c), tier) for tier, c in policy.centroids.items()), reverse=True)
        (best, tier), (runner_up, _) = scores[0], scores[1]
        if best - runner_up >= policy.centroid_margin:
            return TierChoice(tier, "centroid")
    return TierChoice(policy.small, "short")


def _dot(a: Sequence[float], b: Sequence[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def centroid(vectors: Sequence[Sequence[float]]) -> tuple[float, ...]:
    """The unit-length mean of ``vectors`` (a centroid for cosine similarity)."""
    mean = [sum(column) / len(vectors) for column in zip(*vectors, strict=True)]
    norm = math.sqrt(sum(x * x for x in mean)) or 1.0
    return tuple(x / norm for x in mean)


@dataclass(frozen=True)
class Fitted:
    turns: tuple[Turn, ...]
    max_tokens: int
    # Estimated prompt tokens of the turns dropped, and completion tokens no longer asked for.
    trimmed_prompt_tokens: int
    capped_max_tokens: int


def fit_to_tier(turns: Sequence[Turn], requested_max_tokens: int, limits: TierLimits) -> Fitted:
    wanted = requested_max_tokens or limits.default_max_tokens
    max_tokens = min(wanted, limits.max_tokens)
    kept = list(turns)
    trimmed = 0
    size = sum(estimate_tokens(turn.content) for turn in kept)

    def drop_oldest() -> int:
        """Drops the oldest turn that is neither a system message nor the last one; its tokens (0: none left)."""
        oldest = next((i for i, turn in enumerate(kept[:-1]) if turn.role != "system"), None)
        return 0 if oldest is None else estimate_tokens(kept.pop(oldest).content)

    while size > limits.prompt_tokens and (cost := drop_oldest()):
        trimmed += cost
        size -= cost
    # A history must not start (after its system messages) with an assistant turn.
    while next((t.role for t in kept[:-1] if t.role != "system"), None) == "assistant":
        trimmed += drop_oldest()
    return Fitted(
        turns=tuple(kept),
        max_tokens=max_tokens,
        trimmed_prompt_tokens=trimmed,
        capped_max_tokens=wanted - max_tokens,
    )
