"""The spelling aligner (cache/spelling.py): what the pair verifier reads of a typo, in training and
serving alike."""

import pytest

from subsecond.cache.guard import false_hit_reason
from subsecond.cache.normalise import normalise_pair
from subsecond.cache.spelling import aligned, misspelling, unjoined


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


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("unclog a bathroom sink without chemicals", "unclog a bathroomsink withoutchemicals", "unclog a bathroom sink without chemicals"),  # noqa: E501
        ("i don't know how", "i dont know how", "i dont know how"),  # a clitic is no word of its own
        ("it may be late", "it maybe late", "it maybe late"),  # a dictionary word stays
        ("convert hex 0x1f", "convert hex 0xf1", "convert hex 0xf1"),  # letters inside a token are no word
    ],
)
def test_the_guard_reads_words_run_together_apart(first: str, second: str, expected: str) -> None:
    """Only the splitting of run-together words, not the respelling: a term one letter from another
    ("https" / "http", "jsonl" / "json") stays for the rules to compare."""
    assert unjoined(first, second) == (first, expected)
    assert unjoined(second, first) == (expected, first)
    assert unjoined("is jsonl like json", "is json like json") == ("is jsonl like json", "is json like json")


def test_words_run_together_are_split_only_against_the_other_prompts_words() -> None:
    assert false_hit_reason("unclog a sink withoutchemicals", "unclog a sink without chemicals") is None
    # nothing to split against: an unknown word, refused as a substitution for the verifier to judge
    assert false_hit_reason("unclog a sink withoutchemicals", "unclog a sink with chemicals") == "substitution"
