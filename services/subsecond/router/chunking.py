"""Sentence chunking: groups streamed text into sentences for consumers such as text-to-speech.

A sentence ends at ``.``, ``!`` or ``?`` (with any closing quotes or brackets) followed by
whitespace, or at a blank line. A full stop after a common abbreviation or a single capital
letter (an initial) does not end a sentence, and neither does one inside a number ("3.14"),
since no whitespace follows it.
"""

from __future__ import annotations

import re

_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*\s+|\n\s*\n")
_ABBREVIATIONS = frozenset(
    {"e.g.", "i.e.", "etc.", "vs.", "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "no.", "approx."}
)


def _is_abbreviation(text: str, end: int) -> bool:
    """True when the full stop ending at ``end`` closes an abbreviation or an initial."""
    word = text[:end].rsplit(None, 1)[-1].lower() if text[:end].split() else ""
    return word in _ABBREVIATIONS or (len(word) == 2 and word[0].isalpha() and word[1] == ".")


class SentenceChunker:
    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, text: str) -> list[str]:
        """Adds streamed text; returns the sentences it completed (with their trailing space)."""
        self._buffer += text
        sentences: list[str] = []
        start = 0
        for match in _BOUNDARY.finditer(self._buffer):
            stop = match.group().rstrip()
            if stop.endswith(".") and _is_abbreviation(self._buffer[start:], match.start() - start + len(stop)):
                continue
            sentences.append(self._buffer[start : match.end()])
            start = match.end()
        self._buffer = self._buffer[start:]
        return sentences

    def flush(self) -> str:
        """The unfinished tail, at the end of the stream."""
        rest, self._buffer = self._buffer, ""
        return rest
