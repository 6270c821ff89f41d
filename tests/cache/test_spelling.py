"""The spelling aligner (cache/spelling.py): what the pair verifier reads of a typo, in training and
serving alike."""

import pytest

from subsecond.cache.normalise import normalise_pair
from subsecond.cache.spelling import aligned, misspelling


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        # a misspelling of a word the other prompt spells: a swap, a dropped letter
        ("why does my dog lick his paws all the time", "his paws all the tiem", "his paws all the time"),
        ("learn python for data analysis", "learn pyhton for data anlysis", "learn python for data analysis"),
        # two slips in a long word
        ("a good guitar for a beginner", "a good guitar for a begginer", "a good guitar for a beginner"),
        # two words run together
        ("can i use my debit card abroad", "can i use my debitcard abroad", "can i use my debit card abroad"),
    ],
)
def test_a_typo_of_the_other_prompts_word_reads_as_that_word(first: str, second: str, expected: str) -> None:
    assert aligned(first, second) == (first, expected)
    assert aligned(second, first) == (expected, first)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("what does the -r flag do in cp", "what does the -p flag do in cp"),  # too short to be a typo
        ("what does the farm ask for", "what does the form ask for"),  # two dictionary words
        ("is mysql faster than postgres", "is postgres faster than mysql"),  # neither a typo of the other
        ("what is the tcp port", "what is the tpc port"),  # shorter than a misspelling is looked for
    ],
)
def test_words_that_are_not_typos_of_each_other_are_left(first: str, second: str) -> None:
    assert aligned(first, second) == (first, second)
    assert not misspelling("farm", "form")


def test_the_verifier_reads_the_pair_normalised_then_aligned() -> None:
    assert normalise_pair("whats the time in tokyo", "whats the tiem in tokio") == (
        "what is the time in tokyo",
        "what is the time in tokyo",
    )
