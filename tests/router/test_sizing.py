import math

import pytest

from subsecond.kit.prompt_identity import Turn
from subsecond.router.sizing import AutoPolicy, Signals, TierLimits, centroid, choose_tier, fit_to_tier

POLICY = AutoPolicy(
    small="small",
    large="large",
    small_tasks=frozenset({"classify", "extract"}),
    large_tasks=frozenset({"write"}),
    small_max_tokens=96,
    small_prompt_tokens=512,
    centroids={"small": centroid([[1.0, 0.0, 0.0]]), "large": centroid([[0.0, 1.0, 0.0]])},
    centroid_margin=0.05,
)


@pytest.mark.parametrize(
    ("signals", "expected"),
    [
        (Signals(task="classify", max_tokens=500, prompt_tokens=10), ("small", "task")),
        (Signals(task="write", max_tokens=10, prompt_tokens=10), ("large", "task")),
        (Signals(task="", max_tokens=97, prompt_tokens=10), ("large", "max_tokens")),
        (Signals(task="", max_tokens=96, prompt_tokens=513), ("large", "prompt_length")),
        (Signals(task="", max_tokens=0, prompt_tokens=10, embedding=(0.1, 0.9, 0.0)), ("large", "centroid")),
        (Signals(task="", max_tokens=0, prompt_tokens=10, embedding=(0.9, 0.1, 0.0)), ("small", "centroid")),
        # Too close to call: the margin is not met.
        (Signals(task="", max_tokens=0, prompt_tokens=10, embedding=(0.5, 0.52, 0.0)), ("small", "short")),
        (Signals(task="other", max_tokens=0, prompt_tokens=10), ("small", "short")),
    ],
)
def test_tier_choice(signals: Signals, expected: tuple[str, str]) -> None:
    choice = choose_tier(signals, POLICY)
    assert (choice.tier, choice.reason) == expected


def test_centroid_is_unit_length() -> None:
    c = centroid([[3.0, 0.0], [0.0, 4.0]])
    assert math.isclose(sum(x * x for x in c), 1.0)


LIMITS = TierLimits(default_max_tokens=64, max_tokens=256, prompt_tokens=10)


def test_max_tokens_defaults_and_caps() -> None:
    turns = (Turn("user", "hi"),)
    assert fit_to_tier(turns, 0, LIMITS).max_tokens == 64
    capped = fit_to_tier(turns, 1000, LIMITS)
    assert (capped.max_tokens, capped.capped_max_tokens) == (256, 744)


def test_history_is_trimmed_oldest_first_keeping_system_and_last_turn() -> None:
    turns = (
        Turn("system", "Be brief."),  # 3 tokens
        Turn("user", "a" * 16),  # 4
        Turn("assistant", "b" * 16),  # 4
        Turn("user", "c" * 8),  # 2
        Turn("assistant", "d" * 8),  # 2
        Turn("user", "e" * 8),  # 2
    )
    fitted = fit_to_tier(turns, 0, LIMITS)
    assert [turn.content[0] for turn in fitted.turns] == ["B", "c", "d", "e"]
    assert fitted.trimmed_prompt_tokens == 8


def test_trimming_never_leaves_an_assistant_turn_first() -> None:
    turns = (Turn("user", "a" * 40), Turn("assistant", "b" * 4), Turn("user", "c" * 4))
    fitted = fit_to_tier(turns, 0, LIMITS)
    assert [turn.role for turn in fitted.turns] == ["user"]
    assert fitted.trimmed_prompt_tokens == 11


def test_a_single_long_turn_is_kept_whole() -> None:
    turns = (Turn("user", "x" * 400),)
    assert fit_to_tier(turns, 0, LIMITS).turns == turns
