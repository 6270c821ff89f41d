"""Spelling: an English word list and the misspellings it shows, for the guard and the pair verifier.

A word one edit from another (a letter added, dropped or changed, or two adjacent letters swapped),
or two edits in words of LONG_MISSPELLING letters or more ("begginer"), is a misspelling of it when
only one of the two is an English word: "lern" of "learn", "symptons" of "symptoms". Two dictionary
words one edit apart are two words ("cost" / "coast"), and a term the dictionary lacks ("mcg") is
shorter than this looks at or further from any other.

:func:`aligned` writes a pair of prompts the same where one of them misspells a word the other
spells, or runs two of its words together ("debitcard" / "debit card"), so that the pair verifier
reads the two as the same words (a typo is a paraphrase's, not a near miss's, difference; the model
was seen to refuse "all the tiem" against "all the time"). Training and serving call it alike.
"""

from __future__ import annotations

import functools
import itertools
import re

SHORTEST_MISSPELLING = 4  # a word out of the dictionary one edit from one in it, from this length
LONG_MISSPELLING = 8  # two edits, from this length

_WORD = re.compile(r"[A-Za-z]+")
# A whole word of letters, its apostrophe kept ("don't" is not "don" and "t"; "0xf1" holds none).
_WHOLE_WORD = re.compile(r"\b[A-Za-z]+(?:'[A-Za-z]+)?\b")


@functools.cache
def dictionary() -> frozenset[str]:
    """pyspellchecker's English word list (about 160,000 words, from its package: nothing is downloaded)."""
    from spellchecker import SpellChecker

    return frozenset(SpellChecker(language="en", distance=1).word_frequency.dictionary)


def one_edit(x: str, y: str) -> bool:
    """Whether one letter added, dropped or changed, or two adjacent letters swapped, makes x of y."""
    if abs(len(x) - len(y)) > 1 or x == y:
        return False
    if len(x) == len(y):
        diffs = [i for i in range(len(x)) if x[i] != y[i]]
        swapped = (
            len(diffs) == 2 and diffs[1] == diffs[0] + 1 and x[diffs[0]] == y[diffs[1]] and x[diffs[1]] == y[diffs[0]]
        )
        return len(diffs) == 1 or swapped
    longer, shorter = (x, y) if len(x) > len(y) else (y, x)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def misspelling(x: str, y: str) -> bool:
    """One of two lower-case words a misspelling of the other: from SHORTEST_MISSPELLING letters, the
    same first letter, one edit apart (two from LONG_MISSPELLING letters), only one of them in the
    dictionary."""
    return (
        min(len(x), len(y)) >= SHORTEST_MISSPELLING
        and x[0] == y[0]
        and x.isalpha()
        and y.isalpha()
        and (x in dictionary()) != (y in dictionary())
        and (one_edit(x, y) or (min(len(x), len(y)) >= LONG_MISSPELLING and _edits(x, y) <= 2))
    )


def _edits(x: str, y: str) -> int:
    """Letters added, dropped or changed, or adjacent pairs swapped, that make x of y (the optimal
    string alignment distance); the words are short, so the table is too."""
    rows = [list(range(len(y) + 1))]
    for i in range(1, len(x) + 1):
        row = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (x[i - 1] != y[j - 1]))
            if i > 1 and j > 1 and x[i - 1] == y[j - 2] and x[i - 2] == y[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def aligned(first: str, second: str) -> tuple[str, str]:
    """The two prompts with each word that one misspells, or runs together, written as the other
    spells it (the dictionary's spelling wins)."""
    return _respelt(first, second), _respelt(second, first)


@functools.lru_cache(maxsize=1024)
def unjoined(first: str, second: str) -> tuple[str, str]:
    """The two prompts with each word that one of them runs together from two of the other's, and the
    dictionary lacks, written apart ("bathroomsink" / "bathroom sink"; "maybe" / "may be" stay). Cached:
    the guard reads a pair once for all its rules and again for the rules it may not overrule."""
    return _split(first, second), _split(second, first)


def _split(text: str, other: str) -> str:
    joined = _joined([word.lower() for word in _WHOLE_WORD.findall(other)])
    if not joined:
        return text

    def split(match: re.Match[str]) -> str:
        word = match.group().lower()
        if len(word) < SHORTEST_MISSPELLING or word not in joined or word in dictionary():
            return match.group()
        return joined[word]

    return _WHOLE_WORD.sub(split, text)


def _joined(words: list[str]) -> dict[str, str]:
    """Each two adjacent words run together, and the two written apart."""
    return {first + second: f"{first} {second}" for first, second in itertools.pairwise(words)}


def _respelt(text: str, other: str) -> str:
    """``text`` with its out-of-dictionary words written as ``other`` spells them."""
    words = [word.lower() for word in _WORD.findall(other)]
    known = set(words)
    joined = _joined(words)

    def respell(match: re.Match[str]) -> str:
        word = match.group().lower()
        if word in known or len(word) < SHORTEST_MISSPELLING or word in dictionary():
            return match.group()
        if word in joined:
            return joined[word]
        spelt = [candidate for candidate in known if candidate in dictionary() and misspelling(word, candidate)]
        return spelt[0] if len(spelt) == 1 else match.group()

    return _WORD.sub(respell, text)
