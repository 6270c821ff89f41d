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
messages and the last user turn always stay); it is linear in the number of turns. What trimming
cannot remove (``fixed_prompt_tokens``) over the budget is the caller's error (``too_long``), so
no prompt longer than the tier's context ever reaches generation. Token counts are estimated at four characters a
token, the usual rule of thumb for English with BPE tokenisers; the router does not hold the
models' tokenisers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from subsecond.kit.errors import InvalidArgument
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


def fixed_prompt_tokens(turns: Sequence[Turn]) -> int:
    """Estimated tokens no trimming removes: the system messages and the last turn."""
    return sum(estimate_tokens(turn.content) for turn in turns[:-1] if turn.role == "system") + estimate_tokens(
        turns[-1].content
    )


def too_long(tokens: int, tier: str, budget: int) -> InvalidArgument:
    return InvalidArgument(
        f"prompt: about {tokens} tokens (at 4 characters a token) after trimming the history, over the "
        f"{tier} tier's limit of {budget} (TIER_PROMPT_TOKENS)"
    )


@dataclass(frozen=True)
class Fitted:
    turns: tuple[Turn, ...]
    max_tokens: int
    # Estimated prompt tokens of the turns kept.
    prompt_tokens: int
    # Estimated prompt tokens of the turns dropped, and completion tokens no longer asked for.
    trimmed_prompt_tokens: int
    capped_max_tokens: int


def fit_to_tier(turns: Sequence[Turn], requested_max_tokens: int, limits: TierLimits) -> Fitted:
    wanted = requested_max_tokens or limits.default_max_tokens
    max_tokens = min(wanted, limits.max_tokens)
    costs = [estimate_tokens(turn.content) for turn in turns]
    size = sum(costs)
    # The turns trimming may drop, oldest first: neither a system message nor the last turn.
    droppable = [i for i, turn in enumerate(turns[:-1]) if turn.role != "system"]
    dropped = 0
    while dropped < len(droppable) and size > limits.prompt_tokens:
        size -= costs[droppable[dropped]]
        dropped += 1
    # A history must not start (after its system messages) with an assistant turn.
    while dropped < len(droppable) and turns[droppable[dropped]].role == "assistant":
        size -= costs[droppable[dropped]]
        dropped += 1
    gone = set(droppable[:dropped])
    return Fitted(
        turns=tuple(turn for i, turn in enumerate(turns) if i not in gone),
        max_tokens=max_tokens,
        prompt_tokens=size,
        trimmed_prompt_tokens=sum(costs) - size,
        capped_max_tokens=wanted - max_tokens,
    )
